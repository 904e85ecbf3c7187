"""Run an `rnaret` subcommand as one process per GPU of this job, through torchrun, on one node
or on several.

One node: `rnaret launch --nproc N -- pretrain ...` is how the pretraining rule starts
multi-GPU DDP inside one SLURM job: the SLURM plugin runs the rule once (one `srun -n1 --gpus=N`
step), and torchrun then starts N workers on that node, each seeing RANK/WORLD_SIZE/LOCAL_RANK.
With N == 1 the subcommand runs in this process, without torchrun.

Several nodes: `rnaret launch --nodes M --nproc N -- pretrain ...` inside an M-node allocation
runs ``srun --nodes=M --ntasks-per-node=1 ... torchrun --nnodes=M --nproc-per-node=N
--rdzv-backend=c10d --rdzv-endpoint=HEAD:PORT --rdzv-id=JOB`` (``multinode_command``): one
torchrun launcher per node, meeting at the allocation's first node; RANK = node rank x N +
local rank, WORLD_SIZE = M x N. The allocation is read from SLURM (``slurm_allocation``: the job
id, and the node list from ``scontrol``, because Snakemake's job step removes SLURM's other
variables). Outside SLURM, give ``--rdzv-endpoint HOST:PORT`` and start the same command on each
node yourself (``torchrun_command`` with ``nnodes``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# torchrun's own default c10d port; a job's rendezvous uses DEFAULT_RDZV_PORT + job id % 1000
# so that two jobs sharing a node do not meet at the same port
DEFAULT_RDZV_PORT = 29400

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
    *,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str | None = None,
) -> list[str]:
    """The argv that runs ``rnaret <script_args>`` as ``nproc`` torchrun workers on this node.

    nproc: workers on this node (one per GPU); script_args: the rnaret subcommand and its
    arguments, e.g. ``["pretrain", "--config", "c.yaml"]``; python: the interpreter (default:
    this one, so workers import the same installation). One node: a fixed rendezvous port on
    127.0.0.1 (``rdzv_port``) or ``--standalone`` (torchrun picks a free port). Several nodes
    (``nnodes`` > 1): a c10d rendezvous at ``rdzv_endpoint`` ("HOST:PORT", required) under
    ``rdzv_id`` (default "rnaret"); run the same argv on every node. Returns
    ``[python, "-m", "torch.distributed.run", ..., "-m", "rnaret", *script_args]``, the same as
    ``torchrun ... -m rnaret ...`` without relying on a ``torchrun`` script on PATH.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    if nnodes < 1:
        raise ValueError(f"nnodes must be >= 1, got {nnodes}")
    cmd = [python or sys.executable, "-m", "torch.distributed.run"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise ValueError("a run on several nodes needs a rendezvous endpoint HOST:PORT")
        cmd += [
            f"--nnodes={nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={rdzv_id or 'rnaret'}",
            # a node that fails ends the run: the SLURM retry resumes it from its checkpoint
            "--max-restarts=0",
        ]
    elif rdzv_endpoint is not None or rdzv_port is not None:
        endpoint = rdzv_endpoint or f"127.0.0.1:{int(rdzv_port)}"
        cmd += ["--nnodes=1", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}"]
    else:
        cmd.append("--standalone")
    cmd += [f"--nproc-per-node={nproc}", "-m", "rnaret", *script_args]
    return cmd


@dataclass(frozen=True)
class Allocation:
    """A SLURM job's allocation as a multi-node launch needs it: job id and host names in order."""

    job_id: str
    nodes: tuple[str, ...]

    @property
    def head(self) -> str:
        """The first node: it hosts the rendezvous."""
        return self.nodes[0]


Runner = Callable[[Sequence[str]], str]


def _run(argv: Sequence[str]) -> str:
    """Output of a SLURM client command (scontrol), or RuntimeError with its message."""
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} not found: a multi-node launch needs the SLURM client commands")
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def slurm_allocation(env: Mapping[str, str] | None = None, run: Runner = _run) -> Allocation | None:
    """The allocation this process runs in, or None outside a SLURM job.

    env: the environment (default ``os.environ``); run: how to call ``scontrol`` (tests pass a
    stand-in). The node list comes from SLURM_JOB_NODELIST when set, else from
    ``scontrol show job JOBID`` (Snakemake's job step keeps only SLURM_JOB_ID); it is expanded
    with ``scontrol show hostnames``.
    """
    env = os.environ if env is None else env
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job_id:
        return None
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        shown = run(["scontrol", "show", "job", "--oneliner", job_id])
        match = re.search(r"(?:^|\s)NodeList=(\S+)", shown)
        if not match or match.group(1) in ("(null)", ""):
            raise RuntimeError(f"SLURM job {job_id} has no node list yet: {shown.strip()[:200]}")
        nodelist = match.group(1)
    hosts = tuple(h for h in run(["scontrol", "show", "hostnames", nodelist]).split() if h)
    if not hosts:
        raise RuntimeError(f"SLURM job {job_id}: node list {nodelist!r} names no host")
    return Allocation(job_id=str(job_id), nodes=hosts)


def rendezvous_port(job_id: str | None) -> int:
    """The rendezvous port of a job: DEFAULT_RDZV_PORT + job id % 1000 (DEFAULT_RDZV_PORT without one)."""
    digits = re.sub(r"\D", "", job_id or "")
    return DEFAULT_RDZV_PORT + (int(digits) % 1000 if digits else 0)


def multinode_command(
    nproc: int,
    nnodes: int,
    script_args: Sequence[str],
    allocation: Allocation,
    rdzv_port: int | None = None,
    python: str | None = None,
) -> list[str]:
    """The argv that starts ``nnodes`` torchrun launchers of ``nproc`` workers, one per node of
    ``allocation``, through one ``srun`` step: ``srun --nodes=M --ntasks=M --ntasks-per-node=1
    --overlap --kill-on-bad-exit=1 python -m torch.distributed.run --nnodes=M ... -m rnaret ...``.

    The rendezvous is at the allocation's first node, port ``rdzv_port`` (default
    ``rendezvous_port(job id)``), id = the job id. ``--overlap`` lets the step share the CPUs of a
    step already running the rule; a job step gets the job's GPUs on each node by default.
    Raises ValueError when the allocation has fewer than ``nnodes`` nodes.
    """
    if nnodes < 2:
        raise ValueError(f"multinode_command is for 2 or more nodes, got {nnodes}")
    if len(allocation.nodes) < nnodes:
        raise ValueError(f"--nodes {nnodes}, but SLURM job {allocation.job_id} has "
                         f"{len(allocation.nodes)} node(s): {', '.join(allocation.nodes)}")
    port = rdzv_port if rdzv_port is not None else rendezvous_port(allocation.job_id)
    srun = ["srun", f"--jobid={allocation.job_id}", f"--nodes={nnodes}", f"--ntasks={nnodes}",
            "--ntasks-per-node=1", "--overlap", "--kill-on-bad-exit=1", "--export=ALL"]
    return srun + torchrun_command(nproc, script_args, python=python, nnodes=nnodes,
                                   rdzv_endpoint=f"{allocation.head}:{port}", rdzv_id=allocation.job_id)


def resolve_nnodes(spec: str | int, env: Mapping[str, str] | None = None, run: Runner = _run) -> int:
    """Nodes for ``--nodes``: an integer >= 1, or "auto" = the nodes of this SLURM job (1 outside SLURM)."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        allocation = slurm_allocation(env, run)
        return len(allocation.nodes) if allocation else 1
    try:
        value = int(spec)
    except (TypeError, ValueError):
        raise ValueError(f"--nodes must be a positive integer or 'auto', got {spec!r}") from None
    if value < 1:
        raise ValueError(f"--nodes must be a positive integer or 'auto', got {spec!r}")
    return value


def _exec(cmd: Sequence[str]) -> None:
    """Replace this process by ``cmd`` (SLURM's signals on preemption or time limit then reach
    torchrun or srun directly, which pass them on to the workers)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(cmd[0], list(cmd))


def launch(argv: Sequence[str], nproc: int, rdzv_port: int | None = None, *, nnodes: int = 1,
           rdzv_endpoint: str | None = None, allocation: Allocation | None = None) -> int:
    """Run ``rnaret <argv>``: in this process (one node, one worker), else exec torchrun (one
    node, or this node's launcher of a multi-node run with ``rdzv_endpoint``), else exec the
    srun step that starts one launcher per node of ``allocation`` (several nodes in SLURM).

    Returns the subcommand's exit code when it runs in this process; otherwise never returns.
    """
    argv = list(argv)
    if not argv:
        raise ValueError("launch needs an rnaret subcommand to run")
    if nnodes == 1 and nproc == 1 and rdzv_endpoint is None:
        from rnaret.cli import main

        return main(argv)
    if nnodes > 1 and rdzv_endpoint is None:
        if allocation is None:
            raise ValueError(f"--nodes {nnodes} needs a SLURM allocation of {nnodes} nodes "
                             "(run it inside the job) or --rdzv-endpoint HOST:PORT on each node")
        _exec(multinode_command(nproc, nnodes, argv, allocation, rdzv_port=rdzv_port))
    else:
        rdzv_id = allocation.job_id if allocation is not None else None
        _exec(torchrun_command(nproc, argv, rdzv_port=rdzv_port, nnodes=nnodes,
                               rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id))
    raise AssertionError("exec returned")  # unreachable: exec replaces this process
