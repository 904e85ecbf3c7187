"""Run an `rnaret` subcommand as one process per GPU of this job, through torchrun.

`rnaret launch --nproc N -- pretrain ...` is how the pretraining rule starts multi-GPU DDP
inside one SLURM job: the SLURM plugin runs the rule once (one `srun -n1 --gpus=N` step), and
torchrun then starts N workers on that node, each seeing RANK/WORLD_SIZE/LOCAL_RANK.
With N == 1 the subcommand runs in this process, without torchrun.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence

# Variables that say how many GPUs this process may use, most specific first: the job step's
# own GPUs, then the node's share of the job, then the whole job, then CUDA's visibility list.
GPU_ENV_VARS = (
    "SLURM_STEP_GPUS",  # "0,1": GPU indices of this job step (srun)
    "SLURM_GPUS_ON_NODE",  # "2": GPUs of this job (or step) on this node
    "SLURM_JOB_GPUS",  # "0,1": GPU indices of the whole job on this node
    "SLURM_GPUS_PER_NODE",  # "a100:2" or "2": what --gpus-per-node asked for
    "SLURM_GPUS",  # "a100:4" or "4": what --gpus asked for (single-node jobs here)
    "CUDA_VISIBLE_DEVICES",  # "0,1" or "GPU-uuid,..."; "" or "-1" hides every GPU
)


def _count_gpus(name: str, value: str) -> int | None:
    """GPUs named by one variable's value, or None when the value says nothing usable."""
    value = value.strip()
    if name == "CUDA_VISIBLE_DEVICES":
        if value in ("", "NoDevFiles"):
            return 0
        count = 0
        for item in value.split(","):
            # CUDA stops at the first invalid (e.g. negative) ordinal
            if item.strip().startswith("-"):
                break
            count += 1
        return count
    if not value or value.lower() in ("(null)", "n/a"):
        return None
    if name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        return len([item for item in value.split(",") if item.strip()])
    # counts, possibly typed and comma-separated: "4", "a100:4", "a100:2,v100:1", "gpu:a100:2"
    total = 0
    for item in value.split(","):
        match = re.search(r"(\d+)(?:\(.*\))?$", item.strip())
        if not match:
            return None
        total += int(match.group(1))
    return total


def gpus_from_env(env: Mapping[str, str] | None = None) -> int | None:
    """Number of GPUs allocated to this process, read from SLURM's and CUDA's variables.

    env: the environment to read (default ``os.environ``). Returns the count from the first of
    ``GPU_ENV_VARS`` that is set and parseable (0 when CUDA_VISIBLE_DEVICES hides every GPU), or
    None when none of them is set.
    """
    env = os.environ if env is None else env
    for name in GPU_ENV_VARS:
        if name in env:
            count = _count_gpus(name, env[name])
            if count is not None:
                return count
    return None


def resolve_nproc(spec: str | int, env: Mapping[str, str] | None = None) -> int:
    """Number of worker processes for ``--nproc``: an integer >= 1, or "auto"/0.

    "auto" (or 0, what a rule passes as ``{resources.gpu}`` when it asks for no GPU) means one
    process per GPU allocated to this job (``gpus_from_env``); outside SLURM, one per CUDA
    device torch sees; without any GPU, a single process.
    """
    if isinstance(spec, str) and spec.strip().lower() != "auto":
        if not spec.strip().isdigit():
            raise ValueError(f"--nproc must be a positive integer, 0 or 'auto', got {spec!r}")
        spec = int(spec)
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"--nproc must be a positive integer, 0 or 'auto', got {spec}")
        if spec > 0:
            return spec
    count = gpus_from_env(env)
    if count is None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return max(count, 1)


def torchrun_command(
    nproc: int,
    script_args: Sequence[str],
    rdzv_port: int | None = None,
    python: str | None = None,
) -> list[str]:
    """The argv that runs ``rnaret <script_args>`` as ``nproc`` torchrun workers on this node.

    nproc: workers (one per GPU); script_args: the rnaret subcommand and its arguments, e.g.
    ``["pretrain", "--config", "c.yaml"]``; rdzv_port: a fixed rendezvous port on 127.0.0.1
    (default: ``--standalone``, which picks a free port itself); python: the interpreter
    (default: this one, so workers import the same installation). Returns
    ``[python, "-m", "torch.distributed.run", ..., "-m", "rnaret", *script_args]``, the same as
    ``torchrun ... -m rnaret ...`` without relying on a ``torchrun`` script on PATH.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    cmd = [python or sys.executable, "-m", "torch.distributed.run"]
    if rdzv_port is None:
        cmd.append("--standalone")
    else:
        cmd += [
            "--nnodes=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{int(rdzv_port)}",
        ]
    cmd += [f"--nproc-per-node={nproc}", "-m", "rnaret", *script_args]
    return cmd


def launch(argv: Sequence[str], nproc: int, rdzv_port: int | None = None) -> int:
    """Run ``rnaret <argv>``: in this process when nproc == 1, else exec torchrun.

    argv: the rnaret subcommand and its arguments. With nproc == 1 returns the subcommand's exit
    code. With nproc > 1 this process becomes torchrun (os.execv: SLURM's signals on preemption
    or time limit reach torchrun directly, which passes them to its workers) and never returns.
    """
    argv = list(argv)
    if not argv:
        raise ValueError("launch needs an rnaret subcommand to run")
    if nproc == 1:
        from rnaret.cli import main

        return main(argv)
    cmd = torchrun_command(nproc, argv, rdzv_port=rdzv_port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
    raise AssertionError("os.execv returned")  # unreachable: execv replaces this process
