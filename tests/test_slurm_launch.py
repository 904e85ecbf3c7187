"""The torchrun launcher of multi-GPU pretraining: command built, GPUs read from a SLURM job's
environment, and a real 2-process CPU (gloo) run through `rnaret launch`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rnaret.train.launch import gpus_from_env, resolve_nproc, torchrun_command

# Environments recorded inside jobs of the test cluster (tests/slurm_cluster, 2 fake GPUs):
# the batch script of `sbatch --gpus=2`, and the step `srun -n1 --gpus=1` the Snakemake plugin
# runs inside it. The step's own GPUs must win over the job's.
BATCH_ENV = {
    "CUDA_VISIBLE_DEVICES": "0,1",
    "GPU_DEVICE_ORDINAL": "0,1",
    "SLURM_GPUS": "2",
    "SLURM_GPUS_ON_NODE": "2",
    "SLURM_JOB_GPUS": "0,1",
}
STEP_ENV = {
    "CUDA_VISIBLE_DEVICES": "0",
    "GPU_DEVICE_ORDINAL": "0",
    "SLURM_GPUS": "2",
    "SLURM_GPUS_ON_NODE": "1",
    "SLURM_JOB_GPUS": "0,1",
    "SLURM_STEP_GPUS": "0",
}


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any GPU variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_VISIBLE"))}
    env.update(extra)
    return env


@pytest.mark.parametrize("nproc", [1, 2, 4])
def test_torchrun_command_starts_one_worker_per_gpu(nproc):
    cmd = torchrun_command(nproc, ["pretrain", "--config", "run config.yaml"])
    assert cmd == [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "rnaret", "pretrain", "--config", "run config.yaml",
    ]


def test_torchrun_command_with_a_fixed_port_rendezvous_on_loopback():
    cmd = torchrun_command(2, ["ddp-check", "--output", "x.json"], rdzv_port=29517, python="/usr/bin/python3")
    assert cmd[:3] == ["/usr/bin/python3", "-m", "torch.distributed.run"]
    assert "--standalone" not in cmd
    assert {"--nnodes=1", "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:29517", "--nproc-per-node=2"} <= set(cmd)
    assert cmd[-5:] == ["-m", "rnaret", "ddp-check", "--output", "x.json"]


def test_torchrun_command_rejects_no_workers():
    with pytest.raises(ValueError, match="nproc"):
        torchrun_command(0, ["pretrain"])


@pytest.mark.parametrize(
    "env, expected",
    [
        (BATCH_ENV, 2),
        (STEP_ENV, 1),
        ({"SLURM_STEP_GPUS": "0,1,2,3", "SLURM_GPUS_ON_NODE": "4"}, 4),
        ({"SLURM_GPUS_ON_NODE": "4"}, 4),
        ({"SLURM_JOB_GPUS": "2,3"}, 2),
        ({"SLURM_GPUS_PER_NODE": "a100:4"}, 4),
        ({"SLURM_GPUS_PER_NODE": "a100:2,v100:1"}, 3),
        ({"SLURM_GPUS": "gpu:a100:8"}, 8),
        ({"SLURM_GPUS": "4"}, 4),
        ({"CUDA_VISIBLE_DEVICES": "GPU-8f6e1a2b,GPU-1c2d3e4f"}, 2),
        ({"CUDA_VISIBLE_DEVICES": "0,1,-1,3"}, 2),
        ({"CUDA_VISIBLE_DEVICES": ""}, 0),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, 0),
        ({"SLURM_GPUS_ON_NODE": "(null)", "CUDA_VISIBLE_DEVICES": "0,1,2"}, 3),
        ({}, None),
        ({"SLURM_CPUS_ON_NODE": "8", "SLURM_JOB_ID": "17"}, None),
    ],
)
def test_gpus_from_env_reads_the_allocation(env, expected):
    assert gpus_from_env(env) == expected


def test_resolve_nproc_auto_follows_the_job_and_explicit_counts_win():
    assert resolve_nproc("auto", BATCH_ENV) == 2
    assert resolve_nproc("0", STEP_ENV) == 1
    assert resolve_nproc(0, {"SLURM_GPUS_ON_NODE": "4"}) == 4
    assert resolve_nproc("3", BATCH_ENV) == 3
    assert resolve_nproc(2, {}) == 2
    # no GPU anywhere (CPU torch here): one process
    assert resolve_nproc("auto", {"CUDA_VISIBLE_DEVICES": ""}) == 1
    for bad in ("-1", "two", "1.5", -2):
        with pytest.raises(ValueError):
            resolve_nproc(bad, {})


def test_launch_command_prints_what_it_would_run_in_a_gpu_job():
    out = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "auto", "--print-command", "--",
         "pretrain", "--config", "c.yaml"],
        env=_env(**BATCH_ENV), capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out[0] == "2"
    assert out[1].endswith("-m torch.distributed.run --standalone --nproc-per-node=2 -m rnaret pretrain --config c.yaml")


def test_launch_without_a_subcommand_is_an_error():
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "2"],
        env=_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "subcommand after --" in proc.stderr


def test_two_process_gloo_run_through_the_launcher(tmp_path):
    output = tmp_path / "ddp.json"
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "2", "--",
         "ddp-check", "--output", str(output), "--device", "cpu"],
        env=_env(), capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["world_size"] == 2
    assert result["backend"] == "gloo"
    assert result["sum"] == 3.0 == result["expected_sum"]
    assert result["ranks_seen"] == [1.0, 1.0]
    assert sorted(r["local_rank"] for r in result["ranks"]) == [0, 1]
    assert result["ok"] is True
    # rank 0 alone wrote it, atomically: nothing else left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.json"]


def test_one_process_runs_in_place_without_torchrun(tmp_path):
    output = tmp_path / "ddp.json"
    proc = subprocess.run(
        [sys.executable, "-m", "rnaret", "launch", "--nproc", "1", "--", "ddp-check", "--output", str(output)],
        env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(output.read_text())
    assert (result["world_size"], result["backend"], result["sum"]) == (1, "none", 1.0)
    # torchrun would have announced OMP_NUM_THREADS for its workers
    assert "OMP_NUM_THREADS" not in proc.stderr


def test_ddp_check_module_entry_point(tmp_path):
    output = tmp_path / "sub" / "ddp.json"
    subprocess.run(
        [sys.executable, "-m", "rnaret.train.ddp_check", "--output", str(output)],
        env=_env(), check=True, capture_output=True, timeout=120,
    )
    assert json.loads(output.read_text())["ok"] is True
