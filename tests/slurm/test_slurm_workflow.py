"""What the pipeline asks SLURM for, from `snakemake --profile slurm --dry-run` in a copy of the
repository (no cluster needed: a dry run submits nothing): each job's partition from its GPU
count, its GPU request, memory and wall time; the localrules; a GPU job that finds no CUDA
stopping at once with the node and CUDA_VISIBLE_DEVICES named."""
from __future__ import annotations

import hashlib
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
GPU_RULES = {"pretrain", "finetune", "evaluate_classifier", "evaluate_structure", "evaluate_generic",
             "analyses_pca", "analyses_cls_retention", "analyses_transcripts",
             "finetune_compared", "evaluate_classifier_compared", "evaluate_structure_compared"}


@pytest.fixture(scope="module")
def repo(root, tmp_path_factory) -> Path:
    return copy_repository(root, tmp_path_factory.mktemp("repo"))


def dry_run(repo: Path, config: dict, *extra: str, configfiles: tuple[str, ...] = ()) -> list[tuple[str, dict[str, str], str]]:
    """(rule, resources, shell command) of every job `snakemake --profile slurm -n` plans with
    ``config`` as the configfile (or the files ``configfiles``, in the copy ``repo``)."""
    (repo / "site.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    proc = subprocess.run(["timeout", "-s", "KILL", "300", sys.executable, "-m", "snakemake", "--profile", "slurm",
                           "--dry-run", "--cores", "64", "--configfile", *(configfiles or ("site.yaml",)), *extra],
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
    assert GPU_RULES - {f"{r}_compared" for r in ("finetune", "evaluate_classifier", "evaluate_structure")} \
        <= {rule for rule, _, _ in jobs}
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


# the jobs of the paper's run (protocol published): 2 archives; the data stages of the published
# corpus (no dedupe, leakage removal or leakage report) with shards at k = 1, 3, 5; 5 models;
# fine-tuning of the 3 trained models a task (rnaret, transformer, onehot; interaction and
# coding also rnaret-k3) on each dataset with a train split; every trained model on every test
# split, each released file on the test sets it was trained for (RNAStrAlign_1mer: ArchiveII;
# MirTar_5mer: both interaction tests; lnc_H/lnc_M_5mer: one coding test each); all of it once
# under the run's protocol and once under the compared one (the *_compared rules); ViennaRNA and
# its figures on the 2 structure test splits
PAPER_JOBS = {
    "unpack_archive": 2, "download_corpus": 1, "normalize_corpus": 1, "filter_lengths": 1,
    "shard_tokens": 3, "corpus_summary": 1,
    "pretrain": 5, "finetune": 6 + 4 + 8, "evaluate_structure": 2 * 3 + 1, "evaluate_classifier": 2 * 4 + 2 + 2 * 4 + 2,
    "finetune_compared": 6 + 4 + 8, "evaluate_structure_compared": 2 * 3 + 1,
    "evaluate_classifier_compared": 2 * 4 + 2 + 2 * 4 + 2,
    "vienna": 2, "vienna_contact_maps": 2, "f1_distribution": 2 * 3 + 1 + 2, "structure_figures_index": 1,
    "tables": 1, "length_scaling": 1,
    # the within-dataset homology table of each of the 6 datasets and their summary
    "homology": 6, "homology_summary": 1,
    # the paper's analyses of the RetNet models: every structure evaluation (ViennaRNA's too),
    # PCA and CLS retention of the 4 interaction ones, transcripts of the 4 coding ones
    "analyses_structure": 2 * 3 + 1 + 2, "analyses_pca": 4, "analyses_cls_retention": 4, "analyses_transcripts": 4,
}


def test_the_paper_configfile_plans_every_published_job(repo, tmp_path):
    """`snakemake -n --profile slurm --configfile config/paper.yaml`, the md5s filled in for
    stand-in published archives served from 127.0.0.1: every expected job, and each rule's
    partition, GPU request and resources as the paper's run would submit them."""
    from loopback import Server
    from published_archives import make_datasets_tree, make_model_tree, pack

    tree = make_model_tree(make_datasets_tree(tmp_path / "tree", rows_per_file=10))
    archives = {name: pack(tree, tmp_path / name, top).read_bytes()
                for name, top in (("datasets.tar.gz", "data"), ("model.tar.gz", "model"))}
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    with Server(archives) as server:
        filled = {"archives": {name: {"url": server.url(file), "md5": hashlib.md5(archives[file]).hexdigest()}
                               for name, file in (("paper_data", "datasets.tar.gz"), ("paper_models", "model.tar.gz"))},
                  "slurm": {**paper["slurm"], "account": "rna_lab"}}
        (repo / "paper_filled.yaml").write_text(yaml.safe_dump(filled))
        jobs = dry_run(repo, {}, configfiles=("config/paper.yaml", "paper_filled.yaml"))
    counts: dict[str, int] = {}
    for rule, _, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    assert counts == PAPER_JOBS
    for rule, res, shell in jobs:
        assert res["slurm_account"] == "rna_lab", (rule, res)
        if rule == "pretrain":
            assert (res["slurm_partition"], res["gpu"], res["gpu_model"]) == ("gpu", "4", "a100"), res
            assert (res["mem_mb"], res["runtime"]) == ("128000", "1440")
            assert "rnaret launch --nproc 4 --nodes 1 -- pretrain" in shell and "--config-preset paper" in shell
            assert "--device cuda" in shell and "--threads 8" in shell
        elif rule in GPU_RULES:
            assert (res["slurm_partition"], res["gpu"], res["gpu_model"]) == ("gpu", "1", "a100"), (rule, res)
            assert "--device cuda" in shell, (rule, shell)
        else:
            assert res["slurm_partition"] == "cpu" and not {"gpu", "gpu_model", "gres"} & set(res), (rule, res)
    # every split and released file of the paper's run comes from its archives: none of
    # config.yaml's bundled files, nor a row selection of theirs, is merged into an entry
    for rule, _, shell in jobs:
        if rule.removesuffix("_compared") in ("finetune", "evaluate_structure", "evaluate_classifier"):
            assert "resources/" not in shell and "#" not in shell.split("--settings")[0], (rule, shell)
    # the released files and the datasets are members of the unpacked archives
    evaluations = " ".join(shell for rule, _, shell in jobs if rule in ("evaluate_structure", "evaluate_classifier"))
    for member in ("paper_models/model/ssp/RNAStrAlign_1mer.pth", "paper_models/model/rri/MirTar_5mer.pth",
                   "paper_models/model/lnc/lnc_M_5mer.pth", "paper_models/model/lnc/lnc_H_5mer.pth", "paper_data/data/archiveII",
                   "paper_data/data/data_DeepMirTar_IndTest_noRepeats_3folds.txt", "paper_data/data/lncRNA_H/test.fa"):
        assert f"results/archives/{member}" in evaluations, member
