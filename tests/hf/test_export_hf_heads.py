"""`rnaret export-hf` of the generic tasks' fine-tuned checkpoints: the head goes into the folder
(``RnaretForSequenceClassification`` / ``RnaretForTokenClassification``, the task's labels as
``id2label``), and a fresh interpreter with only transformers and torch gets rnaret's own logits
(fp32, <= 1e-5) and the label names from the text-classification pipeline. Models are fine-tuned
one epoch by `rnaret finetune` on real rows: ncRNA families of the bundled MncR table, and
paired/unpaired nucleotides (and the paired fraction, the log partner distance) read off the
bundled bpRNA structures. Bad inputs: a head that does not fit its labels, heads with no
transformers form."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hf_site import site_without_rnaret
from safetensors.torch import load_file

pytest.importorskip("transformers")

from rnaret.checkpoint import save_encoder  # noqa: E402
from rnaret.cli import main  # noqa: E402
from rnaret.hf.export import export_hf  # noqa: E402
from rnaret.io.errors import InputError  # noqa: E402
from rnaret.io.structure import read_structures  # noqa: E402
from rnaret.metrics import read_metrics_tsv  # noqa: E402
from rnaret.model import EncoderConfig, build_encoder  # noqa: E402
from rnaret.tasks.run import load_for_evaluation  # noqa: E402
from rnaret.tokenizer import CLS, FILL  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
CLIENT = Path(__file__).with_name("hf_head_client.py")
TOL = 1e-5
K = 3  # k-mer tokens: a sequence of n nt is n tokens with one FILL at each end
FAMILIES = ("miRNA", "snoRNA", "tRNA")


def _write(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows, columns=["id", "sequence", "label"]).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture(scope="module")
def tables(resources, tmp_path_factory):
    """{(name, split): table}: ncRNA families (8 train, 3 valid, 3 test rows of each of three
    families, <= 150 nt) and, from the first bpRNA valid structures of <= 100 nt (16 train, 6
    valid), paired/unpaired per nucleotide ("p"/"u"), the paired fraction per sequence and the
    log partner distance per paired nucleotide."""
    folder = tmp_path_factory.mktemp("tables")
    mncr = pd.read_csv(resources / "ncrna" / "mncr_families.tsv", sep="\t", dtype=str)
    mncr = mncr[(mncr.sequence.str.len() <= 150) & mncr.label.isin(FAMILIES)]
    out = {}
    for split, n in (("train", 8), ("valid", 3), ("test", 3)):
        rows = mncr[mncr.split == split].groupby("label").head(n)
        assert sorted(rows.label.unique()) == list(FAMILIES) and len(rows) == 3 * n
        out["families", split] = _write(folder / f"families_{split}.tsv", rows.to_dict("records"))
    records = [r for r in read_structures(resources / "structure" / "bprna_valid.csv") if len(r.sequence) <= 100][:22]
    assert len(records) == 22
    for split, chosen in (("train", records[:16]), ("valid", records[16:])):
        paired, fraction, distance = [], [], []
        for r in chosen:
            partner = [None] * len(r.sequence)
            for i, j in r.pairs:
                partner[i - 1], partner[j - 1] = j, i
            marks = "".join("u" if p is None else "p" for p in partner)
            paired.append({"id": r.id, "sequence": r.sequence, "label": marks})
            fraction.append({"id": r.id, "sequence": r.sequence, "label": marks.count("p") / len(marks)})
            distance.append({"id": r.id, "sequence": r.sequence, "label": json.dumps(
                [None if p is None else round(math.log(abs(p - (i + 1))), 4) for i, p in enumerate(partner)])})
        out["paired", split] = _write(folder / f"paired_{split}.tsv", paired)
        out["fraction", split] = _write(folder / f"fraction_{split}.tsv", fraction)
        out["distance", split] = _write(folder / f"distance_{split}.tsv", distance)
    assert {c for row in pd.read_csv(out["paired", "train"], sep="\t").label for c in row} == {"p", "u"}
    return out


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny RetNet encoder (k = 3, width 16, 2 layers, random weights) saved as our checkpoint."""
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig.paper(K, retnet_embed_dim=16, retnet_value_embed_dim=16,
                                                retnet_ffn_embed_dim=32, retnet_layers=2, retnet_retention_heads=2,
                                                dropout=0.0, activation_dropout=0.0))
    return save_encoder(encoder, tmp_path_factory.mktemp("encoder") / "tiny")


def _finetune(task, tables, name, encoder_dir, out: Path, *extra) -> Path:
    """`rnaret finetune` one epoch -> the checkpoint folder ``out``."""
    args = ["finetune", "--task", task, "--init", str(encoder_dir), "--out", str(out),
            "--split", f"train={tables[name, 'train']}", "--split", f"valid={tables[name, 'valid']}",
            "--device", "cpu", "--precision", "fp32", "--quiet", "--threads", "1",
            "--set", f"k={K}", "--set", "epochs=1", "--set", "batch_size=8", "--set", "lr=3e-3",
            "--set", "warmup_steps=0", "--set", "seed=0", *extra]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def families_checkpoint(tables, encoder_dir, tmp_path_factory):
    """ncRNA families fine-tuned (mean pooling, head dropout 0.1), evaluated on its test rows:
    results/-style folder with checkpoint/ and metrics.tsv."""
    run = tmp_path_factory.mktemp("families") / "tiny"
    _finetune("sequence-classification", tables, "families", encoder_dir, run / "checkpoint")
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint"), "--out", str(run),
                 "--split", f"test={tables['families', 'test']}", "--device", "cpu", "--precision", "fp32",
                 "--quiet", "--threads", "1"]) == 0
    return run / "checkpoint"


@pytest.fixture(scope="module")
def paired_checkpoint(tables, encoder_dir, tmp_path_factory):
    """Paired/unpaired per nucleotide fine-tuned (hidden 24)."""
    return _finetune("token-classification", tables, "paired", encoder_dir,
                     tmp_path_factory.mktemp("paired") / "checkpoint", "--set", "hidden=24")


@pytest.fixture(scope="module")
def clean_site_packages(tmp_path_factory):
    return site_without_rnaret(tmp_path_factory.mktemp("site"))


def _rnaret_outputs(checkpoint, table):
    """rnaret's own view of ``table`` through the fine-tuned checkpoint: (sequences, batch,
    raw head outputs, prediction rows)."""
    task, model = load_for_evaluation(checkpoint)
    examples = task.read_split(table)
    batch = task.collate(examples)
    with torch.no_grad():
        output = model(batch.tokens, batch.padding_mask)
    sequences = list(pd.read_csv(table, sep="\t").sequence)
    return task, sequences, batch, output, task.predict(output, batch)


def _run_client(site_dir, folder, sequences, out_dir):
    """hf_head_client.py in a fresh `python -S` with only site_dir and folder on sys.path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sequences.json").write_text(json.dumps(sequences))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "TRANSFORMERS"))}
    env.update(HF_MODULES_CACHE=str(out_dir / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_HOME=str(out_dir / "hf_home"))
    done = subprocess.run([sys.executable, "-S", str(CLIENT), str(site_dir), str(folder),
                           str(out_dir / "sequences.json"), str(out_dir)],
                          cwd=out_dir, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((out_dir / "results.json").read_text())
    assert not results["rnaret_importable"] and results["model_module"].startswith("transformers_modules.")
    return load_file(out_dir / "outputs.safetensors"), results


def _close(a, b, tol=TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max() <= tol, float((a - b).abs().max())


@pytest.mark.slow
def test_sequence_classifier_exports_with_its_labels(families_checkpoint, tables, clean_site_packages, tmp_path):
    out = tmp_path / "families-hf"
    assert main(["export-hf", str(families_checkpoint), str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["RnaretForSequenceClassification"]
    assert config["auto_map"]["AutoModelForSequenceClassification"] == \
        "modeling_rnaret.RnaretForSequenceClassification"
    assert config["id2label"] == {"0": "miRNA", "1": "snoRNA", "2": "tRNA"}
    assert config["label2id"] == {"miRNA": 0, "snoRNA": 1, "tRNA": 2}
    assert config["problem_type"] == "single_label_classification" and config["classifier_pooling"] == "mean"
    assert config["classifier_dropout"] == pytest.approx(0.1)

    task, sequences, batch, output, rows = _rnaret_outputs(families_checkpoint, tables["families", "valid"])
    assert task.classes == list(FAMILIES) and len(sequences) == 9
    outputs, results = _run_client(clean_site_packages, out, sequences, tmp_path / "client")
    assert results["model_class"] == "RnaretForSequenceClassification"
    # the folder's tokenizer gives rnaret's inputs: CLS + one k-mer token per nucleotide, padded
    assert torch.equal(outputs["input_ids"], batch.tokens)
    assert torch.equal(outputs["attention_mask"].bool(), batch.padding_mask)
    assert (outputs["input_ids"][:, 0] == CLS).all()
    assert [int(n) for n in outputs["attention_mask"].sum(1)] == [len(s) + 1 for s in sequences]
    assert output.shape == (9, 3) and output.std() > 0
    _close(outputs["logits"], output)
    # the pipeline: every label by name with rnaret's probabilities
    for answer, row in zip(results["pipeline"], rows, strict=True):
        assert {a["label"] for a in answer} == set(FAMILIES)
        assert answer[0]["label"] == row["prediction"]
        for a in answer:
            assert a["score"] == pytest.approx(row[f"p_{a['label']}"], abs=1e-5)

    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "Task: `sequence-classification`" in card
    assert "0 `miRNA`, 1 `snoRNA`, 2 `tRNA`" in card
    test_metrics = read_metrics_tsv(families_checkpoint.parent / "metrics.tsv")
    assert f"mcc {test_metrics['mcc']:.4g}" in card and "Test (`metrics.tsv` beside the checkpoint)" in card
    meta = json.loads((families_checkpoint / "task.json").read_text())
    assert f"chosen on {meta['best']['metric']}" in card


@pytest.mark.slow
def test_per_nucleotide_classifier_exports_as_token_classification(paired_checkpoint, tables, clean_site_packages,
                                                                   tmp_path, capsys):
    out = export_hf(paired_checkpoint, tmp_path / "paired-hf")
    assert "left out" not in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["RnaretForTokenClassification"]
    assert config["id2label"] == {"0": "p", "1": "u"}
    assert config["classifier_hidden"] == 24 and config["classifier_kernel_size"] == 3

    task, sequences, batch, output, rows = _rnaret_outputs(paired_checkpoint, tables["paired", "valid"])
    outputs, results = _run_client(clean_site_packages, out, sequences, tmp_path / "client")
    assert results["model_class"] == "RnaretForTokenClassification"
    # n nt -> n tokens (k = 3: one FILL at each end), no CLS: output i is nucleotide i
    assert [int(n) for n in outputs["attention_mask"].sum(1)] == [len(s) for s in sequences]
    assert torch.equal(outputs["input_ids"], batch.tokens) and (outputs["input_ids"][:, 0] == FILL).all()
    mask = batch.padding_mask
    assert (~mask).any() and output.shape == outputs["logits"].shape
    _close(outputs["logits"][mask], output[mask])
    assert (outputs["logits"][~mask] == 0).all()
    predicted = outputs["logits"].argmax(-1)
    for row, (seq_row, n) in enumerate(zip(rows, outputs["attention_mask"].sum(1))):
        assert "".join(results["id2label"][str(int(i))] for i in predicted[row, :n]) == seq_row["prediction"]
    card = (out / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "0 `p`, 1 `u`" in card
    assert "Validation at the kept checkpoint" in card


@pytest.mark.slow
@pytest.mark.parametrize("task,name", [("sequence-regression", "fraction"), ("token-regression", "distance")])
def test_regressions_export_values_in_label_units(task, name, tables, encoder_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    checkpoint = _finetune(task, tables, name, encoder_dir, tmp_path / "checkpoint", "--set", "pooling=cls")
    out = export_hf(checkpoint, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert len(config["id2label"]) == 1 and config["problem_type"] == "regression"
    the_task, sequences, batch, output, rows = _rnaret_outputs(checkpoint, tables[name, "valid"])
    mean, sd = the_task.settings["label_scale"]
    assert sd != 1.0 and mean != 0.0  # the folded scale is not the identity
    auto = AutoModelForSequenceClassification if task.startswith("sequence") else AutoModelForTokenClassification
    model = auto.from_pretrained(out, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    inputs = tokenizer(sequences, padding=True, return_tensors="pt")
    assert torch.equal(inputs["input_ids"], batch.tokens)
    with torch.no_grad():
        logits = model(**inputs).logits
    if task == "sequence-regression":
        assert config["classifier_pooling"] == "cls" and (inputs["input_ids"][:, 0] == CLS).all()
        _close(logits[:, 0], torch.tensor([r["prediction"] for r in rows], dtype=torch.float32))
        from transformers import pipeline

        answers = pipeline("text-classification", model=str(out), trust_remote_code=True, device="cpu")(
            sequences, function_to_apply="none")
        assert [a["score"] for a in answers] == pytest.approx([r["prediction"] for r in rows], abs=1e-5)
    else:
        for row, r in enumerate(rows):
            n = len(sequences[row])
            _close(logits[row, :n, 0], torch.tensor(json.loads(r["prediction"]), dtype=torch.float32), 1e-4)
        _close(logits[..., 0][batch.padding_mask], (output[..., 0] * sd + mean)[batch.padding_mask])
        # the loss: mean squared error over the labelled positions (NaN: unpaired or padding)
        labels = torch.full(logits.shape[:2], math.nan)
        for row, r in enumerate(rows):
            labels[row, :len(r["_true"])] = torch.as_tensor(r["_true"], dtype=torch.float32)
        labelled = ~labels.isnan()
        assert 0 < int(labelled.sum()) < int(batch.padding_mask.sum())
        with torch.no_grad():
            loss = model(**inputs, labels=labels).loss
        assert float(loss) == pytest.approx(float(((logits[..., 0] - labels)[labelled] ** 2).mean()), rel=1e-5)
    assert "label scale (mean" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_head_that_does_not_fit_its_labels_is_refused(families_checkpoint, tmp_path, capsys):
    bad = tmp_path / "checkpoint"
    shutil.copytree(families_checkpoint, bad)
    meta = json.loads((bad / "task.json").read_text())
    meta["settings"]["classes"] = ["miRNA", "snoRNA", "tRNA", "rRNA"]  # the head has 3 outputs
    (bad / "task.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="head.safetensors") as caught:
        export_hf(bad, tmp_path / "out")
    assert "out_proj" in str(caught.value)
    assert main(["export-hf", str(bad), str(tmp_path / "out")]) != 0
    assert "head.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_coding_fine_tune_exports_its_encoder_and_says_so(encoder_dir, tmp_path, capsys):
    from rnaret.checkpoint import load_encoder
    from rnaret.tasks import get_task
    from rnaret.checkpoint.finetuned import save_finetuned
    from rnaret.tasks.finetune import TaskModel

    task = get_task("coding", {"k": K})
    folder = save_finetuned(TaskModel(load_encoder(encoder_dir), task.build_head(16)), task, tmp_path / "coding",
                            encoder_kind="retnet", init=str(encoder_dir), precision="fp32")
    assert main(["export-hf", str(folder), str(tmp_path / "hf")]) == 0
    err = capsys.readouterr().err
    assert "the coding head has no transformers form; exported the fine-tuned encoder only" in err
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["RnaretForMaskedLM"]
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "Fine-tuned for the coding task; its head is NOT included" in card and "## Task" not in card
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    assert all(torch.equal(weights[f"rnaret.encoder.{k}"], v) for k, v in load_encoder(folder / "encoder")
               .state_dict().items())


@pytest.mark.parametrize("auto_name", ["AutoModelForSequenceClassification", "AutoModelForTokenClassification"])
def test_a_new_head_on_an_exported_encoder_is_initialised(encoder_dir, tmp_path, auto_name):
    """The head layers an encoder folder lacks get normal(0, 0.02) weights and zero biases (not
    torch.empty's memory); the encoder keeps its weights."""
    import transformers

    from rnaret.checkpoint import load_encoder

    out = export_hf(encoder_dir, tmp_path / "hf")
    torch.manual_seed(0)
    model = getattr(transformers, auto_name).from_pretrained(out, trust_remote_code=True, num_labels=3)
    layers = [m for m in model.classifier.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))]
    assert len(layers) == 2
    for layer in layers:
        assert torch.isfinite(layer.weight).all() and 0.015 < float(layer.weight.detach().std()) < 0.025
        assert (layer.bias == 0).all()
    ours = load_encoder(encoder_dir).state_dict()
    assert all(torch.equal(model.rnaret.encoder.state_dict()[k], v) for k, v in ours.items())
