"""Dropout whose masks belong to the sequence: drawn from (seed, step, row), not from a process's RNG.

A training loop enters ``row_seeds(model, keys)`` around its forward pass, with ``keys`` (B,)
int64 one number per row of the batch (``row_keys(base, rows)``: base from (run seed, step,
micro-batch), rows = the rows' indices in the GLOBAL batch). Inside it every ``RowDropout``
keeps element (b, t, j) — row b, absolute position t, feature j — when a counter-based hash
(the splitmix64 finaliser) of ``keys[b] + site + t * width + j`` is at least ``p`` (24-bit
resolution), where ``site`` is fixed by the module's name in the model. A row's mask therefore
depends on that row alone: not on the other rows of the batch, its padded width, how many ranks
share the batch, the execution form (parallel or chunkwise, whole or in segments:
``positions_from`` gives a segment's first position) or the device. A 1-rank and an N-rank run
drop the same elements, and a resumed run drops what the uninterrupted run dropped, with no RNG
state to restore.

Outside ``row_seeds`` (or in eval mode, or with p = 0) ``RowDropout`` is ``nn.Dropout``.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 torch stores (two's complement)."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)  # splitmix64's increment: spreads row numbers apart
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)
_KEEP_BITS = 24  # uniform draws of 24 bits: p resolved to 6e-8


def mix64_(z: Tensor) -> Tensor:
    """The splitmix64 finaliser, in place on an int64 tensor (wrapping arithmetic): a bijection
    of 64-bit words whose outputs look independent for consecutive inputs. Returns ``z``."""
    for shift, factor in ((30, _MIX1), (27, _MIX2), (31, None)):
        high = z >> shift
        high &= (1 << (64 - shift)) - 1  # a logical shift: torch's >> is arithmetic
        z ^= high
        if factor is not None:
            z *= factor
    return z


def mix64(z: Tensor) -> Tensor:
    """``mix64_`` on a copy of ``z``."""
    return mix64_(z.clone())


def row_keys(base: int, rows, device=None) -> Tensor:
    """(B,) int64 keys of the rows ``rows`` (their indices in the global batch: a sequence, or a
    tensor, computed where it lies) for a forward pass whose randomness comes from the integer
    ``base`` (e.g. a seed of (run seed, step)); on ``device`` when given."""
    rows = torch.as_tensor(rows, dtype=torch.int64)
    keys = mix64(rows * _GOLDEN + _signed(base))
    return keys if device is None else keys.to(device)


def site_of(name: str) -> int:
    """The stream offset of the dropout module named ``name`` (64 bits of its blake2b hash)."""
    return _signed(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little"))


@dataclass
class _Rows:
    keys: Tensor  # (B,) int64 on the model's device
    offset: int = 0  # absolute position of index 0 of the tensors being processed
    counters: dict = field(default_factory=dict)  # (offset, L, W, device) -> (L, W) int64


_ROWS: contextvars.ContextVar[_Rows | None] = contextvars.ContextVar("rnaret_row_dropout", default=None)


def name_sites(model: nn.Module) -> None:
    """Give every ``RowDropout`` in ``model`` the site of its qualified name (once per model)."""
    if getattr(model, "_row_dropout_sites", False):
        return
    for name, module in model.named_modules():
        if isinstance(module, RowDropout):
            module.site = site_of(name)
    model._row_dropout_sites = True


@contextlib.contextmanager
def row_seeds(model: nn.Module, keys: Tensor):
    """Within this context the ``RowDropout`` modules of ``model`` draw row b's mask from
    ``keys[b]`` (``keys``: (B,) int64 on the model's device, B the batch's rows)."""
    name_sites(model)
    token = _ROWS.set(_Rows(keys=keys))
    try:
        yield
    finally:
        _ROWS.reset(token)


@contextlib.contextmanager
def positions_from(start: int):
    """Inside: index 0 of the tensors passed to ``RowDropout`` is absolute position ``start`` (a
    segment of the chunkwise form). No-op outside ``row_seeds``."""
    rows = _ROWS.get()
    if rows is None:
        yield
        return
    before, rows.offset = rows.offset, int(start)
    try:
        yield
    finally:
        rows.offset = before


class _KeepScale(torch.autograd.Function):
    """x * keep / (1 - p), saving only the bool mask for the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.masked_fill(~keep, 0) * scale

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        return grad.masked_fill(~keep, 0) * ctx.scale, None, None


def keep_mask(keys: Tensor, site: int, offset: int, shape: tuple[int, ...], p: float,
              counters: dict | None = None) -> Tensor:
    """Bool keep-mask of ``shape`` (B, L, W...) for rows ``keys`` (B,) at positions offset..offset+L.

    Element (b, t, j) (j flattened over the trailing dims, width W) is kept when the top 24 bits
    of mix64(keys[b] + site + (offset + t) * W + j) are >= p * 2**24.
    """
    batch = shape[0]
    length = shape[1] if len(shape) > 2 else 1
    width = 1
    for n in shape[2:] if len(shape) > 2 else shape[1:]:
        width *= n
    device = keys.device
    cache_key = (offset, length, width, device)
    counter = None if counters is None else counters.get(cache_key)
    if counter is None:
        positions = torch.arange(offset, offset + length, device=device, dtype=torch.int64)
        counter = positions[:, None] * width + torch.arange(width, device=device, dtype=torch.int64)
        if counters is not None:
            counters[cache_key] = counter
    z = mix64_(counter[None] + (keys + site)[:, None, None])  # (B, L, W)
    z >>= 64 - _KEEP_BITS
    z &= (1 << _KEEP_BITS) - 1
    keep = z >= int(round(p * (1 << _KEEP_BITS)))
    return keep.view(shape) if len(shape) > 2 else keep.view(batch, width)


class RowDropout(nn.Dropout):
    """``nn.Dropout`` whose mask, inside ``row_seeds``, is a function of each row's key, the
    element's absolute position and feature, and this module's site (module docstring).
    Input (B, L, ...) or (B, W); output the same shape."""

    site: int = 0

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        rows = _ROWS.get()
        if rows is None:
            return super().forward(x)
        if x.dim() < 2 or x.shape[0] != rows.keys.shape[0]:
            raise ValueError(f"RowDropout: {rows.keys.shape[0]} row keys for a tensor of shape "
                             f"{tuple(x.shape)}")
        if self.p >= 1.0:
            return torch.zeros_like(x)
        keep = keep_mask(rows.keys, self.site, rows.offset, tuple(x.shape), self.p, rows.counters)
        return _KeepScale.apply(x, keep, 1.0 / (1.0 - self.p))
