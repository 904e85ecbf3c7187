"""The miRNA-target interaction head, as published: CLS state -> Linear(d, d) -> tanh -> Linear(d, 2).

The published ``rri.py`` builds it as ``classifier = nn.Sequential(Linear, Tanh, Linear)``, so a
released fine-tuned file (``MirTar_5mer.pth``) holds ``classifier.0.{weight,bias}`` and
``classifier.2.{weight,bias}``. Mapping (published -> ours): ``0.*`` -> ``dense.*``,
``2.*`` -> ``out_proj.*``. The head reads ``last_inner_state[:, 0]``, the CLS position.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from rnaret.heads import load_renamed

PUBLISHED_RENAME = {
    "0.weight": "dense.weight",
    "0.bias": "dense.bias",
    "2.weight": "out_proj.weight",
    "2.bias": "out_proj.bias",
}


class InteractionHead(nn.Module):
    """CLS classification head: ``forward(states (B,L,d), padding_mask (B,L)) -> logits (B, n_classes)``.

    ``dropout`` (0 as published) is applied to the CLS state and to the hidden layer in training.
    """

    def __init__(self, d: int, n_classes: int = 2, dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, n_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, states: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """states (B, L, d) -> logits (B, n_classes) from position 0 (padding_mask unused)."""
        cls = self.dropout(states[:, 0])                             # (B, d): position 0 is CLS
        return self.out_proj(self.dropout(torch.tanh(self.dense(cls))))  # (B, n_classes)

    def load_published_state_dict(self, classifier_state: Mapping[str, torch.Tensor]) -> None:
        """Load published ``classifier.*`` weights (prefix stripped: ``0.weight`` ...) strictly."""
        load_renamed(self, classifier_state, PUBLISHED_RENAME, what="published interaction head")
