"""The reference fixtures recorded from the published scripts (tests/fixtures/published_runs) are
complete and agree with themselves: every case's files exist, the per-record outputs give the
metrics the published script logged, the special inputs were treated the published way, and the
saved weights have the shapes of the recorded architecture."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "published_runs"
sys.path.insert(0, str(ROOT / "benchmarks"))
from published_protocol import metrics_from_records, script_options  # noqa: E402

MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
CASES = {case["name"]: case for case in MANIFEST["cases"]}


def records(case: dict) -> list[dict]:
    with open(FIXTURES / case["records"], newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_every_task_and_special_case_is_recorded():
    by_task = {}
    for case in CASES.values():
        by_task.setdefault(case["task"], set()).add((case["k"], case["settings"]["max_len"]))
    assert by_task["structure"] == {(1, 600), (1, 200)}
    assert by_task["interaction"] == {(5, 80), (5, 100)}
    assert by_task["coding"] == {(3, 3000), (5, 1000), (3, 1000)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_files_and_logged_metrics(name):
    case = CASES[name]
    for key in ("checkpoint", "log", "records"):
        assert (FIXTURES / case[key]).is_file(), case[key]
    for path in case["test"]:
        assert (FIXTURES / path).exists(), path
    log = (FIXTURES / case["log"]).read_text(encoding="utf-8")
    assert "Test Set —— " in log
    recomputed = metrics_from_records(case["script"], FIXTURES / case["records"])
    assert recomputed == pytest.approx(case["metrics"], abs=1e-12)
    for key, value in recomputed.items():
        assert abs(round(value, 4) - case["metrics_logged"][key]) <= 6e-5, key
    assert len(records(case)) == case["n_records"] > 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_checkpoint_shapes_match_the_recorded_options(name):
    case = CASES[name]
    state = torch.load(FIXTURES / case["checkpoint"], weights_only=True, map_location="cpu")
    assert state["ret.embed_tokens.weight"].shape == (4 ** case["k"] + 6, 32)
    assert all(key.startswith(("ret.", "classifier.")) for key in state)
    assert script_options(dict(case, options=case["command"].split())) == case["script_options"]


def test_structure_inputs_treated_the_published_way():
    kept = {r["file"] for r in records(CASES["ssp_k1"])}
    names = {Path(f).name for f in kept}
    # nested folders are walked; exactly 600 nt is kept, 601 nt and the 5,986-nt rRNA are not
    assert any(f.startswith("a/b/") for f in kept)
    assert any(n.endswith("_600.bpseq") for n in names)
    assert not any(n.endswith("_601.bpseq") or n.startswith("URS") for n in names)
    # malformed .bpseq files are skipped, other extensions never read
    assert not any(n.endswith(("_header.bpseq", "_four_fields.bpseq", "_blank_line.bpseq")) for n in names)
    assert not any(n.endswith((".txt", ".dbn")) for n in names)
    assert len(kept) == 12
    short = {r["file"] for r in records(CASES["ssp_k1_l200_d3"])}
    assert short < kept and all(int(r["length"]) <= 200 for r in records(CASES["ssp_k1_l200_d3"]))
    # the comparison is not on an empty case: some records have predicted pairs
    assert sum(bool(r["pairs"]) for r in records(CASES["ssp_k1"])) >= 5


def test_coding_labels_follow_the_cut():
    rows = {r["id"].split("|")[0]: r for r in records(CASES["lnc_k3_l1000"])}
    headers = [line[1:] for line in (FIXTURES / "lnc/inputs/test_cut.fa").read_text().splitlines()
               if line.startswith(">")]
    past = straddle = 0
    for header in headers:
        fields = header.split("|")
        cds = next((f for f in fields if f.startswith("CDS:")), None)
        row = rows[fields[0]]
        assert int(row["length_used"]) == min(int(fields[6]), 1000)
        if cds is None:
            assert row["label"] == "0"
            continue
        start, end = map(int, cds[4:].split("-"))
        assert row["label"] == ("1" if start <= 1000 else "0")
        past += start > 1000
        straddle += start <= 1000 < end
    assert past >= 2 and straddle >= 2


def test_interaction_padding_changes_the_logits():
    at_80 = records(CASES["rri_k5"])
    at_100 = records(CASES["rri_k5_l100"])
    assert [r["label"] for r in at_80] == [r["label"] for r in at_100]
    assert any(a["logit1"] != b["logit1"] for a, b in zip(at_80, at_100))
    assert {r["pred"] for r in at_80} == {"0", "1"}
