"""The mRNA/lncRNA head, as published: per-position CDS tagging, Linear(d, 128) -> Conv1d(128, 1, 3).

The published ``lnc.py`` head (``ResNet1D_classifier``) has ``linear_in`` (Linear(d, 128)),
``conv_out`` (Conv1d(128, 1, 3, padding "same")) and a 16-block 1-D ResNet ``resnet`` that it
builds but never calls in ``forward``. Released files (``lnc_{H,M}_5mer.pth``) therefore hold
``classifier.resnet.blocks.*`` weights too: they are accepted and dropped (they do not change the
published model's output); ``linear_in.*`` and ``conv_out.*`` load under the same names.
There is no non-linearity between the two layers (as published).

Sequence score (published post-processing): sigmoid per position, zero at padding, the mean
over every 30-nt window, the maximum over windows; a transcript is coding when it is >= 0.5.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rnaret.heads import load_renamed

WINDOW = 30
PUBLISHED_RENAME = {
    "linear_in.weight": "linear_in.weight",
    "linear_in.bias": "linear_in.bias",
    "conv_out.weight": "conv_out.weight",
    "conv_out.bias": "conv_out.bias",
}
PUBLISHED_UNUSED_PREFIXES = ("resnet.",)


class CodingHead(nn.Module):
    """Per-position CDS logits: ``forward(states (B,L,d), padding_mask (B,L) True at real) -> (B, L)``.

    The projected states are zeroed at padding before the convolution, so the last real
    position sees zeros beyond the end whatever the padding (the conv's own "same" padding).
    """

    def __init__(self, d: int, hidden: int = 128, kernel_size: int = 3):
        super().__init__()
        self.linear_in = nn.Linear(d, hidden)
        self.conv_out = nn.Conv1d(hidden, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """states (B, L, d), padding_mask (B, L) True at real positions -> logits (B, L)."""
        x = self.linear_in(states)                                   # (B, L, hidden)
        if padding_mask is not None:
            x = x.masked_fill(~padding_mask.unsqueeze(-1), 0.0)
        return self.conv_out(x.transpose(1, 2)).squeeze(1)          # (B, L)

    def load_published_state_dict(self, classifier_state: Mapping[str, torch.Tensor]) -> None:
        """Load published ``classifier.*`` weights (prefix stripped) strictly; the unused
        ``resnet.*`` blocks are dropped."""
        load_renamed(self, classifier_state, PUBLISHED_RENAME, PUBLISHED_UNUSED_PREFIXES,
                     what="published coding head")


def position_loss(logits: torch.Tensor, labels: torch.Tensor, padding_mask: torch.Tensor,
                  positive_weight: float = 1.0) -> torch.Tensor:
    """Mean BCE over real positions. ``logits``/``labels`` (B, L) float, ``padding_mask`` (B, L) bool
    True at real positions.

    Positives are weighted ``positive_weight`` (the published ``weight_factor``, 1 by default);
    the sum is divided by the number of real positions, as published.
    """
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    if positive_weight != 1.0:
        loss = loss * torch.where(labels > 0.5, positive_weight, 1.0)
    real = padding_mask.float()
    return (loss * real).sum() / real.sum().clamp(min=1.0)


def window_scores(logits: torch.Tensor, padding_mask: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """Sequence coding scores (B,): the best ``window``-position mean of sigmoid(logits).

    ``logits`` (B, L), ``padding_mask`` (B, L) True at real positions. Padding counts as probability 0,
    and a sequence shorter than ``window`` is averaged over ``window`` positions (as the
    published code does with its zero-padded rows).
    """
    probs = torch.sigmoid(logits.float()).masked_fill(~padding_mask, 0.0)  # (B, L)
    if probs.shape[1] < window:
        probs = F.pad(probs, (0, window - probs.shape[1]))
    return probs.unfold(1, window, 1).mean(dim=2).max(dim=1).values
