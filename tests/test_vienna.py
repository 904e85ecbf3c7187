"""The ViennaRNA baseline: the `vienna` rule and `rnaret vienna` give the F1 that a direct
`RNA.fold` call, scored by hand here, gives on a handful of bundled structures."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import RNA
import yaml

from rnaret.cli import main as rnaret_main
from rnaret.vienna import bpp_matrix, fold_many, fold_mea, fold_mfe, normalize_sequence

N_NESTED, N_PK = 4, 2


@pytest.fixture(scope="module")
def handful(resources, tmp_path_factory) -> tuple[Path, list[dict]]:
    """A CSV of 4 nested and 2 pseudoknotted test records (the shortest of each), rows as read."""
    with open(resources / "structure" / "bprna_test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_length = sorted(rows, key=lambda r: int(r["len"]))
    chosen = ([r for r in by_length if r["has_pseudoknot"] == "False"][:N_NESTED]
              + [r for r in by_length if r["has_pseudoknot"] == "True"][:N_PK])
    path = tmp_path_factory.mktemp("handful") / "handful.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return path, chosen


# ---- scoring by hand, independent of rnaret's parsers and metrics

def nested_pairs(dot_bracket: str) -> set[tuple[int, int]]:
    stack, pairs = [], set()
    for pos, ch in enumerate(dot_bracket, start=1):
        if ch == "(":
            stack.append(pos)
        elif ch == ")":
            pairs.add((stack.pop(), pos))
    return pairs


def f1_by_hand(true: set, pred: set) -> tuple[float, float, float]:
    if not true and not pred:
        return 1.0, 1.0, 1.0
    tp = len(true & pred)
    if not true or not pred or not tp:
        return 0.0, 0.0, 0.0
    p, r = tp / len(pred), tp / len(true)
    return p, r, 2 * p * r / (p + r)


def expected_scores(rows: list[dict], fold) -> dict[str, float]:
    scores = []
    for row in rows:
        true = {tuple(p) for p in json.loads(row["base_pairs"])}
        scores.append(f1_by_hand(true, nested_pairs(fold(row["sequence"]))))
    return {name: sum(s[k] for s in scores) / len(scores) for k, name in enumerate(("precision", "recall", "f1"))}


def direct_mfe(sequence: str) -> str:
    return RNA.fold(sequence.upper())[0]


def direct_mea(sequence: str) -> str:
    fc = RNA.fold_compound(sequence.upper())
    _, mfe = fc.mfe()
    fc.exp_params_rescale(mfe)
    fc.pf()
    return fc.MEA()[0]


def read_tsv(path) -> dict[str, str]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["metric", "value"]
    return dict(rows[1:])


# ---- the rule and the command

def test_vienna_rule_gives_the_f1_of_rna_fold_scored_by_hand(root, handful, tmp_path):
    path, rows = handful
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["datasets"] = {"structure": {"handful": {"test": str(path)}}}
    config["baselines"] = {"vienna": {"threads": 2, "method": "both"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/structure/handful/vienna/metrics.tsv"
    run = subprocess.run([sys.executable, "-m", "snakemake", target, "--snakefile", str(root / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                          "--cores", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    got = read_tsv(tmp_path / target)
    want = expected_scores(rows, direct_mfe)
    for name in ("f1", "precision", "recall"):
        assert float(got[name]) == pytest.approx(want[name], abs=1e-12), name
    want_mea = expected_scores(rows, direct_mea)
    for name in ("f1", "precision", "recall"):
        assert float(got[f"mea_{name}"]) == pytest.approx(want_mea[name], abs=1e-12), name
    assert (int(got["n"]), int(got["n_pk"])) == (N_NESTED + N_PK, N_PK)
    assert float(got["f1_pk"]) == 0.0  # MFE structures have no pseudoknots
    out = tmp_path / "results/structure/handful/vienna"
    dbn = (out / "predictions.dbn").read_text().splitlines()
    assert dbn[0::3] == [f">{r['id']}" for r in rows]
    assert dbn[2::3] == [direct_mfe(r["sequence"]) for r in rows]
    assert (tmp_path / "logs/structure/handful/vienna.log").exists()


def test_vienna_command_per_sequence_table_and_methods(handful, tmp_path):
    path, rows = handful
    assert rnaret_main(["vienna", "--dataset", str(path), "--output-dir", str(tmp_path / "mfe"),
                        "--threads", "1", "--method", "mfe", "--quiet"]) == 0
    metrics = read_tsv(tmp_path / "mfe" / "metrics.tsv")
    assert list(metrics) == ["f1", "precision", "recall", "f1_pk", "precision_pk", "recall_pk", "n", "n_pk"]
    with open(tmp_path / "mfe" / "per_sequence.tsv", newline="") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    assert [t["id"] for t in table] == [r["id"] for r in rows]
    for t, r in zip(table, rows):
        true = {tuple(p) for p in json.loads(r["base_pairs"])}
        assert int(t["length"]) == len(r["sequence"]) and int(t["n_true_pairs"]) == len(true)
        assert float(t["mfe_f1"]) == pytest.approx(f1_by_hand(true, nested_pairs(direct_mfe(r["sequence"])))[2])
        assert float(t["mfe_energy"]) == pytest.approx(RNA.fold(r["sequence"].upper())[1], abs=0.006)
        assert (t["mfe_f1_pk"] == "NA") == (r["has_pseudoknot"] == "False")
    assert not (tmp_path / "mfe" / "predictions_mea.dbn").exists()

    assert rnaret_main(["vienna", "--dataset", str(path), "--output-dir", str(tmp_path / "mea"),
                        "--method", "mea", "--gamma", "1.0", "--quiet"]) == 0
    mea = read_tsv(tmp_path / "mea" / "metrics.tsv")
    assert float(mea["f1"]) == pytest.approx(expected_scores(rows, direct_mea)["f1"], abs=1e-12)
    assert mea["f1"] == mea["mea_f1"]


def test_vienna_command_rejects_bad_arguments(handful, tmp_path, capsys):
    path, _ = handful
    assert rnaret_main(["vienna", "--dataset", str(path), "--output-dir", str(tmp_path), "--threads", "0"]) == 1
    assert rnaret_main(["vienna", "--dataset", str(tmp_path / "absent.csv"), "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--threads must be at least 1" in err and "absent.csv" in err and "no such file" in err
    assert not (tmp_path / "metrics.tsv").exists()


@pytest.mark.parametrize("name, content, words", [
    ("bad.dbn", ">r1\nGGGAAACCC\n(((...]]]\n", ["record 'r1'", "line 3", "mismatched brackets"]),
    ("pairs.txt", "m1\tCCAUU\tNM_1\tACGU\t1\n", ["a structure dataset is", "this path is a miRNA-target table"]),
    ("seqs.fa", ">a\nACGU\n", ["a structure dataset is", "this path is a FASTA"]),
])
def test_vienna_reads_through_the_structure_dataset_reader(tmp_path, capsys, name, content, words):
    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / "vienna"
    assert rnaret_main(["vienna", "--dataset", str(path), "--output-dir", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"rnaret vienna: error: {path}" in err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()


# ---- the library functions

def test_sequences_are_normalised_and_unknown_letters_never_pair():
    assert normalize_sequence("acgtN") == "ACGUN"
    with pytest.raises(ValueError, match="position 3"):
        normalize_sequence("AC-GU")
    assert fold_mfe("ggggaaacccc") == fold_mfe("GGGGAAACCCC") == fold_mfe("GGGGTTTCCCC")
    assert fold_mfe("GGGGAAACCCC") == ("((((...))))", -4.5)
    assert fold_mfe("NNNNNNNNAAANNNNNNNN")[0] == "." * 19  # N pairs with nothing
    assert fold_mfe("GGGGAAANNNN")[0] == "." * 11


def test_bpp_matrix_mea_and_span_limit():
    seq = "GGGGAAACCCCAUAUGGGAAACCC"
    p = bpp_matrix(seq)
    assert p.shape == (24, 24) and np.allclose(p, p.T) and np.all(np.diag(p) == 0)
    assert np.all(p.sum(axis=1) <= 1 + 1e-9) and p[0, 10] > 0.5
    structure, energy = fold_mea(seq)
    assert len(structure) == 24 and energy == pytest.approx(RNA.fold_compound(seq).eval_structure(structure),
                                                            abs=0.006)
    assert fold_mea(seq, gamma=0.01)[0].count("(") <= structure.count("(")
    long_hairpin = "GGGGGGAAAAAAAAAAAACCCCCC"
    assert max(j - i for i, j in nested_pairs(fold_mfe(long_hairpin)[0])) > 10
    assert all(j - i <= 10 for i, j in nested_pairs(fold_mfe(long_hairpin, max_bp_span=10)[0]))
    assert all(j - i <= 10 for i, j in nested_pairs(fold_mea(long_hairpin, max_bp_span=10)[0]))


def test_fold_many_in_processes_keeps_input_order(handful):
    _, rows = handful
    seqs = [r["sequence"] for r in rows]
    one = fold_many(seqs, ("mfe", "mea"), threads=1, progress=False)
    two = fold_many(seqs, ("mfe", "mea"), threads=2, progress=False)
    assert one == two
    assert [p.mfe_structure for p in two] == [direct_mfe(s) for s in seqs]
    assert [p.mea_structure for p in two] == [direct_mea(s) for s in seqs]


def test_workers_start_from_a_fork_server_unless_main_cannot_be_imported_again(monkeypatch):
    import types

    from rnaret.vienna import _start_method

    # a process that has run torch must not fork its workers: they would inherit its locks
    assert _start_method() == "forkserver"          # pytest's __main__ is importable by name
    stdin_script = types.ModuleType("__main__")
    stdin_script.__file__ = "<stdin>"
    monkeypatch.setitem(sys.modules, "__main__", stdin_script)
    assert _start_method() == "fork"
