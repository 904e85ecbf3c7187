"""Masked-language-model corruption as published (span masking of k tokens, 15 %, 80/10/10).

Published scheme (RNAret ``pretrain.py``), kept exactly: a sequence of n tokens (its non-PAD
tokens, FILL flanks and UNK included) gets ceil(0.15 n / k) spans of k consecutive tokens whose
starts are drawn uniformly, with replacement, from the n - k + 1 positions where a span fits
(so spans may overlap and the real masked fraction is below 15 %); each chosen token becomes MASK
with probability 0.8, a random k-mer with probability 0.1, and stays unchanged otherwise; the
loss is the cross-entropy on the chosen tokens only. ``MaskedBatch.span_starts`` holds the
starts drawn, so the count and the spans can be checked against the published rule.

Differences from the published code, on purpose:
- the random token is drawn uniformly from exactly the 4**k k-mer ids (6 .. 4**k + 5); the
  published ``np.random.randint(5, 5 + 4**k)`` could draw the unused id 5 and never the last k-mer;
- only k-mer positions carry loss: the positions of a span that hold PAD, FILL, CLS, MASK or UNK
  are not chosen (the published loss also scored the FILL flanks and UNK tokens a span covered);
- every draw comes from a ``torch.Generator`` so a run is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rnaret.tokenizer import FIRST_KMER_ID, MASK, PAD

IGNORE_INDEX = -100  # label of positions that carry no loss (torch's cross_entropy default)


@dataclass(frozen=True)
class MaskingConfig:
    """Parameters of the span masking; the defaults are the published ones."""

    mask_prob: float = 0.15  # share of maskable tokens the span count aims at
    mask_token_prob: float = 0.8  # chosen tokens replaced by MASK
    random_token_prob: float = 0.1  # chosen tokens replaced by a random k-mer
    span: int | None = None  # span length; None = k, as published

    def __post_init__(self):
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.mask_token_prob < 0 or self.random_token_prob < 0 or (
            self.mask_token_prob + self.random_token_prob > 1.0
        ):
            raise ValueError("mask_token_prob and random_token_prob must be >= 0 and sum to <= 1")
        if self.span is not None and self.span < 1:
            raise ValueError(f"span must be >= 1, got {self.span}")


@dataclass
class MaskedBatch:
    """One corrupted batch.

    inputs: (B, L) long, the corrupted tokens fed to the encoder;
    labels: (B, L) long, the original token where chosen, IGNORE_INDEX elsewhere;
    chosen: (B, L) bool, the positions carrying loss;
    maskable: (B, L) bool, the k-mer positions that could have been chosen;
    span_starts: (B, S) long, the span starts drawn per row (-1 past the row's count), or None.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    chosen: torch.Tensor
    maskable: torch.Tensor
    span_starts: torch.Tensor | None = None

    @property
    def n_chosen(self) -> int:
        """Number of positions carrying loss."""
        return int(self.chosen.sum())

    @property
    def masked_fraction(self) -> float:
        """Chosen / maskable tokens: the real masked fraction (below mask_prob with overlaps)."""
        n = int(self.maskable.sum())
        return self.n_chosen / n if n else 0.0


def maskable_positions(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """(B, L) bool: positions holding a k-mer id (6 .. 4**k + 5); specials and UNK are False."""
    return (tokens >= FIRST_KMER_ID) & (tokens < FIRST_KMER_ID + 4**k)


def mask_tokens(
    tokens: torch.Tensor,
    k: int,
    generator: torch.Generator,
    config: MaskingConfig = MaskingConfig(),
) -> MaskedBatch:
    """Corrupt a batch for MLM with the published span scheme (random draw fixed, see module doc).

    tokens: (B, L) long token ids, right-padded with PAD (any special ids).
    k: the tokenizer's k (vocabulary 4**k + 6; also the span length unless config.span is set).
    generator: a CPU ``torch.Generator``; all draws come from it, so equal seeds give equal masks.
    Returns a ``MaskedBatch`` on the device of ``tokens``.
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (B, L), got shape {tuple(tokens.shape)}")
    device = tokens.device
    tokens_cpu = tokens.detach().to("cpu", torch.long)
    batch, length = tokens_cpu.shape
    span = config.span or k
    maskable = maskable_positions(tokens_cpu, k)  # (B, L)
    real = tokens_cpu != PAD  # (B, L): the tokens the published count_nonzero counts
    n_real = real.sum(dim=1)  # (B,)

    # Spans start where a whole span fits in the row's tokens (the published
    # randint(0, n - k + 1)); a row shorter than a span gets its spans at its first token.
    positions = torch.arange(length)
    first = torch.where(real, positions, length).min(dim=1).values  # (B,)
    n_starts = (n_real - span + 1).clamp(min=1)  # (B,)
    n_spans = torch.tensor(
        [math.ceil(config.mask_prob * int(n) / span) if n > 0 else 0 for n in n_real],
        dtype=torch.long,
    )  # (B,): the published count, computed in float64 as published
    max_spans = int(n_spans.max()) if batch else 0

    chosen = torch.zeros(batch, length, dtype=torch.bool)
    used = torch.arange(max_spans)[None, :] < n_spans[:, None]  # (B, S)
    starts = torch.full((batch, max_spans), -1, dtype=torch.long)
    if max_spans > 0:
        u = torch.rand(batch, max_spans, generator=generator, dtype=torch.float64)
        drawn = first[:, None] + (u * n_starts[:, None]).long().clamp(max=n_starts[:, None] - 1)
        starts = torch.where(used, drawn, starts)
        covered = drawn[:, :, None] + torch.arange(span)[None, None, :]  # (B, S, span)
        valid = used[:, :, None] & (covered < length)
        rows = torch.arange(batch)[:, None, None].expand_as(covered)
        chosen[rows[valid], covered[valid]] = True
        chosen &= maskable  # only k-mer positions carry loss

    # 80/10/10 among the chosen tokens, drawn for every position so the draw count is fixed.
    action = torch.rand(batch, length, generator=generator)
    random_ids = torch.randint(
        FIRST_KMER_ID, FIRST_KMER_ID + 4**k, (batch, length), generator=generator
    )  # fixed off-by-one: exactly the 4**k k-mer ids, never a special id
    to_mask = chosen & (action < config.mask_token_prob)
    to_random = (
        chosen
        & (action >= config.mask_token_prob)
        & (action < config.mask_token_prob + config.random_token_prob)
    )
    inputs = tokens_cpu.clone()
    inputs[to_mask] = MASK
    inputs[to_random] = random_ids[to_random]
    labels = torch.where(chosen, tokens_cpu, torch.full_like(tokens_cpu, IGNORE_INDEX))
    return MaskedBatch(
        inputs=inputs.to(device),
        labels=labels.to(device),
        chosen=chosen.to(device),
        maskable=maskable.to(device),
        span_starts=starts.to(device),
    )


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and correct-prediction count over the labelled positions.

    logits: (..., V) float, e.g. (N, V) at the N chosen positions only, or (B, L, V); labels:
    the matching (...) long, IGNORE_INDEX where no loss.
    Returns (loss_sum, n_correct) as 0-d tensors; divide loss_sum by the number of labelled
    tokens (over all ranks and micro-batches) for the mean the published loss takes.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1)
    loss_sum = torch.nn.functional.cross_entropy(
        flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    with torch.no_grad():  # no boolean indexing: nothing here waits for the device
        n_correct = ((flat_logits.argmax(dim=-1) == flat_labels) & (flat_labels != IGNORE_INDEX)).sum()
    return loss_sum, n_correct
