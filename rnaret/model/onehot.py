"""The ``onehot`` control model: the encoder's interface with no learned context.

``forward(tokens, ...)`` returns an ``EncoderOutput`` whose ``last_inner_state`` is the one-hot
vector of each token (width ``vocab_size(k)``), or, with ``project_dim``, that vector times a
fixed random matrix (seeded, never trained: a buffer). Zero at padding. A task head trained on
it shows what the head alone learns from the letters with the same budget; it needs no
pretraining. Saved and read by ``rnaret.checkpoint.onehot``.

A per-position head (coding, structure) sees each position's k-mer (and what its own layers
add, e.g. the coding head's 3-wide convolution). A head that reads position 0 only (the
interaction task's CLS head) would see nothing but the constant CLS token, so for such tasks
the control is built with ``cls_segments = S``: the input is S segments, each led by a CLS-id
token (``[CLS] miRNA [SEP] site``, SEP = the CLS id); every token's one-hot vector is placed in
the block of its segment (width S x vocab), and the state at position 0 is the mean one-hot
vector of each segment's tokens side by side — the k-mer composition of the miRNA and of the
site, which the same head then reads. Still no order and no learned context: that is what
pretraining adds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rnaret.model.encoder import EncoderOutput
from rnaret.tokenizer import CLS, PAD, vocab_size


@dataclass
class OneHotConfig:
    """k: tokenizer k; project_dim: None for raw one-hot states, else the fixed projection width;
    cls_segments: None, or S for inputs of S CLS-led segments whose pooled one-hot vectors go to
    position 0 (see the module docstring)."""

    k: int = 5
    project_dim: int | None = None
    seed: int = 0
    cls_segments: int | None = None


class OneHotModel(nn.Module):
    """One-hot token states with the encoder's forward interface (see the module docstring)."""

    def __init__(self, config: OneHotConfig):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size(config.k)
        if config.cls_segments is not None and int(config.cls_segments) < 1:
            raise ValueError(f"cls_segments must be None or >= 1, got {config.cls_segments}")
        self.segments = int(config.cls_segments or 1)
        if config.project_dim:
            generator = torch.Generator().manual_seed(config.seed)
            projection = torch.randn(self.segments * self.vocab_size, config.project_dim, generator=generator)
            self.register_buffer("projection", projection / config.project_dim**0.5)
        else:
            self.projection = None

    @property
    def k(self) -> int:
        """Tokenizer k of the inputs."""
        return self.config.k

    @property
    def output_dim(self) -> int:
        """Width d of ``last_inner_state``."""
        return int(self.config.project_dim or self.segments * self.vocab_size)

    def forward(self, tokens: torch.Tensor, form: str | None = None, padding_mask: torch.Tensor | None = None,
                return_logits: bool = True) -> EncoderOutput:
        """tokens (B, L) int64 -> EncoderOutput(last_inner_state (B, L, d), padding_mask (B, L) True
        at real positions; default tokens != PAD);
        ``form`` and ``return_logits`` are accepted for interface compatibility (no logits).
        With ``cls_segments`` a real position past the last segment is a ValueError."""
        if padding_mask is None:
            padding_mask = tokens != PAD
        if self.config.cls_segments is None:
            states = F.one_hot(tokens, self.vocab_size).float()      # (B, L, V)
        else:
            states = self._segment_states(tokens, padding_mask)      # (B, L, S*V)
        if self.projection is not None:
            states = states @ self.projection                        # (B, L, project_dim)
        states = states.masked_fill(~padding_mask.unsqueeze(-1), 0.0)
        return EncoderOutput(logits=None, last_inner_state=states, hidden=states, padding_mask=padding_mask)


    def _segment_states(self, tokens: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens -> (B, L, S*V): one-hot in the block of each token's segment; position 0
        holds the mean one-hot vector of each segment's non-CLS real tokens."""
        lead = tokens == CLS
        segment = (torch.cumsum(lead.long(), dim=1) - 1).clamp(min=0)   # (B, L) 0-based
        if bool((segment[padding_mask] >= self.segments).any()):
            raise ValueError(f"an input has more than {self.segments} CLS-led segments (cls_segments)")
        segment = segment.clamp(max=self.segments - 1)
        states = F.one_hot(tokens + self.vocab_size * segment, self.segments * self.vocab_size).float()
        content = (padding_mask & ~lead).unsqueeze(-1).float()            # (B, L, 1)
        totals = (states * content).sum(dim=1)                            # (B, S*V) counts
        per_segment = totals.view(len(tokens), self.segments, self.vocab_size)
        sizes = per_segment.sum(dim=2, keepdim=True).clamp(min=1.0)       # (B, S, 1) tokens per segment
        states[:, 0] = (per_segment / sizes).view(len(tokens), -1)
        return states
