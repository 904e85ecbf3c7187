"""A generic task in the real workflow (a temporary copy): the default config plans the bundled ncRNA
families' fine-tunes, evaluations, homology and table, and one evaluation (the one-hot control on
a few rows of the bundled table) runs for real through the rules."""
from __future__ import annotations

import csv

import pytest

from workflow_copy import ROOT, make_workdir, planned_jobs, snakemake, write_yaml
from rnaret.metrics import read_metrics_tsv
from rnaret.tables import build_tables

TASK = "sequence-classification"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("generic"))


def test_the_default_run_plans_the_generic_jobs(workdir):
    jobs = planned_jobs(workdir)
    for model in ("rnaret-k5", "transformer-k5", "onehot"):
        assert ("finetune", f"results/{TASK}/mncr/{model}/checkpoint") in jobs
        assert ("evaluate_generic", f"results/{TASK}/mncr/{model}/metrics.tsv") in jobs
    assert ("homology", f"results/homology/{TASK}/mncr.tsv") in jobs
    assert ("tables", "results/tables/structure.html") in jobs


@pytest.mark.slow  # a fine-tune and an evaluation through Snakemake: about a minute here
def test_one_generic_evaluation_runs_through_the_rules(workdir):
    with open(ROOT / "resources/ncrna/mncr_families.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    keep = [r for split, n in (("train", 3), ("valid", 2), ("test", 2)) for label in sorted({r["label"] for r in rows})
            for r in [r for r in rows if r["split"] == split and r["label"] == label and len(r["sequence"]) < 200][:n]]
    (workdir / "data").mkdir()
    with open(workdir / "data/mncr.tsv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep)
    configfile = write_yaml(workdir / "small.yaml", {
        "datasets": {TASK: {"mncr": {s: {"path": "data/mncr.tsv", "split": s} for s in ("train", "valid", "test")}}},
        "finetune": {TASK: {"models": ["onehot"], "settings": {"epochs": 1, "batch_size": 6}}}})
    target = f"results/{TASK}/mncr/onehot/metrics.tsv"
    snakemake(workdir, target, "--cores", "1", "--configfile", configfile, timeout=300)
    metrics = read_metrics_tsv(workdir / target)
    assert metrics["n"] == 12 and metrics["n_classes"] == 6
    assert 0 <= metrics["accuracy"] <= 1 and -1 <= metrics["mcc"] <= 1
    log = (workdir / f"logs/{TASK}/mncr/onehot/finetune.log").read_text()
    assert "18 train, 12 valid examples" in log
    table = build_tables([workdir / target], tasks=[TASK])[TASK]
    assert [(r.dataset, r.model, r.values["n"]) for r in table.rows] == [("mncr", "onehot", 12)]
