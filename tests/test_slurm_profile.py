"""The `slurm` profile as Snakemake reads it: site values in one place, safe status checking,
retries, GPU requests; and `snakemake --profile slurm` found from the repository root."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("snakemake_executor_plugin_slurm")
from slurm_cluster.cluster import copy_repository  # noqa: E402  (tests/slurm_cluster/)
from snakemake.profiles import ProfileConfigFileParser  # noqa: E402

SITE_VARIABLES = (
    "RNARET_SLURM_PARTITION", "RNARET_SLURM_GPU_PARTITION", "RNARET_SLURM_ACCOUNT",
    "RNARET_SLURM_GPU_MODEL", "RNARET_SLURM_MAX_THREADS",
    "RNARET_SLURM_PRETRAIN_RUNTIME",
)
# slurmctld's default MinJobAge: the plugin needs it >= 3 x its first-check delay for squeue
DEFAULT_MIN_JOB_AGE = 300


def _profile(root, monkeypatch, **site) -> dict:
    """The profile as Snakemake's own parser renders it, with site variables from ``site``."""
    for name in SITE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in site.items():
        monkeypatch.setenv(name, value)
    with open(root / "slurm" / "config.yaml") as fh:
        return dict(ProfileConfigFileParser().parse(fh))


def _pairs(entries: list[str]) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in entries)


def test_profile_uses_the_slurm_executor_with_squeue_status_checks(root, monkeypatch):
    profile = _profile(root, monkeypatch)
    assert profile["executor"] == "slurm"
    # without slurmdbd accounting, sacct never reports a job as ended
    assert profile["slurm-status-command"] == "squeue"
    init = int(profile["slurm-init-seconds-before-status-checks"])
    assert 1 <= init and 3 * init <= DEFAULT_MIN_JOB_AGE
    # a preempted or timed-out job is resubmitted (and requeued by SLURM where it preempts)
    assert int(profile["retries"]) >= 1
    assert profile["slurm-requeue"] == "True"
    assert profile["rerun-incomplete"] == "True"


def test_site_defaults_and_no_account_unless_given(root, monkeypatch):
    profile = _profile(root, monkeypatch)
    default = _pairs(profile["default-resources"])
    assert default["slurm_partition"] == "cpu"
    assert "slurm_account" not in default
    assert {"runtime", "mem_mb"} <= set(default)
    gpu_rules = _pairs(profile["set-resources"])
    assert gpu_rules["pretrain:slurm_partition"] == "gpu"
    # no model named: any GPU (sbatch --gpus=N)
    assert not any(key.endswith(":gpu_model") for key in gpu_rules)
    # CPUs are the rules' threads: a cpus_per_task/cpus_per_gpu would override them, and
    # cpus_per_gpu breaks a 0-GPU job's srun when a GPU model is set
    assert not any(key.split(":")[-1].startswith("cpus_per") for key in gpu_rules)
    assert not any(key.startswith("cpus_per") for key in default)
    assert profile["max-threads"] == "32"


def test_every_site_value_is_set_in_one_place(root, monkeypatch):
    profile = _profile(
        root, monkeypatch,
        RNARET_SLURM_PARTITION="short", RNARET_SLURM_GPU_PARTITION="a100q", RNARET_SLURM_ACCOUNT="rna_lab",
        RNARET_SLURM_GPU_MODEL="a100", RNARET_SLURM_MAX_THREADS="4",
        RNARET_SLURM_PRETRAIN_RUNTIME="2880",
    )
    default = _pairs(profile["default-resources"])
    assert (default["slurm_partition"], default["slurm_account"]) == ("short", "rna_lab")
    per_rule = _pairs(profile["set-resources"])
    for rule in ("pretrain", "finetune", "evaluate_classifier"):
        assert per_rule[f"{rule}:slurm_partition"] == "a100q"
        assert per_rule[f"{rule}:gpu_model"] == "a100"
    assert per_rule["pretrain:runtime"] == "2880"
    assert profile["max-threads"] == "4"
    # the site block is the only place the values appear
    text = (root / "slurm" / "config.yaml").read_text()
    for name in SITE_VARIABLES:
        assert len(re.findall(rf'"{name}"', text)) == 1, name


def test_profile_is_found_from_the_repository_root(root, tmp_path, monkeypatch):
    """`snakemake --profile slurm` in a copy of the repository plans every job for the cluster."""
    copy = copy_repository(root, tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if k not in SITE_VARIABLES}
    env.update(RNARET_SLURM_PARTITION="short", RNARET_SLURM_GPU_PARTITION="gpuq")
    proc = subprocess.run(
        ["timeout", "-s", "KILL", "120", sys.executable, "-m", "snakemake", "--profile", "slurm", "--dry-run"],
        cwd=copy, env=env, capture_output=True, text=True,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    planned = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", log, flags=re.M)
    assert planned, log[-3000:]
    gpu_rules = {key.split(":")[0] for key in _pairs(_profile(root, monkeypatch)["set-resources"])
                 if key.endswith(":slurm_partition")}
    assert gpu_rules & {rule for rule, _ in planned}, "no GPU rule in the default pipeline"
    for rule, resources in planned:
        partition = "gpuq" if rule in gpu_rules else "short"
        assert f"slurm_partition={partition}" in resources, (rule, resources)
        # memory may depend on input sizes not known before the run (<TBD>)
        assert re.search(r"\bmem_mb=(\d+|<TBD>)", resources) and re.search(r"\bruntime=\d+", resources), (rule, resources)
