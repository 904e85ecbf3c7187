"""A distributed smoke test: join the process group, all-reduce, write what rank 0 saw.

    rnaret launch --nproc 2 -- ddp-check --output ddp.json     # 2 workers through torchrun
    python -m rnaret.train.ddp_check --output ddp.json         # one process

Run it inside a SLURM GPU job to check that torchrun, the backend (nccl on CUDA, gloo on CPU)
and the job's GPUs work together before starting a long pretraining.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

HELP = "check distributed training: all-reduce across torchrun workers, write the result (JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rnaret ddp-check`."""
    parser.add_argument("--output", required=True, type=Path, help="JSON file written by rank 0")
    from rnaret.device import add_device_argument

    add_device_argument(parser)


def check(device: str | None = "auto") -> dict:
    """Join the process group and all-reduce each rank's (rank + 1) and its one-hot rank vector.

    Returns, identically on every rank: world_size, backend, device type, the summed value
    (expected world_size * (world_size + 1) / 2), the summed one-hot vector (all ones when every
    rank took part exactly once), and each rank's host, local rank and CUDA_VISIBLE_DEVICES.
    """
    import torch
    import torch.distributed as dist

    from rnaret.train import distributed

    ctx = distributed.setup(device)
    try:
        # [world_size] vector: 1 at this rank, so the sum shows which ranks took part
        one_hot = [0.0] * ctx.world_size
        one_hot[ctx.rank] = 1.0
        summed = distributed.all_reduce_sum([float(ctx.rank + 1), *one_hot], ctx)
        ranks = distributed.gather_objects(
            {
                "rank": ctx.rank,
                "local_rank": ctx.local_rank,
                "host": socket.gethostname(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            },
            ctx,
        )
        backend = dist.get_backend() if ctx.enabled else "none"
        distributed.barrier(ctx)
    finally:
        distributed.teardown(ctx)
    return {
        "world_size": ctx.world_size,
        "backend": backend,
        "device": ctx.device.type,
        "torch": torch.__version__,
        "sum": summed[0],
        "expected_sum": ctx.world_size * (ctx.world_size + 1) / 2,
        "ranks_seen": summed[1:],
        "ranks": ranks,
        "ok": summed[0] == ctx.world_size * (ctx.world_size + 1) / 2
        and all(v == 1.0 for v in summed[1:]),
        "is_main": ctx.is_main,
    }


def run(args: argparse.Namespace) -> int:
    """Run the check; rank 0 writes the JSON result atomically. Returns 0 when it holds."""
    from rnaret.io.atomic import atomic_open

    result = check(args.device)
    if result.pop("is_main"):
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(args.output, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        print(
            f"ddp-check: world_size={result['world_size']} backend={result['backend']} "
            f"sum={result['sum']:g} (expected {result['expected_sum']:g}) ok={result['ok']}"
        )
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rnaret.train.ddp_check``."""
    parser = argparse.ArgumentParser(prog="python -m rnaret.train.ddp_check", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
