"""The fine-tuning rules in the real workflow (a temporary copy, dry runs): once everything
upstream exists, rerunning one evaluation target runs only its evaluation rule."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from workflow_copy import make_workdir

TARGETS = ["results/interaction/mirtar/rnaret-k5/metrics.tsv",
           "results/interaction/mirtar_indtest/rnaret-k5/metrics.tsv",
           "results/coding/mouse/rnaret-k5/metrics.tsv"]


def snakemake(workdir, *args) -> str:
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--dry-run", *args],
                            cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def planned_jobs(log: str) -> list[tuple[str, list[str]]]:
    """(rule, outputs) of every job a dry run lists, in its (topological) order."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        name = re.match(r"(?:local)?rule (\w+):", block.strip())
        outputs = re.search(r"^\s+output: (.+)$", block, flags=re.M)
        if name and outputs:
            jobs.append((name.group(1), [p.strip() for p in outputs.group(1).split(",")]))
    return jobs


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    """The real Snakefile, config, rules and envs in a temporary folder, the bundled data linked."""
    return make_workdir(tmp_path_factory.mktemp("workflow"))


@pytest.mark.slow
def test_rerunning_one_evaluation_runs_only_that_rule(workflow_copy):
    log = snakemake(workflow_copy, *TARGETS)
    jobs = planned_jobs(log)
    rules = [rule for rule, _ in jobs]
    assert rules.count("finetune") == 2 and rules.count("evaluate_classifier") == 3
    # the indtest evaluation uses the checkpoint fine-tuned on mirtar
    assert re.search(r"input: results/interaction/mirtar/rnaret-k5/checkpoint, "
                     r"resources/mirna_target/mirtar_deepmirtar_indtest.tsv", log)
    # make every planned output exist, older before newer, as if the pipeline had run
    stamp = max(p.stat().st_mtime for p in (workflow_copy / "resources").resolve().rglob("*") if p.is_file())
    for _, outputs in jobs:
        stamp += 10
        for output in outputs:
            path = workflow_copy / output
            if "." in path.name:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:  # directory() outputs: the shards and the checkpoints
                path.mkdir(parents=True, exist_ok=True)
            os.utime(path, (stamp, stamp))
    assert "Nothing to be done" in snakemake(workflow_copy, *TARGETS)

    for target in TARGETS:
        forced = planned_jobs(snakemake(workflow_copy, "--forcerun", target, "--", target))
        assert forced == [("evaluate_classifier", [target, target.replace("metrics.tsv", "predictions.tsv"),
                                                   target.replace("metrics.tsv", "roc.png")])]
    (workflow_copy / TARGETS[0]).unlink()
    assert [rule for rule, _ in planned_jobs(snakemake(workflow_copy, TARGETS[0]))] == ["evaluate_classifier"]
