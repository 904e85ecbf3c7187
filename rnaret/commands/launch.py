"""`rnaret launch`: run an rnaret subcommand as one torchrun worker per GPU, on one node or several.

    rnaret launch --nproc auto -- pretrain --config ...   # one worker per allocated GPU
    rnaret launch --nproc 4 -- pretrain ...                # 4 workers (4-GPU DDP)
    rnaret launch --nodes 2 --nproc 4 -- pretrain ...      # in a 2-node SLURM job: 8 workers
    rnaret launch --nodes 2 --nproc 1 --rdzv-endpoint host0:29400 -- pretrain ...  # on each node

``--nproc auto`` (or 0) reads the job's GPU count from SLURM's variables (SLURM_STEP_GPUS,
SLURM_GPUS_ON_NODE, ...) or CUDA_VISIBLE_DEVICES; one worker on one node runs in this process,
several run under ``python -m torch.distributed.run`` (``rnaret.train.launch``). ``--nodes`` > 1
inside a SLURM job starts one launcher per node through ``srun`` with a c10d rendezvous at the
job's first node. The subcommand's ``--device`` is checked before any worker starts.
"""
from __future__ import annotations

import argparse
import shlex
import sys

HELP = "run an rnaret subcommand under torchrun, one worker per GPU, on one or several nodes (launch --nproc 4 -- pretrain ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rnaret launch`; everything after ``--`` is the subcommand to run."""
    parser.add_argument(
        "--nproc",
        default="auto",
        help="worker processes per node: an integer, or 'auto'/0 = one per GPU allocated to this job "
        "(1 without GPUs); default auto",
    )
    parser.add_argument(
        "--nodes",
        default="1",
        help="nodes: an integer, or 'auto' = every node of this SLURM job; more than 1 runs one torchrun "
        "launcher per node (srun inside SLURM, or --rdzv-endpoint on each node); default 1",
    )
    parser.add_argument(
        "--rdzv-port",
        type=int,
        default=None,
        help="rendezvous port (one node: on 127.0.0.1, default: torchrun --standalone picks a free one; "
        "several nodes in SLURM: on the first node, default 29400 + job id %% 1000)",
    )
    parser.add_argument(
        "--rdzv-endpoint",
        default=None,
        metavar="HOST:PORT",
        help="c10d rendezvous endpoint; with --nodes > 1, run this node's launcher only (start the same "
        "command on every node)",
    )
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the worker count and the command (torchrun, or srun + torchrun), run nothing",
    )
    parser.add_argument("subcommand", nargs=argparse.REMAINDER, help="-- rnaret subcommand and its arguments")


def _subcommand_device_problem(argv: list[str]) -> str | None:
    """Why the subcommand's --device cannot be used here (None if it can): the check every worker
    would make, made once before any of them starts."""
    from rnaret.cli import COMMANDS, build_parser, device_problem

    if argv[0] not in COMMANDS:
        return None  # the workers print the usage error
    try:
        args = build_parser(argv[0]).parse_args(argv)
    except SystemExit:
        return None  # a usage error: the workers print it
    return device_problem(args)


def run(args: argparse.Namespace) -> int:
    """Resolve the worker and node counts and run the subcommand (exec torchrun or srun)."""
    from rnaret.train.launch import (launch, multinode_command, resolve_nnodes, resolve_nproc,
                                     slurm_allocation, torchrun_command)

    argv = list(args.subcommand)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("rnaret launch: error: give the subcommand after --, e.g. launch --nproc 2 -- ddp-check --output x.json",
              file=sys.stderr)
        return 2
    try:
        nproc = resolve_nproc(args.nproc)
        nnodes = resolve_nnodes(args.nodes)
        allocation = slurm_allocation() if nnodes > 1 and args.rdzv_endpoint is None else None
        if nnodes > 1 and args.rdzv_endpoint is None and allocation is None:
            raise ValueError(f"--nodes {nnodes} outside a SLURM job: give --rdzv-endpoint HOST:PORT and "
                             "run the command on each node")
        if allocation is not None:
            cmd = multinode_command(nproc, nnodes, argv, allocation, rdzv_port=args.rdzv_port)
        else:
            cmd = torchrun_command(nproc, argv, rdzv_port=args.rdzv_port, nnodes=nnodes,
                                   rdzv_endpoint=args.rdzv_endpoint)
    except (ValueError, RuntimeError) as exc:
        print(f"rnaret launch: error: {exc}", file=sys.stderr)
        return 2
    if args.print_command:
        print(nproc)
        print(shlex.join(cmd))
        return 0
    problem = _subcommand_device_problem(argv)
    if problem:
        print(f"rnaret launch: error: {problem}", file=sys.stderr)
        return 1
    where = f" on each of {nnodes} nodes" if nnodes > 1 else ""
    print(f"rnaret launch: {nproc} worker(s){where}: rnaret {shlex.join(argv)}", file=sys.stderr, flush=True)
    return launch(argv, nproc, rdzv_port=args.rdzv_port, nnodes=nnodes, rdzv_endpoint=args.rdzv_endpoint,
                  allocation=allocation)
