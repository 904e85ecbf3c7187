"""The RNAret encoder: a bidirectional RetNet with the published state-dict names and MLM head.

Layout (pre-norm, no biases; names are the published state-dict keys):

    embed_tokens (vocab, d), padding_idx 0, not scaled
    layers.i:  x + retention(retention_layer_norm(x));  x + ffn(final_layer_norm(x))
    layer_norm (final RMSNorm)  ->  output_projection (vocab, d), the MLM head
    retnet_rel_pos.angle (d / heads), retnet_rel_pos.decay (heads): buffers, saved in checkpoints

``EncoderOutput.last_inner_state`` is the last layer's output before the final norm (what the
published task heads read); ``.hidden`` is after it (what the MLM head reads).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# the config dataclass lives in a torch-free module; re-exported here for existing imports
from rnaret.model.config import ARCHITECTURES, PUBLISHED_FIELDS, EncoderConfig  # noqa: F401
from rnaret.model.dropout import RowDropout, positions_from
from rnaret.model.retention import (FORMS, chunkwise_pass, contiguous_as, decay_log, make_plan, retention_terms,
                                    rotary_angle, rotate_heads, row_normaliser)
from rnaret.tokenizer import PAD

LAYERNORM_EPS = 1e-6


@dataclass
class EncoderOutput:
    """What an encoder returns (shapes for tokens (B, L), d = retnet_embed_dim).

    logits: (B, L, vocab) MLM logits, or None when ``return_logits=False``;
    last_inner_state: (B, L, d) last layer's output before the final RMSNorm (task heads read it);
    hidden: (B, L, d) after the final RMSNorm;
    padding_mask: (B, L) bool, True at real positions;
    hidden_states: None, or with ``output_hidden_states=True`` a tuple of n_layers + 1 tensors
    (B, L, d): the token embeddings, then each layer's output (the last is ``last_inner_state``).
    All outputs are zero at PAD positions, and PAD never changes the real positions.
    """
    logits: Tensor | None
    last_inner_state: Tensor
    hidden: Tensor
    padding_mask: Tensor
    hidden_states: tuple[Tensor, ...] | None = None


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) over the last dim, computed in float32, times an optional weight.

    A float32 input gives a float32 output; a bf16/fp16 input is normalised in float32 by the
    kernel (as published) and returned in its own dtype."""

    def __init__(self, dim: int, eps: float = LAYERNORM_EPS, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight
        if weight is not None and weight.dtype != x.dtype:
            weight = weight.to(x.dtype)
        # torch's kernels compute reduced-precision inputs in float32 and round once
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)


# fused weights of the forward pass in progress (inference): built once, dropped at its end
_FUSED_WEIGHTS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("rnaret_fused_weights", default=None)


@contextlib.contextmanager
def fused_weights_once():
    """Within: each module's fused weight (``fused_weight``) is built once and reused by every
    row group and segment of the forward pass; dropped on exit, so a weight changed between
    passes (an optimizer step, a load) is always seen."""
    token = _FUSED_WEIGHTS.set({})
    try:
        yield
    finally:
        _FUSED_WEIGHTS.reset(token)


def fused_weight(owner: nn.Module, weights: tuple[Tensor, ...]) -> Tensor:
    """The row-wise concatenation of ``weights`` (one matmul instead of several reads of x), in
    the autocast dtype when autocast is on (else the weights' own).

    With autograd recording it is built each call, so that gradients reach each weight; inside
    ``fused_weights_once`` (the encoders' inference forward) it is built once per pass."""
    if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
        return torch.cat(weights)
    device = weights[0].device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weights[0].dtype
    cache = _FUSED_WEIGHTS.get()
    if cache is None:
        return torch.cat(weights).to(dtype)
    key = (id(owner), dtype)
    if key not in cache:
        cache[key] = torch.cat(weights).to(dtype)
    return cache[key]


class GLU(nn.Module):
    """Gated FFN: fc2(dropout(gelu(fc1 x) * gate x)), then dropout; (..., d) -> (..., d)."""

    def __init__(self, embed_dim: int, ffn_dim: int, dropout: float, activation_dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, ffn_dim, bias=False)
        self.fc2 = nn.Linear(ffn_dim, embed_dim, bias=False)
        self.gate = nn.Linear(embed_dim, ffn_dim, bias=False)
        self.activation_dropout = RowDropout(activation_dropout)
        self.dropout = RowDropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        # fc1 and gate as one matmul (one read of x); the published modules keep their names
        h, g = F.linear(x, fused_weight(self, (self.fc1.weight, self.gate.weight))).split(
            self.fc1.out_features, dim=-1)
        # gelu in float32 as published: torch's kernels compute a bf16 input in float32
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(h) * g)))


def compute_dtype(device_type: str, state: torch.dtype) -> torch.dtype:
    """The dtype of the retention products: the autocast dtype when autocast is on for
    ``device_type`` (bf16), else ``state`` (float32, or float64 for float64 models)."""
    if state == torch.float32 and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return state


class MultiScaleRetention(nn.Module):
    """q, k, v, g projections, rotary, retention per head, group RMSNorm, swish gate, out_proj.

    forward(x (B, L, d), plan) -> (B, L, d). The projections follow autocast; the rotation is
    done in float32 and the retention products in the plan's compute dtype, its decays, sums
    and normalisers in float32 (``rnaret.model.retention``); the group norm in float32.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        d, dv = config.retnet_embed_dim, config.retnet_value_embed_dim
        self.num_heads = config.retnet_retention_heads
        self.key_dim, self.head_dim = config.key_dim, config.value_dim
        self.scaling = self.key_dim ** -0.5
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, dv, bias=False)
        self.g_proj = nn.Linear(d, dv, bias=False)
        self.out_proj = nn.Linear(dv, d, bias=False)
        self.group_norm = RMSNorm(self.head_dim, elementwise_affine=False)
        self.reset_parameters()

    def reset_parameters(self):
        """The published initialisation."""
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.g_proj):
            nn.init.xavier_uniform_(proj.weight, gain=2 ** -2.5)
        nn.init.xavier_uniform_(self.out_proj.weight)

    def project(self, x: Tensor, plan, start: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Projections of x (B, S, d), positions start..start+S of the plan, ->
        q, k (B, H, S, dk) rotated (k scaled by key_dim**-0.5 and zero at PAD), v (B, H, S, dv),
        head-major, contiguous, in the plan's compute dtype; silu(g) (B, S, H * dv)."""
        bsz, length, _ = x.shape
        # the four projections as one matmul (one read of x); views into its output
        weights = (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight, self.g_proj.weight)
        q, k, v, g = F.linear(x, fused_weight(self, weights)).split([w.shape[0] for w in weights], dim=-1)
        dtype = plan.compute_dtype
        phasors = plan.phasors[start:start + length]
        with torch.autocast(device_type=x.device.type, enabled=False):
            q = rotate_heads(q, phasors, self.num_heads, dtype)
            # keys scaled by key_dim**-0.5 and PAD keys zeroed, folded into their rotation
            key_phasors = phasors * self.scaling
            if plan.padding_mask is not None:
                key_phasors = key_phasors * plan.padding_mask[:, start:start + length, None]
            k = rotate_heads(k, key_phasors, self.num_heads, dtype)
            v = contiguous_as(v.view(bsz, length, self.num_heads, -1).transpose(1, 2), dtype)
        return q, k, v, F.silu(g)

    def gate_out(self, num: Tensor, scale: Tensor, silu_g: Tensor) -> Tensor:
        """The retention output num * scale (num (B, H, S, dv), compute dtype; scale
        (B, H, S, 1), float32) through the group norm per head, times silu(g) (B, S, H * dv),
        out_proj -> (B, S, d).

        The group norm of num * scale (scale > 0) is num / sqrt(mean(num^2) + eps / scale^2),
        formed in float32: the row scale folds into the norm, so the output is never
        materialised in float32 (one pass from num to the gate's dtype and layout)."""
        bsz, _, length, dv = num.shape
        with torch.autocast(device_type=num.device.type, enabled=False):
            norm = torch.linalg.vector_norm(num, dim=-1, keepdim=True, dtype=scale.dtype)
            inverse = torch.rsqrt(norm.square() / dv + self.group_norm.eps / scale.square())
            out = contiguous_as((num * inverse.to(num.dtype)).transpose(1, 2), silu_g.dtype)
        return self.out_proj(silu_g * out.view(bsz, length, -1))

    def forward(self, x: Tensor, plan) -> Tensor:
        """Whole-sequence retention block, either form: x (B, L, d) -> (B, L, d)."""
        q, k, v, silu_g = self.project(x, plan)
        with torch.autocast(device_type=x.device.type, enabled=False):
            num, scale = retention_terms(q, k, v, plan)
        del q, k, v
        return self.gate_out(num, scale, silu_g)


class PreNormBlock(nn.Module):
    """The layer layout both encoders share: a token mixer (retention or attention) with the RMSNorm
    before it, then the GLU feed-forward with its RMSNorm, and the residual dropout. The mixer and
    its norm are registered as ``mixer_name`` and ``mixer_name + "_layer_norm"`` (the published
    state-dict names), before the feed-forward, so that parameters are created in the published
    order (the same initial weights for a seed)."""

    def __init__(self, config: EncoderConfig, mixer_name: str, mixer: nn.Module):
        super().__init__()
        d = config.retnet_embed_dim
        self.add_module(mixer_name, mixer)
        self.add_module(f"{mixer_name}_layer_norm", RMSNorm(d))
        self.ffn = GLU(d, config.retnet_ffn_embed_dim, config.dropout, config.activation_dropout)
        self.final_layer_norm = RMSNorm(d)
        self.dropout = RowDropout(config.dropout)


class RetNetLayer(PreNormBlock):
    """Pre-norm block: x + dropout(retention(norm x)), then x + ffn(norm x). (B, L, d) -> (B, L, d).

    The chunkwise form runs the block through ``rnaret.model.retention.chunkwise_pass`` over
    segments of ``plan.segment`` positions (whole chunks), so that long inputs are processed in
    cache-sized pieces: the projections of each segment in its first pass, the group norm, gate,
    output projection and FFN of each segment in its second. The numbers do not depend on the
    segment length.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__(config, "retention", MultiScaleRetention(config))

    def forward(self, x: Tensor, plan) -> Tensor:
        if plan.form == "chunkwise":
            return self._forward_segments(x, plan)
        x = x + self.dropout(self.retention(self.retention_layer_norm(x), plan))
        return x + self.ffn(self.final_layer_norm(x))

    def _forward_segments(self, x: Tensor, plan) -> Tensor:
        length = x.shape[1]
        block = self.retention
        assert length % plan.decays.size == 0, "the encoder aligns chunkwise inputs to whole chunks"
        segments = [(start, min(start + plan.segment, length)) for start in range(0, length, plan.segment)]
        # no autograd: write into one tensor instead of concatenating the segments
        result = torch.empty_like(x) if not torch.is_grad_enabled() else None
        outputs = []

        def project(start, end):  # -> q, k, v and silu(g), the context ``finish`` receives
            return block.project(self.retention_layer_norm(x[:, start:end]), plan, start)

        def finish(start, end, num, row, silu_g):
            with torch.autocast(device_type=x.device.type, enabled=False):
                scale = row_normaliser(row, plan.row_scale[:, :, start:end])
            with positions_from(start):  # dropout masks follow absolute positions
                seg = x[:, start:end] + self.dropout(block.gate_out(num, scale, silu_g))
                seg = seg + self.ffn(self.final_layer_norm(seg))
            if result is None:
                outputs.append(seg)
            else:
                result[:, start:end] = seg

        chunkwise_pass(segments, project, finish, plan.decays, x.device.type)
        if result is not None:
            return result
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


class RetNetRelPos(nn.Module):
    """Holds the published buffers ``angle`` (key_dim,) and ``decay`` (heads,) = log(gamma)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.register_buffer("angle", rotary_angle(config.key_dim))
        self.register_buffer("decay", decay_log(config.retnet_retention_heads))


def choose_form(form: str | None, length: int, parallel_max_len: int) -> str:
    """The execution form: ``form`` when given, else parallel up to ``parallel_max_len`` tokens."""
    if form is None:
        return "parallel" if length <= parallel_max_len else "chunkwise"
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS} or None, got {form!r}")
    return form


def padding_mask_for(tokens: Tensor, padding_mask: Tensor | None) -> Tensor:
    """(B, L) bool, True at real positions: ``padding_mask`` if given, else tokens != PAD."""
    if padding_mask is None:
        return tokens != PAD
    if padding_mask.shape != tokens.shape:
        raise ValueError(f"padding_mask shape {tuple(padding_mask.shape)} != tokens shape {tuple(tokens.shape)}")
    return padding_mask.to(device=tokens.device, dtype=torch.bool)


def finish_output(x: Tensor, mask: Tensor, norm: nn.Module, head: nn.Module,
                  return_logits: bool) -> EncoderOutput:
    """Final norm and MLM head on the last layer's output x (B, L, d); zeros at PAD positions."""
    has_pad = not bool(mask.all())
    if has_pad:
        x = x.masked_fill(~mask[..., None], 0)
    hidden = norm(x)
    logits = head(hidden) if return_logits else None
    if has_pad:
        hidden = hidden.masked_fill(~mask[..., None], 0)
        if logits is not None:
            logits = logits.masked_fill(~mask[..., None], 0)
    return EncoderOutput(logits=logits, last_inner_state=x, hidden=hidden, padding_mask=mask)


class TokenEncoder(nn.Module):
    """What the RetNet and the Transformer baseline share: token embedding (PAD row zero),
    ``layers`` built by ``make_layer(config)``, final RMSNorm and the untied MLM head, and the
    ``forward(tokens, form=None, padding_mask=None, return_logits=True)`` entry point; a
    subclass supplies ``forward_embeddings``."""

    architecture = ""

    def __init__(self, config: EncoderConfig, make_layer):
        super().__init__()
        self.config = config
        d, vocab = config.retnet_embed_dim, config.vocab_size
        self.embed_tokens = nn.Embedding(vocab, d, padding_idx=PAD)
        self.output_projection = nn.Linear(d, vocab, bias=False)
        nn.init.normal_(self.output_projection.weight, mean=0, std=d ** -0.5)
        self.layers = nn.ModuleList(make_layer(config) for _ in range(config.retnet_layers))
        self.layer_norm = RMSNorm(d)
        self.dropout = RowDropout(config.dropout)

    def forward(self, tokens: Tensor, form: str | None = None, padding_mask: Tensor | None = None,
                return_logits: bool = True, output_hidden_states: bool = False) -> EncoderOutput:
        """tokens (B, L) int64 -> EncoderOutput (see the subclass docstring);
        ``output_hidden_states``: also every layer's output (``EncoderOutput.hidden_states``)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, length), got shape {tuple(tokens.shape)}")
        if output_hidden_states:
            return self._forward_collecting_states(tokens, form, padding_mask, return_logits)
        mask = padding_mask_for(tokens, padding_mask)
        bsz, length = tokens.shape
        rows = max(1, self.config.segment_len // max(length, 1))
        if torch.is_grad_enabled():
            return self.forward_embeddings(self.embed_tokens(tokens), mask, form, return_logits)
        with fused_weights_once():
            if self.training or rows >= bsz:
                return self.forward_embeddings(self.embed_tokens(tokens), mask, form, return_logits)
            # inference (eval, no autograd) on a large batch: groups of rows of about segment_len
            # tokens, each through every layer while its activations are in cache (rows are
            # independent: the same numbers)
            parts = [self.forward_embeddings(self.embed_tokens(tokens[i:i + rows]), mask[i:i + rows], form,
                                             return_logits) for i in range(0, bsz, rows)]
        return EncoderOutput(
            logits=torch.cat([p.logits for p in parts]) if return_logits else None,
            last_inner_state=torch.cat([p.last_inner_state for p in parts]),
            hidden=torch.cat([p.hidden for p in parts]), padding_mask=mask)

    def _forward_collecting_states(self, tokens: Tensor, form: str | None, padding_mask: Tensor | None,
                                   return_logits: bool) -> EncoderOutput:
        """``forward`` plus ``hidden_states``: forward hooks on the embedding and on every layer
        record their outputs, so that each architecture's layer loop stays as it is. Inference
        runs row groups through the model one after another: each group records n_layers + 1
        outputs, joined along the batch. Chunk-alignment positions are cut off, PAD zeroed."""
        recorded: list[Tensor] = []
        modules = [self.embed_tokens, *self.layers]
        handles = [m.register_forward_hook(lambda _m, _i, out: recorded.append(out)) for m in modules]
        try:
            out = self.forward(tokens, form, padding_mask, return_logits)
        finally:
            for handle in handles:
                handle.remove()
        length, per_group = tokens.shape[1], len(modules)
        groups = [recorded[i:i + per_group] for i in range(0, len(recorded), per_group)]
        keep = out.padding_mask[..., None]
        out.hidden_states = tuple(
            torch.cat([group[j][:, :length] for group in groups]).masked_fill(~keep, 0)
            for j in range(per_group))
        return out

    def num_parameters(self) -> int:
        """Number of parameters (buffers not counted), as in the paper."""
        return sum(p.numel() for p in self.parameters())


class RetNetEncoder(TokenEncoder):
    """The RNAret encoder (published model, padding-aware, parallel or chunkwise retention).

    ``encoder(tokens, form=None, padding_mask=None, return_logits=True)``:
    tokens LongTensor (B, L); PAD (id 0) is masked unless ``padding_mask`` (B, L) bool, True =
    real, is given (an all-True mask reproduces the published unmasked model); ``form`` is
    "parallel", "chunkwise" or None (parallel up to ``config.parallel_limit`` tokens).
    Returns ``EncoderOutput``.
    """

    architecture = "retnet"

    def __init__(self, config: EncoderConfig | None = None):
        config = config or EncoderConfig()
        super().__init__(config, RetNetLayer)
        self.retnet_rel_pos = RetNetRelPos(config)

    def forward_embeddings(self, embeddings: Tensor, padding_mask: Tensor, form: str | None = None,
                           return_logits: bool = True) -> EncoderOutput:
        """Run the layers on token embeddings (B, L, d) (e.g. a leaf tensor, for input
        gradients) with ``padding_mask`` (B, L) bool, True at real positions."""
        length = embeddings.shape[1]
        form = choose_form(form, length, self.config.parallel_limit)
        # the mask only costs work when something is padded
        mask_or_none = None if bool(padding_mask.all()) else padding_mask
        chunk = self.config.chunk_size
        tail = (-length) % chunk if form == "chunkwise" and length > chunk else 0
        if tail:
            # align to whole chunks with zero inputs: every layer maps zero to exactly zero
            # (no biases, RMSNorm(0) = 0), so these positions are never keys; they are only
            # excluded from the decay row sums (``zero_tail``) and cut off at the end
            embeddings = F.pad(embeddings, (0, 0, 0, tail))
            if mask_or_none is not None:
                mask_or_none = F.pad(mask_or_none, (0, tail), value=False)
        dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
        products = compute_dtype(embeddings.device.type, dtype)
        rel = self.retnet_rel_pos
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            # segments of about segment_len tokens over all rows (at least one chunk each)
            segment = max(chunk, self.config.segment_len // embeddings.shape[0])
            plan = make_plan(form, length + tail, rel.angle, rel.decay, mask_or_none, chunk, dtype,
                             zero_tail=tail, segment_len=segment, compute_dtype=products)
        x = self.dropout(embeddings)
        for layer in self.layers:
            x = layer(x, plan)
        if tail:
            x = x[:, :length]
        return finish_output(x, padding_mask, self.layer_norm, self.output_projection, return_logits)
