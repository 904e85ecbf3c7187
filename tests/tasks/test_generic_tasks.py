"""The generic tasks (rnaret.tasks.generic) fine-tune and evaluate through the paper tasks' loop on
small real data: ncRNA families of the bundled MncR table (sequence classification), and labels
read off the bundled bpRNA structures (the paired fraction per sequence; paired/unpaired and the
partner distance per nucleotide); their metrics agree with scikit-learn/scipy on the written
predictions; bad tables are refused naming file, line and record; the command line runs, resumes."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, matthews_corrcoef

from rnaret.io.errors import InputError
from rnaret.io.structure import read_structures
from rnaret.metrics import read_metrics_tsv
from rnaret.model import EncoderConfig, build_encoder
from rnaret.tasks import get_task
from rnaret.checkpoint.finetuned import load_finetuned, save_finetuned
from rnaret.tasks.finetune import TaskModel, evaluate, finetune
from rnaret.tasks.run import dataset_entry, initial_model, run_evaluate, run_finetune

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "resources" / "ncrna" / "mncr_families.tsv"
FAST = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup_steps": 0, "seed": 0}


def tiny_encoder(k: int = 5):
    torch.manual_seed(0)
    return build_encoder(EncoderConfig.paper(k, retnet_embed_dim=16, retnet_value_embed_dim=16,
                                             retnet_ffn_embed_dim=32, retnet_layers=2, retnet_retention_heads=2,
                                             dropout=0.0, activation_dropout=0.0))


def write_rows(path: Path, rows: list[dict], columns=("id", "sequence", "label")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(columns), delimiter="\t", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def families():
    table = pd.read_csv(TABLE, sep="\t", dtype=str)
    table = table[table.sequence.str.len() <= 250]  # short ones: seconds on one thread
    return {split: table[table.split == split] for split in ("train", "valid", "test")}


@pytest.fixture(scope="module")
def structure_tables(tmp_path_factory, resources):
    """Label tables made from bpRNA structures (first 60 train, 20 valid sequences of <= 150 nt):
    paired fraction, paired/unpaired per nucleotide, log partner distance per paired nucleotide."""
    folder = tmp_path_factory.mktemp("structure_labels")
    out = {}
    for split, n in (("train", 60), ("valid", 20)):
        records = [r for r in read_structures(resources / "structure" / f"bprna_{split}.csv") if len(r.sequence) <= 150][:n]
        rows = {"fraction": [], "paired": [], "distance": []}
        for r in records:
            partner = [None] * len(r.sequence)
            for i, j in r.pairs:
                partner[i - 1], partner[j - 1] = j, i
            paired = "".join("0" if p is None else "1" for p in partner)
            distance = [None if p is None else round(math.log(abs(p - (i + 1))), 4) for i, p in enumerate(partner)]
            rows["fraction"].append({"id": r.id, "sequence": r.sequence, "label": paired.count("1") / len(paired)})
            rows["paired"].append({"id": r.id, "sequence": r.sequence, "label": paired})
            rows["distance"].append({"id": r.id, "sequence": r.sequence, "label": json.dumps(distance)})
        for name, table in rows.items():
            out[name, split] = write_rows(folder / f"{name}_{split}.tsv", table)
    return out


def run_task(name: str, train, valid, settings=None, init=None):
    """Fine-tune task ``name`` (tiny encoder or onehot) -> (task, model, result, valid rows, metrics)."""
    task = get_task(name, {**FAST, **(settings or {})})
    data = task.load_dataset({"train": str(train), "valid": str(valid)})
    if init == "onehot":
        model, _ = initial_model(task, "onehot")
    else:
        model = TaskModel(tiny_encoder(), task.build_head(16))
    result = finetune(task, model, data["train"], data["valid"], progress=False, device=torch.device("cpu"))
    rows, metrics = evaluate(task, model, data["valid"], device=torch.device("cpu"), progress=False)
    return task, model, result, rows, metrics


@pytest.mark.slow  # subprocesses / two fine-tunes: over 30 s on a shared 2-core machine
def test_sequence_classification_multiclass_and_binary(tmp_path, families):
    train = write_rows(tmp_path / "train.tsv", families["train"].groupby("label").head(8).to_dict("records"))
    valid = write_rows(tmp_path / "valid.tsv", families["valid"].groupby("label").head(5).to_dict("records"))
    task, model, result, rows, metrics = run_task("sequence-classification", train, valid)
    assert task.classes == ["lncRNA", "miRNA", "rRNA", "snRNA", "snoRNA", "tRNA"]
    assert metrics["n"] == 30 and metrics["n_classes"] == 6
    truth = [r["label"] for r in rows]
    predicted = [r["prediction"] for r in rows]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(truth, predicted))
    assert all(abs(sum(r[f"p_{c}"] for c in task.classes) - 1) < 1e-5 for r in rows)
    assert result.best["metric"] == "mcc" and len(result.history) == 2
    # the classes travel with the checkpoint: a reloaded model predicts the same
    save_finetuned(model, task, tmp_path / "ckpt", encoder_kind="retnet", init="tiny")
    loaded_task, loaded, _ = load_finetuned(tmp_path / "ckpt")
    assert loaded_task.classes == task.classes
    again, _ = evaluate(loaded_task, loaded, loaded_task.load_dataset({"test": str(valid)}, ("test",))["test"],
                        device=torch.device("cpu"), progress=False)
    assert [r["prediction"] for r in again] == predicted
    # binary: miRNA against tRNA with the one-hot control learns (lengths and letters differ)
    pick = lambda frame, n: frame[frame.label.isin(["miRNA", "tRNA"])].groupby("label").head(n)  # noqa: E731
    train = write_rows(tmp_path / "train2.tsv", pick(families["train"], 30).to_dict("records"))
    valid = write_rows(tmp_path / "valid2.tsv", pick(families["valid"], 20).to_dict("records"))
    task, _, _, rows, metrics = run_task("sequence-classification", train, valid,
                                         {"epochs": 3, "pooling": "cls"}, init="onehot")
    assert task.classes == ["miRNA", "tRNA"] and metrics["n"] == 40
    assert metrics["auc"] > 0.8, metrics


def test_sequence_regression(structure_tables):
    task, _, result, rows, metrics = run_task("sequence-regression", structure_tables["fraction", "train"],
                                              structure_tables["fraction", "valid"])
    assert set(metrics) == {"pearson", "spearman", "rmse", "r2", "n"} and metrics["n"] == 20
    truth = np.array([float(r["label"]) for r in rows])
    predicted = np.array([r["prediction"] for r in rows])
    assert metrics["pearson"] == pytest.approx(pearsonr(truth, predicted)[0])
    assert metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean((truth - predicted) ** 2))))
    mean, sd = task.settings["label_scale"]
    assert 0.3 < mean < 0.8 and sd > 0  # the paired fraction of the training sequences
    assert np.ptp(predicted) > 0


def test_token_classification(structure_tables):
    task, _, _, rows, metrics = run_task("token-classification", structure_tables["paired", "train"],
                                         structure_tables["paired", "valid"])
    assert task.classes == ["0", "1"]
    assert metrics["n"] == 20 and metrics["n_positions"] == sum(r["length"] for r in rows)
    truth = "".join(r["label"] for r in rows)
    predicted = "".join(r["prediction"] for r in rows)
    assert len(predicted) == len(truth)
    assert metrics["accuracy"] == pytest.approx(np.mean([a == b for a, b in zip(truth, predicted)]))
    assert 0 <= metrics["auc"] <= 1


def test_token_regression_leaves_unlabelled_positions_out(structure_tables):
    task, _, _, rows, metrics = run_task("token-regression", structure_tables["distance", "train"],
                                         structure_tables["distance", "valid"])
    labelled = sum(sum(v is not None for v in json.loads(r["label"])) for r in rows)
    assert 0 < labelled < sum(r["length"] for r in rows)
    assert metrics["n_positions"] == labelled and metrics["n"] == 20
    assert all(len(json.loads(r["prediction"])) == r["length"] for r in rows)
    assert math.isfinite(metrics["pearson"]) and math.isfinite(metrics["rmse"])


def test_unknown_label_and_one_class_only(tmp_path, families):
    train = families["train"][families["train"].label.isin(["miRNA", "tRNA"])].groupby("label").head(15)
    train = train.to_dict("records")
    valid = families["valid"].head(40).to_dict("records")
    task = get_task("sequence-classification")
    entry = {"train": str(write_rows(tmp_path / "train.tsv", train)),
             "valid": str(write_rows(tmp_path / "valid.tsv", valid))}
    first_unknown = next(i for i, r in enumerate(valid) if r["label"] not in ("miRNA", "tRNA"))
    with pytest.raises(InputError, match=rf"valid\.tsv: record '{valid[first_unknown]['id']}': line "
                                         rf"{first_unknown + 2}: unknown label '{valid[first_unknown]['label']}': "
                                         r"not one of the classes of the training split \['miRNA', 'tRNA'\]"):
        task.load_dataset(entry)
    single = families["train"][families["train"].label == "tRNA"].head(10).to_dict("records")
    with pytest.raises(InputError, match=r"one\.tsv: one class only \('tRNA' in every labelled row\)"):
        get_task("sequence-classification").load_dataset({"train": str(write_rows(tmp_path / "one.tsv", single)),
                                                          "valid": entry["valid"]})
    wrong = [{"id": "a", "sequence": "ACGUACGU", "label": "0011"}]
    with pytest.raises(InputError, match=r"wrong\.tsv: record 'a': line 2: 4 per-position labels for a sequence of 8"):
        get_task("token-classification").read_split(write_rows(tmp_path / "wrong.tsv", wrong))
    with pytest.raises(InputError, match=r"words\.tsv: record .*: line 2: a regression label must be a finite number"):
        get_task("sequence-regression").read_split(write_rows(tmp_path / "words.tsv", train[:3]))
    with pytest.raises(InputError, match=r"missing\.tsv: line 1: missing column 'label'"):
        get_task("sequence-regression").read_split(write_rows(tmp_path / "missing.tsv", train[:3], ("id", "sequence")))


@pytest.mark.slow  # subprocesses / two fine-tunes: over 30 s on a shared 2-core machine
def test_command_line_fasta_with_side_tables_resume_and_evaluate(tmp_path, families):
    splits = {"train": families["train"].groupby("label").head(6), "valid": families["valid"].groupby("label").head(2),
              "test": families["test"].groupby("label").head(3)}
    args = []
    for split, frame in splits.items():
        fasta = tmp_path / f"{split}.fa"
        fasta.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in frame.itertuples()))
        write_rows(tmp_path / f"{split}_labels.tsv", frame.to_dict("records"), ("id", "label"))
        args.append((split, fasta, tmp_path / f"{split}_labels.tsv"))
    train_args = [a for split, fasta, labels in args[:2] for a in ("--split", f"{split}={fasta}",
                                                                     "--labels", f"{split}={labels}")]
    command = [sys.executable, "-m", "rnaret", "finetune", "--task", "sequence-classification", "--init", "onehot",
               "--out", str(tmp_path / "ckpt"), *train_args, "--set", "epochs=2", "--set", "batch_size=8",
               "--threads", "1", "--quiet", "--precision", "fp32"]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    meta = json.loads((tmp_path / "ckpt" / "task.json").read_text())
    assert meta["task"] == "sequence-classification" and len(meta["settings"]["classes"]) == 6
    # the rerun continues the finished run from its run folder instead of training again
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "resuming from" in second.stderr, second.stderr
    _, fasta, labels = args[2]
    evaluation = subprocess.run([sys.executable, "-m", "rnaret", "evaluate", "--checkpoint", str(tmp_path / "ckpt"),
                                 "--split", f"test={fasta}", "--labels", f"test={labels}", "--out",
                                 str(tmp_path / "eval"), "--threads", "1", "--quiet", "--device", "cpu"],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert evaluation.returncode == 0, evaluation.stderr
    metrics = read_metrics_tsv(tmp_path / "eval" / "metrics.tsv")
    assert metrics["n"] == 18 and set(metrics) == {"accuracy", "f1_macro", "mcc", "auc", "n", "n_classes", "protocol"}
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.tsv", sep="\t")
    assert list(predictions.id) == list(splits["test"].id)
    # the options make the entry the task reads; a FASTA without its side table is refused
    entry = dataset_entry("sequence-classification", None, None, [f"test={fasta}"], labels=[f"test={labels}"])
    assert entry == {"test": {"path": str(fasta), "labels": str(labels)}}
    with pytest.raises(InputError, match=r"test\.fa: a FASTA holds no labels"):
        get_task("sequence-classification").load_dataset({"test": str(fasta)}, ("test",))
    with pytest.raises(InputError, match=r"--labels valid=...: no split 'valid'"):
        dataset_entry("sequence-classification", None, None, [f"test={fasta}"], labels=[f"valid={labels}"])


def test_run_functions_on_the_bundled_table(tmp_path):
    """run_finetune/run_evaluate (what the commands and the pipeline call) on the bundled table's
    rows selected by its split column, one-hot control, one epoch."""
    entry = {s: {"path": str(TABLE), "split": s} for s in ("train", "valid", "test")}
    best = run_finetune("sequence-classification", entry, "onehot", tmp_path / "ckpt",
                        settings={"preset": "laptop", "epochs": 1, "train_samples_per_epoch": 120},
                        progress=False, precision="fp32")
    assert best["metric"] == "mcc"
    metrics = run_evaluate(tmp_path / "ckpt", entry, tmp_path / "eval", progress=False)
    assert metrics["n"] == 300 and metrics["n_classes"] == 6
    assert (tmp_path / "eval" / "metrics.tsv").is_file() and (tmp_path / "eval" / "predictions.tsv").is_file()
