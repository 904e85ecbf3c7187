"""Retention scores of one layer and head: the (L, L) matrix that the published code returns
with ``rttn_required`` (what the paper's retention-map analyses plot), for a padded batch.

The published parallel retention forms, per head, S = (q k^T) * D with the row-normalised decay
mask D (``rnaret.model.retention.decay_matrix``) and returns S / clamp(|row sum of S|, min=1),
the matrix that multiplies the values. Here the same matrix is formed for one layer and head
only, on request: the encoder itself never builds it (its chunkwise form is O(L)); this costs
O(L^2) memory for the chosen head. PAD positions are no keys (as in the encoder) and their rows
and columns are zero, so a padded row gives the scores of the same sequence alone.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rnaret.model.encoder import RetNetEncoder, padding_mask_for
from rnaret.model.retention import RetentionPlan, decay_matrix, rotary_phasors


def retention_scores(encoder: RetNetEncoder, tokens: Tensor, layer: int, head: int,
                     padding_mask: Tensor | None = None) -> Tensor:
    """Retention scores of ``layer`` (0-based) and ``head`` (0-based) for ``tokens`` (B, L)
    int64: float32 (B, L, L), row n = how much each position m weighs in position n's output.

    ``padding_mask`` (B, L) bool, True at real positions (default: tokens != PAD). The encoder
    runs in inference mode (no dropout, no gradient) whatever its mode; its weights are unchanged.
    Raises ValueError for an encoder without retention (the Transformer baseline), or a layer or
    head out of range.
    """
    if not isinstance(encoder, RetNetEncoder):
        raise ValueError(f"retention scores need a RetNet encoder, got {type(encoder).__name__}")
    config = encoder.config
    if not 0 <= layer < config.retnet_layers:
        raise ValueError(f"layer {layer} out of range: the encoder has {config.retnet_layers} layers (0-based)")
    if not 0 <= head < config.retnet_retention_heads:
        raise ValueError(f"head {head} out of range: the encoder has {config.retnet_retention_heads} "
                         "retention heads (0-based)")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (batch, length), got shape {tuple(tokens.shape)}")
    mask = padding_mask_for(tokens, padding_mask)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            # the input of ``layer`` (the embeddings for layer 0), PAD positions zero
            states = encoder(tokens, padding_mask=mask, return_logits=False, output_hidden_states=True)
            scores = layer_retention_scores(encoder, states.hidden_states[layer], layer, mask, head)
    finally:
        encoder.train(was_training)
    return scores[:, 0]


def layer_retention_scores(encoder: RetNetEncoder, x: Tensor, layer: int, padding_mask: Tensor,
                           head: int | None = None) -> Tensor:
    """Retention scores of ``layer`` given its input x (B, L, d) (``hidden_states[layer]`` of
    the encoder's output) and ``padding_mask`` (B, L) bool, True at real positions: float32
    (B, H, L, L) for every head, or (B, 1, L, L) for ``head``. Computed in float32 without
    autocast and without gradient, whatever the caller's mode."""
    rel, config = encoder.retnet_rel_pos, encoder.config
    block = encoder.layers[layer]
    heads = slice(None) if head is None else slice(head, head + 1)
    length = x.shape[1]
    masked = None if bool(padding_mask.all()) else padding_mask
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        plan = RetentionPlan("parallel", rotary_phasors(length, rel.angle.float()), rel.decay.float(),
                             masked, config.chunk_size, torch.float32)
        q, k, _, _ = block.retention.project(block.retention_layer_norm(x.float()), plan)
        q, k = q[:, heads], k[:, heads]  # (B, h, L, dk); k scaled and zero at PAD
        decay = decay_matrix(length, rel.decay.float()[heads], masked)  # (h, L, L) or (B, h, L, L)
        scores = (q @ k.transpose(-1, -2)) * decay
        scores = scores / scores.sum(dim=-1, keepdim=True).abs().clamp(min=1)
        if masked is not None:  # PAD rows (their columns are already zero)
            scores = scores.masked_fill(~masked[:, None, :, None], 0)
    return scores
