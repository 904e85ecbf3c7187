"""The `slurm` profile as Snakemake reads it (status checks, retries, the pretraining chain), and
the resources every job asks for (rnaret.slurm_resources): partition from the GPU count, never a
`--gpus=MODEL:0`, memory and wall time that grow with each attempt, multi-node GPU jobs; checked
down to the sbatch options the executor plugin builds from them."""
from __future__ import annotations

import re

import pytest

from rnaret.slurm_resources import Site, job_resources, resource_names

pytest.importorskip("snakemake_executor_plugin_slurm")
from snakemake.profiles import ProfileConfigFileParser  # noqa: E402

# slurmctld's default MinJobAge: the plugin needs it >= 3 x its first-check delay for squeue
DEFAULT_MIN_JOB_AGE = 300
SITE = Site(cpu_partition="short", gpu_partition="gpu_a100", gpu_model="a100", account="rna_lab",
            qos="normal", gpu_qos="gpu", constraint="avx512", slurm_extra="--mail-type=FAIL")


def _profile(root) -> dict:
    with open(root / "slurm" / "config.yaml") as fh:
        return dict(ProfileConfigFileParser().parse(fh))


def test_profile_uses_the_slurm_executor_with_squeue_status_checks(root):
    profile = _profile(root)
    assert profile["executor"] == "slurm"
    # without slurmdbd accounting, sacct never reports a job as ended
    assert profile["slurm-status-command"] == "squeue"
    init = int(profile["slurm-init-seconds-before-status-checks"])
    assert 1 <= init and 3 * init <= DEFAULT_MIN_JOB_AGE
    # a preempted or timed-out job is resubmitted (and requeued by SLURM where it preempts)
    assert int(profile["retries"]) >= 1
    assert profile["slurm-requeue"] == "True"
    assert profile["rerun-incomplete"] == "True"


def test_a_pretraining_chain_does_not_run_out_of_retries(root):
    """Each pretraining job resumes from the last checkpoint; the profile gives that rule alone
    Snakemake's per-rule retry count of preemptible rules, far above the other rules'."""
    profile = _profile(root)
    assert profile["preemptible-rules"] == ["pretrain"]
    assert int(profile["preemptible-retries"]) >= 10 * int(profile["retries"])


def test_the_profile_holds_no_site_values_and_no_resources(root):
    """Partitions, accounts, GPU models are the config's `slurm:` block; the rules state every
    job's resources, so nothing in the profile may override them."""
    profile = _profile(root)
    for key in ("default-resources", "set-resources", "set-threads", "max-threads"):
        assert key not in profile, key
    text = (root / "slurm" / "config.yaml").read_text()
    assert not re.search(r"^\s*(slurm_partition|slurm_account|gpu_model|qos|constraint)\s*:", text, flags=re.M)


# ------------------------------------------------------------------ resources of a job


def test_cpu_jobs_go_to_the_cpu_partition_and_grow_on_retry():
    for attempt in (1, 2, 3):
        res = job_resources(SITE, mem_mb=4000, runtime=120, gpus=0, attempt=attempt)
        assert res == {"mem_mb": 4000 * attempt, "runtime": 120 * attempt, "slurm_partition": "short",
                       "qos": "normal", "constraint": "avx512", "slurm_account": "rna_lab",
                       "slurm_extra": "--mail-type=FAIL"}


def test_gpu_jobs_go_to_the_gpu_partition_with_the_model_and_gpu_qos():
    res = job_resources(SITE, mem_mb=64000, runtime=720, gpus=4, attempt=2)
    assert res["slurm_partition"] == "gpu_a100" and (res["gpu"], res["gpu_model"]) == (4, "a100")
    assert res["qos"] == "gpu" and res["constraint"] == "avx512"
    assert (res["mem_mb"], res["runtime"]) == (128000, 1440)
    assert not {"nodes", "mpi", "gres", "tasks"} & set(res)


def test_a_job_without_gpus_never_names_a_gpu_model():
    """The plugin turns gpu_model into --gpus=MODEL:N whatever N: a 0-GPU job must not have it."""
    res = job_resources(SITE, mem_mb=6000, runtime=120, gpus=0)
    assert not {"gpu", "gpu_model", "gres"} & set(res) and res["slurm_partition"] == "short"


def test_resumable_jobs_keep_their_wall_time_and_caps_hold():
    capped = Site(max_runtime=2880, max_mem_mb=100_000)
    assert job_resources(capped, mem_mb=60_000, runtime=1440, gpus=4, attempt=3, resumable=True) == \
        {"mem_mb": 100_000, "runtime": 1440, "gpu": 4}
    assert job_resources(capped, mem_mb=1000, runtime=1000, attempt=4)["runtime"] == 2880


def test_multi_node_gpu_jobs_ask_per_node():
    res = job_resources(SITE, mem_mb=200_000, runtime=1440, gpus=4, nodes=2, resumable=True)
    assert (res["nodes"], res["tasks"], res["mpi"], res["tasks_per_gpu"]) == (2, 2, "srun", 0)
    assert res["gres"] == "gpu:a100:4" and "gpu" not in res and "gpu_model" not in res
    assert job_resources(Site(), mem_mb=1, runtime=1, gpus=2, nodes=3)["gres"] == "gpu:2"
    with pytest.raises(ValueError, match="needs gpus >= 1"):
        job_resources(SITE, mem_mb=1, runtime=1, gpus=0, nodes=2)
    with pytest.raises(ValueError, match="attempt"):
        job_resources(SITE, mem_mb=1, runtime=1, attempt=0)


def test_empty_site_values_are_left_out():
    """A bare site: no partition (the cluster's default), no account; resources a rule declares
    for such a site leave them out too, so a profile's default-resources could supply them."""
    assert job_resources(Site(), mem_mb=500, runtime=10) == {"mem_mb": 500, "runtime": 10}
    names = resource_names(Site())
    assert not {"slurm_partition", "slurm_account", "gpu_model", "qos", "constraint", "slurm_extra"} & set(names)
    assert {"slurm_partition", "slurm_account", "gpu_model", "qos", "constraint", "slurm_extra"} <= set(resource_names(SITE))
    # every resource a job can get is among the names a rule declares
    for gpus, nodes in ((0, 1), (4, 1), (4, 2)):
        assert set(job_resources(SITE, mem_mb=1, runtime=1, gpus=gpus, nodes=nodes)) <= set(resource_names(SITE))


def test_site_from_the_config_block():
    assert Site.from_config(None) == Site()
    site = Site.from_config({"gpu_partition": "gpu", "max_runtime": 2880, "account": None})
    assert (site.gpu_partition, site.max_runtime, site.account) == ("gpu", 2880, "")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['partition'\]"):
        Site.from_config({"partition": "gpu"})


# ------------------------------------------------------------------ what sbatch is given


class _Resources(dict):
    """What the plugin reads a job's resources as: a mapping with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Job:
    def __init__(self, resources: dict, threads: int):
        self.resources = _Resources(resources)
        self.threads = threads


def _sbatch(resources: dict, threads: int = 8) -> str:
    """The sbatch command line snakemake-executor-plugin-slurm builds for a job's resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = _Job(resources, threads)
    partition = f" -p {resources['slurm_partition']}" if resources.get("slurm_partition") else ""
    account = f" -A {resources['slurm_account']}" if resources.get("slurm_account") else ""
    params = {"run_uuid": "rnaret_x", "slurm_logfile": "x.log", "comment_str": "rule_x",
              "account": account, "partition": partition, "workdir": "/work"}
    return get_submit_command(job, params) + set_gres_string(job)


def test_sbatch_options_of_each_kind_of_job():
    cpu = _sbatch(job_resources(SITE, mem_mb=4000, runtime=60, gpus=0), threads=2)
    assert " -p short" in cpu and "--gpus" not in cpu and "--gres" not in cpu
    assert "--cpus-per-task=2" in cpu and "--mem 4000" in cpu and "--qos=normal" in cpu

    gpu = _sbatch(job_resources(SITE, mem_mb=64000, runtime=720, gpus=4), threads=32)
    assert " -p gpu_a100" in gpu and gpu.endswith(" --gpus=a100:4") and "--qos=gpu" in gpu
    assert "--cpus-per-task=32" in gpu and "--ntasks-per-gpu" not in gpu

    multi = _sbatch(job_resources(SITE, mem_mb=200_000, runtime=1440, gpus=4, nodes=2, resumable=True),
                    threads=32)
    assert "--nodes=2" in multi and "--ntasks=2" in multi and multi.endswith(" --gres=gpu:a100:4")
    assert "--gpus=" not in multi and "--ntasks-per-gpu" not in multi and "--cpus-per-task=32" in multi


def test_no_gpu_model_zero_even_with_a_model_named():
    line = _sbatch(job_resources(Site(gpu_model="a100", cpu_partition="cpu"), mem_mb=1, runtime=1, gpus=0))
    assert "a100" not in line and "--gpus" not in line


def test_worker_count_and_nodes_read_back_from_the_resources():
    from rnaret.slurm_resources import gpus_per_node, nodes_of

    single = job_resources(SITE, mem_mb=1, runtime=1, gpus=4)
    multi = job_resources(SITE, mem_mb=1, runtime=1, gpus=4, nodes=2)
    cpu = job_resources(SITE, mem_mb=1, runtime=1)
    assert (gpus_per_node(single), nodes_of(single)) == (4, 1)
    assert (gpus_per_node(multi), nodes_of(multi)) == (4, 2)
    assert (gpus_per_node(cpu), nodes_of(cpu)) == (0, 1)
    assert gpus_per_node({"gres": "gpu:2"}) == 2
