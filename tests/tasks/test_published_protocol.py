"""The published protocol against the published scripts themselves.

tests/fixtures/published_runs/ holds what ssp.py, rri.py and lnc.py (DrBlackZJU/RNAret @f83f253)
logged and output, per record, for weights they saved and test inputs in their layouts (see its
README). `rnaret evaluate --protocol published` on the same file and input must give the same
test metrics (|diff| <= 0.001) and the same per-record outputs: the structure pairs and scores,
the interaction and coding predictions and labels exactly, the logits and window scores to float32
rounding (our encoder is another implementation of the same computation).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rnaret.cli import main
from rnaret.io.errors import InputError
from rnaret.io.structure import published_bpseq_files, read_bpseq_published
from rnaret.metrics import published_pair_scores, read_metrics_tsv, write_metrics_tsv
from rnaret.tasks import get_task
from rnaret.tasks.structure import pair_map, published_constraint, published_decode
from tests.conftest import ROOT

RUNS = ROOT / "tests" / "fixtures" / "published_runs"
MANIFEST = json.loads((RUNS / "manifest.json").read_text())
CASES = {case["name"]: case for case in MANIFEST["cases"]}
# the published script's options -> our settings
OPTION_SETTING = {"max_len": "max_len", "min_bp_distance": "min_pair_distance"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def evaluate_case(case: dict, out) -> tuple[dict, pd.DataFrame]:
    """Run ``rnaret evaluate --protocol published`` on a recorded case -> (metrics, predictions)."""
    argv = ["evaluate", "--checkpoint", str(RUNS / case["checkpoint"]), "--task", case["task"],
            "--protocol", "published", "--split", f"test={RUNS / case['test'][0]}", "--out", str(out),
            "--device", "cpu", "--precision", "fp32", "--quiet"]
    for option, value in case["settings"].items():
        argv += ["--set", f"{OPTION_SETTING.get(option, option)}={value}"]
    assert main(argv) == 0
    return read_metrics_tsv(out / "metrics.tsv"), pd.read_csv(out / "predictions.tsv", sep="\t",
                                                              keep_default_na=False)


def check_metrics(case: dict, metrics: dict) -> None:
    assert metrics["protocol"] == "published"
    assert metrics["n"] == case["n_records"]
    for name, value in case["metrics"].items():
        assert abs(metrics[name] - value) <= 1e-3, (name, metrics[name], value)
    for name, value in case["metrics_logged"].items():
        if name != "loss":
            assert abs(metrics[name] - value) <= 1e-3, (name, metrics[name], value)
    # not a trivial comparison: the recorded values are not all 0 or 1
    assert any(0 < value < 1 for value in case["metrics"].values())


@pytest.mark.parametrize("name,counts", [
    # 2 malformed-free skips of a different kind: a .bpseq.txt and a .dbn never opened; a header
    # line, a four-field line and a blank line make 3 files unreadable; 601 nt and the 5,986-nt
    # rRNA are too long at 600, and 4 more records at 200
    ("ssp_k1", {"skipped_unreadable": 3, "dropped_too_long": 2, "ignored_not_bpseq": 2}),
    ("ssp_k1_l200_d3", {"skipped_unreadable": 3, "dropped_too_long": 6, "ignored_not_bpseq": 2}),
])
def test_structure_equals_ssp_py(tmp_path, name, counts):
    case = CASES[name]
    metrics, rows = evaluate_case(case, tmp_path)
    check_metrics(case, metrics)
    assert {key: metrics.get(key) for key in counts} == counts
    recorded = pd.read_csv(RUNS / case["records"], sep="\t", keep_default_na=False)
    recorded["id"] = recorded["file"].str.removesuffix(".bpseq")
    assert sorted(rows["id"]) == sorted(recorded["id"])
    ours = rows.set_index("id")
    pairs_by_id = _pairs_by_id(tmp_path / "predictions_bpseq", list(ours.index))
    n_pairs = 0
    for _, record in recorded.iterrows():
        row = ours.loc[record["id"]]
        assert int(row["length"]) == int(record["length"])
        # predictions.tsv holds 6 significant digits; the exact values: the decoding test below
        for key in ("precision", "recall", "f1"):
            assert row[key] == pytest.approx(record[key], abs=1e-6)
        expected = sorted(tuple(int(x) for x in p.split(":")) for p in str(record["pairs"]).split())
        assert pairs_by_id[record["id"]] == expected, record["id"]
        n_pairs += len(expected)
    assert n_pairs > 0


def _pairs_by_id(folder, ids):
    """Pairs of the predicted bpseq files, by record id (file names as write_structure_files makes them)."""
    from rnaret.io.structure import read_bpseq
    from rnaret.tasks.structure import file_names

    names = dict(zip(ids, file_names(ids)))  # the ids are unique: a name depends on its id only
    return {rid: sorted(read_bpseq(folder / f"{names[rid]}.bpseq").pairs) for rid in ids}


@pytest.mark.parametrize("name", ["rri_k5", "rri_k5_l100"])
def test_interaction_equals_rri_py(tmp_path, name):
    case = CASES[name]
    metrics, rows = evaluate_case(case, tmp_path)
    check_metrics(case, metrics)
    recorded = pd.read_csv(RUNS / case["records"], sep="\t")
    ours = rows.set_index("line").loc[recorded["line"]]
    assert list(ours["label"]) == list(recorded["label"])
    assert list(ours["prediction"]) == list(recorded["pred"])
    # score = the raw class-1 logit
    np.testing.assert_allclose(ours["score"], recorded["logit1"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["lnc_k3", "lnc_k5_l1000", "lnc_k3_l1000"])
def test_coding_equals_lnc_py(tmp_path, name):
    from rnaret.io.fasta import read_fasta

    case = CASES[name]
    metrics, rows = evaluate_case(case, tmp_path)
    check_metrics(case, metrics)
    max_len = case["settings"]["max_len"]
    cut = sum(len(r.sequence) > max_len for r in read_fasta(RUNS / case["test"][0]))
    assert metrics.get("cut_to_max_len", 0) == cut and (cut > 0) == (max_len == 1000)
    recorded = pd.read_csv(RUNS / case["records"], sep="\t")
    ours = rows.set_index("id").loc[recorded["id"]]
    assert list(ours["length"]) == list(recorded["length_used"])
    assert list(ours["label"]) == list(recorded["label"])
    assert list(ours["prediction"]) == list(recorded["pred"])
    np.testing.assert_allclose(ours["score"], recorded["score"], atol=1e-5, rtol=0)
    # mRNAs whose CDS starts past the cut: the published label (and ours here) is noncoding
    past_cut = [rid for rid, label in zip(recorded["id"], recorded["label"]) if "CDS:" in rid and label == 0]
    assert (len(past_cut) > 0) == (max_len == 1000)


def test_rnaret_protocol_differs_on_the_same_file(tmp_path):
    """The default protocol scores the same released interaction file on probabilities of
    unpadded, masked inputs: the row says so and the scores are not the logits."""
    case = CASES["rri_k5"]
    out = tmp_path / "rnaret"
    assert main(["evaluate", "--checkpoint", str(RUNS / case["checkpoint"]), "--task", "interaction",
                 "--split", f"test={RUNS / case['test'][0]}", "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    metrics = read_metrics_tsv(out / "metrics.tsv")
    assert metrics["protocol"] == "rnaret" and metrics["n"] == 60
    scores = pd.read_csv(out / "predictions.tsv", sep="\t")["score"]
    assert ((scores > 0) & (scores < 1)).all()
    recorded = pd.read_csv(RUNS / case["records"], sep="\t")
    assert not np.allclose(scores, recorded["logit1"], atol=1e-3)


# ---------------------------------------------------------------- the pieces, on the recorded inputs

def test_bpseq_reader_keeps_what_ssp_py_keeps():
    folder = RUNS / "ssp" / "inputs" / "test"
    files, other = published_bpseq_files(folder)
    assert other == 2  # the .bpseq.txt and the .dbn
    assert any("/b/" in f"/{rid}" for rid, _ in files)  # nested folders walked
    reads = {rid: read_bpseq_published(path, 600, rid) for rid, path in files}
    kept = sorted(rid for rid, r in reads.items() if r.status == "ok")
    recorded = pd.read_csv(RUNS / "ssp" / "ssp_k1" / "records.tsv", sep="\t")
    assert kept == sorted(recorded["file"].str.removesuffix(".bpseq"))
    statuses = {rid.rsplit("/", 1)[-1]: r.status for rid, r in reads.items() if r.status != "ok"}
    assert statuses == {"bpRNA_CRW_19091_header": "unreadable", "bpRNA_CRW_19099_four_fields": "unreadable",
                        "bpRNA_CRW_19650_blank_line": "unreadable",
                        "bpRNA_CRW_54567_plus_URS0002192E88_4952_601": "too_long",
                        "URS0002192E88_4952": "too_long"}
    assert len(reads["long/bpRNA_CRW_54567_plus_URS0002192E88_4952_600"].record.sequence) == 600
    # at -l 200 the 600-nt record's map fails first: still left out, counted as too long
    assert read_bpseq_published(folder / "long" / "bpRNA_CRW_54567_plus_URS0002192E88_4952_600.bpseq",
                                200).status == "too_long"


def test_bpseq_reader_special_lines(tmp_path):
    path = tmp_path / "x.bpseq"
    path.write_text("1 G 8\n2 a 0\n3 N 0\n4 C 0\n5 U 0\n6 U 0\n7 A 0\n8 C 1\n")
    read = read_bpseq_published(path, 600)
    assert read.status == "ok" and read.record.sequence == "GaNCUUAC" and read.record.pairs == [(1, 8)]
    path.write_text("1 G 9\n2 C 0\n")            # a partner past the sequence: cut with the map
    assert read_bpseq_published(path, 600).record.pairs == []
    path.write_text("1 G 700\n2 C 0\n")          # a partner past max_len: the script's IndexError
    assert read_bpseq_published(path, 600).status == "unreadable"
    path.write_text("")
    assert read_bpseq_published(path, 600).status == "unreadable"
    path.write_bytes(b"1 \xff 0\n")
    assert read_bpseq_published(path, 600).status == "unreadable"


def test_constraint_and_decoding_reproduce_the_recorded_pairs():
    """Decode the recorded model's maps again, one record at a time, without the CLI: the pairs
    and the three scores are ssp.py's."""
    from rnaret.tasks.run import load_for_evaluation

    case = CASES["ssp_k1"]
    task, model = load_for_evaluation(RUNS / case["checkpoint"], "structure", {"protocol": "published"})
    recorded = pd.read_csv(RUNS / case["records"], sep="\t", keep_default_na=False).set_index("file")
    examples = task.read_split(RUNS / "ssp" / "inputs" / "test")
    assert len(examples) == len(recorded)
    for example in examples[:4]:
        batch = task.collate([example])
        with torch.no_grad():
            logits = model(batch.tokens, batch.padding_mask)[0]
        allowed = published_constraint(example.info["sequence"], 4)
        decoded = published_decode(logits, allowed)
        expected = recorded.loc[example.id + ".bpseq"]
        scores = published_pair_scores(pair_map(example.target, len(example.tokens)), decoded)
        assert (scores.precision, scores.recall, scores.f1) == (expected["precision"], expected["recall"],
                                                               expected["f1"])
        pairs = sorted((int(i) + 1, int(j) + 1) for i, j in np.argwhere(np.triu(decoded)))
        assert pairs == sorted(tuple(int(x) for x in p.split(":")) for p in str(expected["pairs"]).split())


def test_constraint_is_lower_triangle_with_n_and_without_t():
    allowed = published_constraint("GNNNNTAc", 4)
    assert allowed.sum() > 0 and not np.triu(allowed).any()
    assert allowed[4, 0] == 1       # N pairs with G
    assert allowed[7, 0] == 1       # c (upper-cased) pairs with G
    assert allowed[5, 0] == 0       # T is not read as U
    assert allowed[3, 0] == 0       # |i - j| = 3 < 4
    assert published_constraint("GNNNNTAc", 3)[3, 0] == 1


def test_decoding_keeps_a_mutual_assignment_even_below_the_threshold():
    """The published decoding's defect, kept under the protocol: the assignment covers every
    cell, so two allowed cells of probability 0 that the assignment pairs mutually stay paired."""
    allowed = published_constraint("GGGGCCCC", 4)
    logits = torch.full((8, 8), -20.0)
    decoded = published_decode(logits, allowed)
    scores = published_pair_scores(np.zeros((8, 8)), decoded)
    assert scores.f1 == 0.0 and scores.precision == 0.0
    # whatever it keeps lies inside the constraint's pairs, symmetric, one partner per base
    assert ((decoded + decoded.T) > 0).sum() == decoded.sum() * 2 or decoded.sum() == 0
    assert (decoded.sum(axis=0) <= 1).all() and (decoded.sum(axis=1) <= 1).all()


def test_pair_scores_count_cells_and_are_zero_when_both_empty():
    empty = np.zeros((6, 6))
    assert published_pair_scores(empty, empty).f1 == 0.0
    true = pair_map([(1, 6), (2, 5)], 6)
    pred = pair_map([(1, 6), (3, 4)], 6)
    scores = published_pair_scores(true, pred)
    assert (scores.tp, scores.n_true, scores.n_pred) == (2, 4, 4)
    assert scores.f1 == pytest.approx(0.5)


# ---------------------------------------------------------------- settings and files

def test_protocol_settings_layer_and_overrides():
    task = get_task("coding", {"protocol": "published"})
    assert task.published and task.settings["max_len"] == 3000 and task.settings["keep"] == "last"
    assert get_task("coding", {"protocol": "published", "max_len": 1000}).settings["max_len"] == 1000
    assert get_task("structure", {"protocol": "published"}).settings["symmetrize"] == "lower"
    default = get_task("interaction")
    assert not default.published and default.settings["max_len"] is None and default.settings["keep"] == "best"
    with pytest.raises(ValueError, match="protocol: 'paper' is not one of"):
        get_task("coding", {"protocol": "paper"})


def test_settings_file_switched_to_the_flag_protocol(tmp_path):
    from rnaret.tasks.run import task_settings

    resolved = get_task("structure").settings  # what a pipeline passes: every resolved setting
    settings = task_settings("structure", json.dumps(resolved), ["max_len=200"], protocol="published")
    task = get_task("structure", settings)
    assert task.published and task.settings["max_len"] == 200 and task.settings["keep"] == "last"
    assert task.settings["symmetrize"] == "lower"


def test_released_file_k_mismatch_is_refused_naming_file_and_key(tmp_path, capsys):
    case = CASES["rri_k5"]
    assert main(["evaluate", "--checkpoint", str(RUNS / case["checkpoint"]), "--task", "interaction",
                 "--protocol", "published", "--split", f"test={RUNS / case['test'][0]}", "--out",
                 str(tmp_path / "o"), "--set", "k=3", "--quiet"]) != 0
    text = capsys.readouterr().err
    assert "model.pth" in text and "k=5" in text and "'k'" in text and "embed_tokens" in text
    assert not (tmp_path / "o").exists()


def test_interaction_pair_too_long_for_the_published_input_is_refused(tmp_path):
    source = (RUNS / "rri" / "inputs" / "test.txt").read_text().splitlines()[0].split("\t")
    source[3] = source[3] * 3
    path = tmp_path / "long.txt"
    path.write_text("\t".join(source) + "\n")
    task = get_task("interaction", {"protocol": "published"})
    with pytest.raises(InputError, match="max_len"):
        task.read_split(path)
    assert len(get_task("interaction").read_split(path)) == 1


def test_metrics_tsv_protocol_row_round_trip(tmp_path):
    path = tmp_path / "metrics.tsv"
    write_metrics_tsv({"f1": 0.25, "n": 3, "protocol": "published"}, path)
    assert path.read_text().splitlines()[-1] == "protocol\tpublished"
    back = read_metrics_tsv(path)
    assert back == {"f1": 0.25, "n": 3, "protocol": "published"}
    with pytest.raises(ValueError, match="one-line text"):
        write_metrics_tsv({"protocol": math.nan}, path)


def test_finetune_under_the_published_protocol_keeps_the_last_epoch(tmp_path):
    """`rnaret finetune --protocol published` from a released interaction file: the padded,
    unmasked inputs, fp32, and the model after the last epoch (validation only logged); the
    checkpoint folder then evaluates under the protocol it was trained with."""
    from rnaret.checkpoint.finetuned import read_task_meta

    case = CASES["rri_k5"]
    inputs = RUNS / "rri" / "inputs"
    out = tmp_path / "ft"
    assert main(["finetune", "--task", "interaction", "--init", str(RUNS / case["checkpoint"]), "--out", str(out),
                 "--protocol", "published", "--split", f"train={inputs / 'train.txt'}",
                 "--split", f"valid={inputs / 'test.txt'}", "--set", "epochs=2", "--set", "batch_size=32",
                 "--set", "lr=3e-2", "--device", "cpu", "--quiet"]) == 0
    meta = read_task_meta(out)
    assert meta["settings"]["protocol"] == "published" and meta["settings"]["keep"] == "last"
    assert meta["settings"]["max_len"] == 80 and meta["precision"] == "fp32"
    log = pd.read_csv(out / "train_log.tsv", sep="\t")
    assert len(log) == 2 and meta["best"]["epoch"] == log["epoch"].iloc[-1] == 2
    assert meta["best"]["value"] == pytest.approx(log["valid_auc"].iloc[-1])
    # the saved head is the last checkpoint's (the run folder keeps one per epoch)
    from safetensors.torch import load_file

    from rnaret.checkpoint.training import latest_checkpoint

    last = load_file(latest_checkpoint(tmp_path / "ft.train") / "model" / "weights.safetensors")
    saved = load_file(out / "head.safetensors")
    assert saved and all(torch.equal(value, last[f"head.{key}"]) for key, value in saved.items())
    evaluated = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(out), "--split", f"test={inputs / 'test.txt'}",
                 "--out", str(evaluated), "--device", "cpu", "--quiet"]) == 0
    metrics = read_metrics_tsv(evaluated / "metrics.tsv")
    assert metrics["protocol"] == "published"
    # the last epoch's model is the one saved: its test AUC is the last validation's (same file)
    assert metrics["auc"] == pytest.approx(log["valid_auc"].iloc[-1], abs=1e-6)
    # the same checkpoint under the other protocol: named on the command line, it wins
    again = tmp_path / "eval_rnaret"
    assert main(["evaluate", "--checkpoint", str(out), "--split", f"test={inputs / 'test.txt'}", "--protocol",
                 "rnaret", "--out", str(again), "--device", "cpu", "--quiet"]) == 0
    other = read_metrics_tsv(again / "metrics.tsv")
    assert other["protocol"] == "rnaret" and other["n"] == 60
    scores = pd.read_csv(again / "predictions.tsv", sep="\t")["score"]
    assert ((scores >= 0) & (scores <= 1)).all()


def test_structure_finetune_under_the_published_protocol_counts_what_it_leaves_out(tmp_path, capsys):
    """Training reads its folders as ssp.py does too: the test folder as a training set leaves
    out the same files, and says so."""
    from rnaret.checkpoint.finetuned import read_task_meta

    case = CASES["ssp_k1"]
    inputs = RUNS / "ssp" / "inputs"
    out = tmp_path / "ft"
    assert main(["finetune", "--task", "structure", "--init", str(RUNS / case["checkpoint"]), "--out", str(out),
                 "--protocol", "published", "--split", f"train={inputs / 'test'}",
                 "--split", f"valid={inputs / 'valid'}", "--set", "epochs=1", "--device", "cpu", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "train: reading left out or changed: ignored_not_bpseq 2, skipped_unreadable 3, dropped_too_long 2" in err
    meta = read_task_meta(out)
    assert meta["settings"]["protocol"] == "published" and meta["settings"]["symmetrize"] == "lower"
    log = pd.read_csv(out / "train_log.tsv", sep="\t")
    assert len(log) == 1 and math.isfinite(log["train_loss"].iloc[0])
