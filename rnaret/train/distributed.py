"""Data-parallel training over torchrun's processes (gloo on CPU, nccl on CUDA).

Global-batch semantics: every rank builds the same global token-budget batch and keeps a share
of its sequences; each rank's loss is its summed cross-entropy divided by the number of masked
tokens of the whole global batch (all ranks, all accumulation micro-batches), and the gradients
are summed over ranks. The update therefore equals the one a single process computes on the
whole global batch, whatever the number of processes. Gradients are reduced here, once per
optimizer step, rather than by ``DistributedDataParallel``: a rank whose share is empty (one long
sequence filling the budget) still takes part, with zero gradients.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process runs: rank, world size, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1


def setup(device: str | None = None) -> DistributedContext:
    """Join torchrun's process group when its environment is set (WORLD_SIZE > 1).

    device: "cpu", "cuda" or None (CUDA when available). Backend: nccl on CUDA, gloo on CPU.
    Returns a ``DistributedContext``; a plain single process gets rank 0 of 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown(ctx: DistributedContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def share(items: list, ctx: DistributedContext) -> list:
    """This rank's share of a global batch: every world_size-th item from position ``rank``.

    Length-grouped batches hold sequences of similar length, so striding balances the tokens.
    """
    return items[ctx.rank :: ctx.world_size]


def all_reduce_sum(values: list[float], ctx: DistributedContext) -> list[float]:
    """Sum a short list of numbers over ranks (float64); identity for a single process."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_gradients(parameters, ctx: DistributedContext, extra: torch.Tensor | None = None):
    """Sum the gradients of ``parameters`` over ranks, in place, through one flat buffer.

    A parameter without a gradient on this rank counts as zeros, so every rank sends the same
    buffer layout. ``extra``: a 0-d tensor (e.g. the step's summed loss) summed in the same
    collective. Returns the summed ``extra`` (``extra`` itself for a single process), or None.
    """
    if not ctx.enabled:
        return extra
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    pieces = [p.grad.reshape(-1) for p in params]
    if extra is not None:
        pieces.append(extra.reshape(1).to(pieces[0].dtype if pieces else extra.dtype))
    flat = torch.cat(pieces)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
    return None if extra is None else flat[offset].to(extra.dtype)


def broadcast_object(obj, ctx: DistributedContext):
    """Rank 0's ``obj`` on every rank (identity for a single process)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, ctx: DistributedContext) -> list:
    """Every rank's ``obj`` in rank order, on every rank ([obj] for a single process)."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistributedContext) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ctx.enabled:
        dist.barrier()
