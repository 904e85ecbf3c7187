"""Heads of the generic tasks (``rnaret.tasks.generic``), built on the patterns of the paper's heads.

- :class:`SequenceHead`: one vector per sequence, read at the [CLS] position (``pooling="cls"``,
  as the interaction head reads it) or averaged over the real positions (``pooling="mean"``),
  then Linear(d, d) -> tanh -> Linear(d, n_out): ``n_out`` class logits, or 1 regression value.
- :class:`TokenHead`: one output per position, Linear(d, hidden) -> Conv1d(hidden, n_out, 3) as
  the coding head does (the projected states zeroed at padding before the convolution), so each
  position also sees its two neighbours.

No released weights exist for these heads: a published fine-tuned ``.pth`` cannot start one.
"""
from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("cls", "mean")


class SequenceHead(nn.Module):
    """``forward(states (B,L,d), padding_mask (B,L) True at real) -> (B, n_out)``."""

    def __init__(self, d: int, n_out: int, pooling: str = "cls", dropout: float = 0.0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.dense = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, n_out)
        self.dropout = nn.Dropout(dropout)

    def pool(self, states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, L, d) -> (B, d): the state at position 0, or the mean over real positions."""
        if self.pooling == "cls":
            return states[:, 0]
        if padding_mask is None:
            return states.mean(dim=1)
        weights = padding_mask.to(states.dtype).unsqueeze(-1)          # (B, L, 1)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def forward(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """states (B, L, d) -> outputs (B, n_out)."""
        pooled = self.dropout(self.pool(states, padding_mask))
        return self.out_proj(self.dropout(torch.tanh(self.dense(pooled))))


class TokenHead(nn.Module):
    """``forward(states (B,L,d), padding_mask (B,L) True at real) -> (B, L, n_out)``."""

    def __init__(self, d: int, n_out: int, hidden: int = 128, kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        self.linear_in = nn.Linear(d, hidden)
        self.conv_out = nn.Conv1d(hidden, n_out, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """states (B, L, d) -> outputs (B, L, n_out)."""
        x = self.dropout(self.linear_in(states))                        # (B, L, hidden)
        if padding_mask is not None:
            x = x.masked_fill(~padding_mask.unsqueeze(-1), 0.0)
        return self.conv_out(x.transpose(1, 2)).transpose(1, 2)        # (B, L, n_out)
