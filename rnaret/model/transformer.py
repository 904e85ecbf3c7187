"""The Transformer baseline: a BERT-style bidirectional encoder with the RetNet's interface.

Same tokenizer and vocabulary, embed dim, depth, heads, GLU FFN, pre-norm RMSNorm, final norm
and untied MLM head (``output_projection``) as the RetNet of the same ``EncoderConfig``
(``architecture: "transformer"``); multi-head softmax attention replaces the retention:

    layers.i:  x + dropout(attention(attention_layer_norm(x)));  x + ffn(final_layer_norm(x))
    attention: q_proj, k_proj (d -> d), v_proj (d -> value_embed_dim), out_proj; no gate

Positions: rotary embeddings on q and k with the RetNet's angles (1 / 10000**linspace(0, 1,
key_dim/2)), so attention sees relative positions only and any length works (no learned
table). Padding: PAD keys are masked through ``scaled_dot_product_attention``, so a padded row
gives what it gives alone. Softmax attention has one form (``form`` is accepted and ignored);
q and k are zero-padded to the value width so that torch's fused (flash) attention kernel runs,
in O(L) memory, on CPU and CUDA. Paper size, k = 1: 10,237,824
parameters (no g_proj: 1,572,864 fewer than the RetNet).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnaret.model.encoder import (EncoderConfig, EncoderOutput, PreNormBlock, TokenEncoder,
                                  choose_form, finish_output, fused_weight)
from rnaret.model.retention import rotary_angle, rotary_phasors, rotate_heads


class MultiHeadAttention(nn.Module):
    """Softmax attention with rotary q/k and a key padding mask. (B, L, d) -> (B, L, d).

    The projections follow autocast (bf16 under bf16 autocast); the rotation is done in float32
    and its result cast to the projections' dtype, in which ``scaled_dot_product_attention``
    runs (its kernels accumulate in float32). q and k are zero-padded to the value width when
    it is larger (and v to theirs when smaller): the scores are unchanged (the scale is given
    explicitly) and torch's fused flash kernels need one head width for q, k and v; without
    them attention falls back to materialising (B, H, L, L) scores.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        d, dv = config.retnet_embed_dim, config.retnet_value_embed_dim
        self.num_heads = config.retnet_retention_heads
        self.key_dim, self.value_dim = config.key_dim, config.value_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, dv, bias=False)
        self.out_proj = nn.Linear(dv, d, bias=False)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(proj.weight)

    def forward(self, x: Tensor, phasors: Tensor, key_mask: Tensor | None, dropout_p: float) -> Tensor:
        """x (B, L, d); phasors (L, dk/2) complex; key_mask (B, 1, 1, L) bool (True = attend) or None."""
        bsz, length, _ = x.shape
        weights = (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight)
        q, k, v = F.linear(x, fused_weight(self, weights)).split([w.shape[0] for w in weights], dim=-1)
        dtype = q.dtype
        dk, dv = self.key_dim, self.value_dim
        with torch.autocast(device_type=x.device.type, enabled=False):  # rotation in float32
            q = rotate_heads(q, phasors, self.num_heads, dtype)  # (B, H, L, dk)
            k = rotate_heads(k, phasors, self.num_heads, dtype)
            v = v.view(bsz, length, self.num_heads, dv).transpose(1, 2)  # (B, H, L, dv)
            if dk < dv:
                q, k = F.pad(q, (0, dv - dk)), F.pad(k, (0, dv - dk))
            elif dv < dk:
                v = F.pad(v, (0, dk - dv))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p,
                                                 scale=dk ** -0.5)[..., :dv]
        return self.out_proj(out.transpose(1, 2).reshape(bsz, length, -1))


class TransformerLayer(PreNormBlock):
    """Pre-norm block: x + dropout(attention(norm x)), then x + ffn(norm x)."""

    def __init__(self, config: EncoderConfig):
        super().__init__(config, "attention", MultiHeadAttention(config))

    def forward(self, x: Tensor, phasors: Tensor, key_mask: Tensor | None) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_layer_norm(x), phasors, key_mask, 0.0))
        return x + self.ffn(self.final_layer_norm(x))


class TransformerEncoder(TokenEncoder):
    """BERT-style baseline with the RetNetEncoder interface:
    ``encoder(tokens, form=None, padding_mask=None, return_logits=True)`` -> ``EncoderOutput``
    (tokens LongTensor (B, L); PAD masked unless ``padding_mask`` (B, L) bool is given);
    ``form`` is validated and otherwise ignored."""

    architecture = "transformer"

    def __init__(self, config: EncoderConfig | None = None):
        config = config or EncoderConfig(architecture="transformer")
        if config.architecture != "transformer":
            raise ValueError(f"TransformerEncoder needs architecture='transformer', got {config.architecture!r}")
        super().__init__(config, TransformerLayer)
        # derived from the config, so not part of the state dict
        self.register_buffer("rotary_angle", rotary_angle(config.key_dim), persistent=False)

    def forward_embeddings(self, embeddings: Tensor, padding_mask: Tensor, form: str | None = None,
                           return_logits: bool = True) -> EncoderOutput:
        """Run the layers on token embeddings (B, L, d) with ``padding_mask`` (B, L) bool."""
        choose_form(form, embeddings.shape[1], self.config.parallel_max_len)  # validates ``form``
        key_mask = None
        if not bool(padding_mask.all()):
            # a row with no real token attends everywhere (its outputs are zeroed) instead of NaN
            keys = padding_mask | ~padding_mask.any(dim=1, keepdim=True)
            key_mask = keys[:, None, None, :]
        angle = self.rotary_angle.double() if embeddings.dtype == torch.float64 else self.rotary_angle.float()
        phasors = rotary_phasors(embeddings.shape[1], angle)
        x = self.dropout(embeddings)
        for layer in self.layers:
            x = layer(x, phasors, key_mask)
        return finish_output(x, padding_mask, self.layer_norm, self.output_projection, return_logits)
