"""`rnaret launch`: run an rnaret subcommand as one torchrun worker per GPU of this job.

    rnaret launch --nproc auto -- pretrain --config ...   # one worker per allocated GPU
    rnaret launch --nproc 4 -- pretrain ...                # 4 workers (4-GPU DDP)

``--nproc auto`` (or 0) reads the job's GPU count from SLURM's variables (SLURM_STEP_GPUS,
SLURM_GPUS_ON_NODE, ...) or CUDA_VISIBLE_DEVICES; one worker runs in this process, several run
under ``python -m torch.distributed.run --standalone``.
"""
from __future__ import annotations

import argparse
import shlex
import sys

HELP = "run an rnaret subcommand under torchrun, one worker per GPU (e.g. launch --nproc 4 -- pretrain ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rnaret launch`; everything after ``--`` is the subcommand to run."""
    parser.add_argument(
        "--nproc",
        default="auto",
        help="worker processes: an integer, or 'auto'/0 = one per GPU allocated to this job "
        "(1 without GPUs); default auto",
    )
    parser.add_argument(
        "--rdzv-port",
        type=int,
        default=None,
        help="fixed rendezvous port on 127.0.0.1 (default: torchrun --standalone picks a free one)",
    )
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the torchrun command and the worker count, run nothing",
    )
    parser.add_argument("subcommand", nargs=argparse.REMAINDER, help="-- rnaret subcommand and its arguments")


def run(args: argparse.Namespace) -> int:
    """Resolve the worker count and run the subcommand (exec torchrun when more than one)."""
    from rnaret.train.launch import launch, resolve_nproc, torchrun_command

    argv = list(args.subcommand)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("rnaret launch: error: give the subcommand after --, e.g. launch --nproc 2 -- ddp-check --output x.json",
              file=sys.stderr)
        return 2
    try:
        nproc = resolve_nproc(args.nproc)
    except ValueError as exc:
        print(f"rnaret launch: error: {exc}", file=sys.stderr)
        return 2
    if args.print_command:
        print(nproc)
        print(shlex.join(torchrun_command(nproc, argv, rdzv_port=args.rdzv_port)))
        return 0
    print(f"rnaret launch: {nproc} worker(s): rnaret {shlex.join(argv)}", file=sys.stderr, flush=True)
    return launch(argv, nproc, rdzv_port=args.rdzv_port)
