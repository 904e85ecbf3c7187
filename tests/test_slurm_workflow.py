"""What the pipeline asks SLURM for, from `snakemake --profile slurm --dry-run` in a copy of the
repository (no cluster needed: a dry run submits nothing): each job's partition from its GPU
count, its GPU request, memory and wall time; the localrules; a GPU job that finds no CUDA
stopping at once with the node and CUDA_VISIBLE_DEVICES named."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from slurm_cluster.cluster import copy_repository

pytest.importorskip("snakemake_executor_plugin_slurm")

SITE = {"cpu_partition": "short", "gpu_partition": "gpuq", "gpu_model": "a100", "account": "rna_lab"}
GPU_RULES = {"pretrain", "finetune", "evaluate_classifier", "evaluate_structure"}


@pytest.fixture(scope="module")
def repo(root, tmp_path_factory) -> Path:
    return copy_repository(root, tmp_path_factory.mktemp("repo"))


def dry_run(repo: Path, config: dict, *extra: str) -> list[tuple[str, dict[str, str], str]]:
    """(rule, resources, shell command) of every job `snakemake --profile slurm -n` plans."""
    (repo / "site.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    proc = subprocess.run(["timeout", "-s", "KILL", "300", sys.executable, "-m", "snakemake", "--profile", "slurm",
                           "--dry-run", "--cores", "64", "--configfile", "site.yaml", *extra],
                          cwd=repo, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", log):
        match = re.search(r"^(?:local)?rule (\w+):$", block, flags=re.M)
        if not match or match.group(1) == "all":
            continue
        resources = re.search(r"^    resources: (.*)$", block, flags=re.M).group(1)
        shell = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        jobs.append((match.group(1), dict(item.split("=", 1) for item in resources.split(", ")),
                     shell.group(1) if shell else ""))
    assert jobs, log[-3000:]
    return jobs


def test_each_job_goes_to_the_partition_its_gpu_count_asks_for(repo):
    jobs = dry_run(repo, {"slurm": SITE, "pretrain": {"gpus": 4, "threads": 32}, "finetune": {"gpus": 1}})
    assert GPU_RULES <= {rule for rule, _, _ in jobs}
    for rule, res, shell in jobs:
        assert res["slurm_account"] == "rna_lab", (rule, res)
        assert re.fullmatch(r"\d+", res["mem_mb"]) and re.fullmatch(r"\d+", res["runtime"]), (rule, res)
        if rule in GPU_RULES:
            assert res["slurm_partition"] == "gpuq" and res["gpu_model"] == "a100", (rule, res)
            assert res["gpu"] == ("4" if rule == "pretrain" else "1"), (rule, res)
            assert "--device cuda" in shell, (rule, shell)
        else:
            assert res["slurm_partition"] == "short", (rule, res)
            assert not {"gpu", "gpu_model", "gres"} & set(res), (rule, res)
    pretrain = [shell for rule, _, shell in jobs if rule == "pretrain"]
    assert pretrain and all("rnaret launch --nproc 4 --nodes 1 -- pretrain" in s and "--threads 8" in s
                            for s in pretrain)


def test_model_jobs_without_gpus_stay_on_the_cpu_partition(repo):
    jobs = dry_run(repo, {"slurm": SITE})  # config.yaml: pretrain.gpus 0, finetune.gpus 0
    for rule, res, shell in jobs:
        assert res["slurm_partition"] == "short", (rule, res)
        assert not {"gpu", "gpu_model", "gres"} & set(res), (rule, res)
        if rule in GPU_RULES:
            assert "--device cpu" in shell, (rule, shell)


def test_memory_and_wall_time_grow_with_the_attempt_pretraining_time_does_not(repo):
    first = {rule: res for rule, res, _ in dry_run(repo, {"slurm": SITE, "pretrain": {"gpus": 2}})}
    third = {rule: res for rule, res, _ in dry_run(repo, {"slurm": SITE, "pretrain": {"gpus": 2}}, "--attempt", "3")}
    for rule in first:
        assert int(third[rule]["mem_mb"]) == 3 * int(first[rule]["mem_mb"]), rule
        grows = 1 if rule == "pretrain" else 3
        assert int(third[rule]["runtime"]) == grows * int(first[rule]["runtime"]), rule


def test_multi_node_pretraining_asks_per_node_and_launches_per_node(repo):
    jobs = dry_run(repo, {"slurm": SITE, "pretrain": {"gpus": 4, "nodes": 2, "threads": 32}})
    for rule, res, shell in jobs:
        if rule == "pretrain":
            assert (res["nodes"], res["tasks"], res["mpi"], res["gres"]) == ("2", "2", "srun", "gpu:a100:4"), res
            assert "gpu" not in res and "gpu_model" not in res
            assert "rnaret launch --nproc 4 --nodes 2 -- pretrain" in shell


def test_downloads_and_summaries_run_where_snakemake_runs(repo):
    """localrules: compute nodes often have no internet; the summary is seconds of work."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                                config_settings=ConfigSettings(), snakefile=repo / "Snakefile", workdir=repo)._workflow
        # what runs locally under a cluster executor (Snakemake's `localrules` record; `all`, a
        # rule without a command, always runs locally)
        local = {rule.name for rule in workflow.rules if rule.name in workflow._localrules}
    assert local == {"download_corpus", "download_dataset", "unpack_archive", "corpus_summary"}


def test_a_gpu_job_without_cuda_stops_at_once_naming_the_node(repo):
    """A `gpus: 1` rule on this CPU machine (no allow_cpu): `rnaret finetune --device cuda`
    stops before it reads a dataset, with the node and CUDA_VISIBLE_DEVICES in the message."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    (repo / "gpu.yaml").write_text(yaml.safe_dump({"finetune": {"gpus": 1}}))
    target = "results/structure/bprna/onehot/checkpoint"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    env["CUDA_VISIBLE_DEVICES"] = "0"
    proc = subprocess.run(["timeout", "-s", "KILL", "300", sys.executable, "-m", "snakemake", target, "--cores", "1",
                           "--configfile", "gpu.yaml"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    log = (repo / "logs" / "structure" / "bprna" / "onehot" / "finetune.log").read_text()
    assert f"--device cuda was asked for, but torch finds no usable CUDA device on node {socket.gethostname()} " \
           "(CUDA_VISIBLE_DEVICES='0'" in log, log[-2000:]
    # it stopped before the fine-tuning read anything: no epoch, no checkpoint
    assert "epoch" not in log.lower() and not (repo / target).exists()
