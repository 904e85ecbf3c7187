"""The readable O(L^2) reference of the retention: the published formulas as written, building
the (L, L) decay and score matrices (kept apart from the chunkwise form in
``rnaret.model.retention``, as kernel libraries keep a naive version beside their kernels).

The encoder runs it as the ``parallel`` form (for short inputs it is also the faster one); the
tests check the chunkwise form against it. Per head h with decay gamma_h and a padding mask mu
(1 real, 0 PAD):

    D[n, m]  = gamma**|n - m| * mu_m / sqrt(s_n),   s_n = sum_m gamma**|n - m| * mu_m
    S[n, m]  = (q_n . k_m) * D[n, m]
    out_n    = sum_m S[n, m] v_m / clamp(|sum_m S[n, m]|, min=1)     (normaliser detached)
"""
from __future__ import annotations

import torch
from torch import Tensor


def state_dtype(x: Tensor) -> torch.dtype:
    """float64 for float64 models, else float32 (the dtype of decays, sums and states)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def theta_shift(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """The published rotary "theta shift": rotate pairs of dims (2i, 2i+1) of x (..., L, key_dim)
    by the position's angles, ``sin``/``cos`` (L, key_dim). (The encoder rotates by one complex
    product instead: ``rnaret.model.retention.rotate``.)"""
    rotated = torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)
    return x * cos + rotated * sin


def decay_matrix(length: int, log_decay: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    """The row-normalised decay mask D: (H, L, L) without padding mask, (B, H, L, L) with one,
    in ``log_decay``'s dtype (the state dtype).

    ``padding_mask`` (B, L) bool, True at real positions: PAD columns are zeroed before the row
    sums, so PAD positions never count as keys nor in the sqrt(row sum) scale.
    """
    index = torch.arange(length, device=log_decay.device).to(log_decay)
    distance = (index[:, None] - index[None, :]).abs()
    mask = torch.exp(distance * log_decay[:, None, None])  # (H, L, L)
    if padding_mask is None:
        return mask / mask.sum(dim=-1, keepdim=True).sqrt()
    mask = mask * padding_mask[:, None, None, :].to(mask.dtype)  # (B, H, L, L)
    # real rows have s_n >= 1 (their own diagonal); the clamp only keeps PAD rows finite
    return mask / mask.sum(dim=-1, keepdim=True).clamp(min=1).sqrt()


def parallel_terms(q: Tensor, k: Tensor, v: Tensor, decay: Tensor) -> tuple[Tensor, Tensor]:
    """Retention, parallel form, as (numerator, row scale): out = num * scale.

    q, k (B, H, L, dk) rotated and scaled, v (B, H, L, dv), and ``decay`` (``decay_matrix``
    cast to the compute dtype) in the compute dtype. Returns num = (QK^T * D) V (B, H, L, dv),
    compute dtype, and scale = 1 / clamp(|score row sum|, 1) (B, H, L, 1), state dtype: the
    published normaliser, detached (it rescales without carrying gradient; dividing the
    (L, dv) output instead of the (L, L) scores is the same per-row scaling)."""
    scores = (q @ k.transpose(-1, -2)).mul_(decay)  # (B, H, L, L)
    row_sum = scores.detach().sum(dim=-1, keepdim=True, dtype=state_dtype(q))
    return scores @ v, 1 / row_sum.abs().clamp(min=1)


def parallel_retention(q: Tensor, k: Tensor, v: Tensor, decay: Tensor) -> Tensor:
    """Retention, parallel form. q, k (B, H, L, dk), v (B, H, L, dv), ``decay``
    ((H, L, L) or (B, H, L, L)) -> (B, H, L, dv) in the state dtype."""
    num, scale = parallel_terms(q, k, v, decay.to(q.dtype))
    return num.to(scale.dtype) * scale
