"""Bidirectional multi-scale retention of the published RNAret encoder, in two exact forms.

Per head h with decay gamma_h = 1 - 2**(-5 - h), queries q_n and (scaled) keys k_m after the
rotary "theta shift", values v_m and a padding mask mu_m (1 real, 0 PAD), the published
retention is

    D[n, m]  = gamma**|n - m| * mu_m / sqrt(s_n),   s_n = sum_m gamma**|n - m| * mu_m
    S[n, m]  = (q_n . k_m) * D[n, m]
    out_n    = sum_m S[n, m] v_m / clamp(|sum_m S[n, m]|, min=1)     (normaliser detached)

(the published code has mu = 1 everywhere, so PAD enters s_n and acts as key/value; with our
mask a padded row gives exactly what the same row gives unpadded).

* the ``parallel`` form is the readable O(L^2) reference, ``rnaret.model.naive``, which
  builds the (L, L) matrices.
* the ``chunkwise`` form gives the same numbers in O(L) time and memory. The numerator
  sum_m gamma**|n-m| (q_n . k_m) v_m is split into chunks of C positions: inside a chunk an
  exact (C, C) decay-masked product (the diagonal counted once); across chunks a forward and a
  backward scan of per-chunk (d_k, d_v) states. The score row sums sum_m gamma**|n-m| q_n . k_m
  come from the same pass: inside a chunk the row sums of the (C, C) block, across chunks q_n
  times scanned sums of the decayed keys (d_k more numbers scanned with each state, so that v
  keeps its aligned width), and s_n from the same scans with q = 1, k = mu.
  The scans are loop-free (``exclusive_decay_scan``: blocked triangular matmuls).

``chunkwise_pass`` is the one composition of the chunk-level pieces (``intra_chunks``,
``segment_totals``, ``segment_carries``, ``segment_states``, ``add_inter_chunks_``): over
segments of whole chunks in two passes, so that long inputs are processed in cache-sized
pieces. The encoder's layers drive it segment by segment (their projections and the rest of the
block run inside its passes); ``decayed_sums`` runs it on a whole sequence as one segment.

Precision. q, k and v come in the *compute dtype* (bfloat16 under bf16 autocast, else float32,
or float64 for float64 models): every product of them (q k^T, the (C, C) blocks times v, the
chunk summaries k^T v, queries times states) runs in that dtype, accumulated in float32 by the
matmul kernels. Everything that is a decay, a sum over many terms or a normaliser is formed and
accumulated in the *state dtype* (float32, float64 for float64 models) whatever the compute
dtype: the decay masks and powers, the score row sums and s_n, the per-chunk summaries and the
scan states, the accumulated output before normalisation. The functions run with autocast
disabled; the dtypes are explicit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rnaret.model.naive import decay_matrix, parallel_terms

FORMS = ("parallel", "chunkwise")


def decay_log(num_heads: int) -> Tensor:
    """log(gamma_h) for each head, gamma_h = 1 - 2**(-5 - h): float32 (num_heads,), as published."""
    return torch.log(1 - 2 ** (-5 - torch.arange(num_heads, dtype=torch.float)))


def rotary_angle(key_dim: int) -> Tensor:
    """Rotary angles (key_dim,): 1 / 10000**linspace(0, 1, key_dim/2), each used for a pair of dims."""
    angle = 1.0 / (10000 ** torch.linspace(0, 1, key_dim // 2))
    return angle.unsqueeze(-1).repeat(1, 2).flatten()


def rotary_tables(length: int, angle: Tensor) -> tuple[Tensor, Tensor]:
    """(sin, cos), each (length, key_dim) in ``angle``'s dtype and device, for positions 0..length-1."""
    index = torch.arange(length, device=angle.device).to(angle)
    phase = index[:, None] * angle[None, :]
    return torch.sin(phase), torch.cos(phase)


def rotary_phasors(length: int, angle: Tensor) -> Tensor:
    """exp(i * position * angle) per pair of dims: complex (length, key_dim / 2)."""
    sin, cos = rotary_tables(length, angle[::2])
    return torch.complex(cos, sin)


def rotate(x: Tensor, phasors: Tensor) -> Tensor:
    """The published ``theta_shift`` (``rnaret.model.naive``) as one complex product: x (B, L, H, dk) (last dim contiguous),
    ``phasors`` (L, dk/2) or (B, L, dk/2) complex -> (B, L, H, dk) in the phasors' real dtype
    (a bf16 x is rotated in float32). (x1 + i x2)(cos + i sin) is exactly
    (x1 cos - x2 sin, x2 cos + x1 sin), the published pair rotation."""
    real = phasors.real.dtype
    xc = torch.view_as_complex(x.to(real).unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * phasors.unsqueeze(-2)).flatten(-2)


def rotate_heads(x: Tensor, phasors: Tensor, heads: int, dtype: torch.dtype) -> Tensor:
    """Rotate x (B, S, H * dk) per head in the phasors' precision ((S, dk/2) or (B, S, dk/2)
    complex) and return it head-major, contiguous, in ``dtype``: (B, H, S, dk). The rotation,
    the layout change and the cast to the compute dtype are one pass over the output."""
    bsz, length, _ = x.shape
    rotated = rotate(x.view(bsz, length, heads, -1), phasors)  # (B, S, H, dk)
    return contiguous_as(rotated.transpose(1, 2), dtype)


def contiguous_as(x: Tensor, dtype: torch.dtype) -> Tensor:
    """x in ``dtype``, contiguous: one copy (cast and layout together), none if already so."""
    if x.dtype == dtype:
        return x.contiguous()
    return x.to(dtype, memory_format=torch.contiguous_format)


# ---------------------------------------------------------------- chunkwise form (O(L))

SCAN_BLOCK = 32  # chunks per block of the blocked scan


def _decay_powers(n: int, log_a: Tensor) -> Tensor:
    """a**0 .. a**(n-1) per head: (H, n); powers below float's normal range are set to 0 (they
    are far below rounding and denormals would slow the CPU down)."""
    powers = torch.exp(torch.arange(n, device=log_a.device).to(log_a)[None, :] * log_a[:, None])
    return powers.masked_fill(powers < torch.finfo(powers.dtype).tiny, 0)


def exclusive_decay_scan(u: Tensor, log_a: Tensor, reverse: bool = False, initial: Tensor | None = None) -> Tensor:
    """State entering each step of a decaying sum along dim 2 of u (B, H, N, D), decay a (H,):

    forward  out[c] = sum_{c' < c} a**(c - 1 - c') u[c']   (+ a**c initial);
    reverse  out[c] = sum_{c' > c} a**(c' - c - 1) u[c']   (+ a**(N - 1 - c) initial);

    ``initial`` (B, H, D): the state entering step 0 (forward) or the last step (reverse) from
    outside, or None. Loop-free: blocks of ``SCAN_BLOCK`` steps are scanned by one (G, G)
    triangular matmul, the block totals by the same function at decay a**G (recursively, with
    ``initial`` passed on), then combined.
    """
    n = u.shape[2]
    g = min(n, SCAN_BLOCK)
    powers = _decay_powers(g + 1, log_a)  # (H, G + 1)
    idx = torch.arange(g, device=u.device)
    lag = idx[:, None] - idx[None, :] - 1  # i - 1 - j
    if reverse:
        lag = lag.T
    tri = torch.where(lag >= 0, powers[:, lag.clamp(min=0)], powers.new_zeros(()))  # (H, G, G)
    m = math.ceil(n / g)
    pad = m * g - n
    if pad:  # zero steps change nothing; in reverse they go first, so the edge state still enters at step n-1
        u = F.pad(u, (0, 0, pad, 0) if reverse else (0, 0, 0, pad))
    blocks = u.reshape(u.shape[0], u.shape[1], m, g, u.shape[-1])
    out = tri[None, :, None] @ blocks  # within each block
    carry = initial[:, :, None] if initial is not None and m == 1 else None  # (B, H, 1, D)
    if m > 1:
        weights = powers[:, :g] if reverse else powers[:, :g].flip(-1)  # step -> block edge
        totals = (weights[None, :, None, None, :] @ blocks).squeeze(-2)  # (B, H, M, D)
        carry = exclusive_decay_scan(totals, log_a * g, reverse, initial)  # entering each block
    if carry is not None:
        # carry reaches step i of its block after i (forward) or G - 1 - i (reverse) more steps
        reach = powers[:, :g].flip(-1) if reverse else powers[:, :g]
        out = torch.addcmul(out, reach[None, :, None, :, None], carry[:, :, :, None, :])
    out = out.reshape(u.shape[0], u.shape[1], m * g, u.shape[-1])
    return out[:, :, pad:] if reverse else out[:, :, :n]


@dataclass
class ChunkDecays:
    """The decay factors of chunks of C positions, per head (``chunk_decays``), formed in the
    state dtype; ``intra``, ``keys`` and ``queries`` are then held in the compute dtype (they
    multiply the compute-dtype products), ``row_queries`` and ``log_chunk`` in the state dtype:

    intra (H, C, C) gamma**|i - j|; keys (H, C, 2, 1) gamma**(C-1-j), gamma**j (key j -> its
    chunk's end, its chunk's start); queries (H, C, 2, 1) gamma**(i+1), gamma**(C-i) (state
    before the chunk, state after it -> query i); row_queries (H, C, 2) the same, state dtype;
    log_chunk (H,) C log gamma.
    """
    size: int
    intra: Tensor
    keys: Tensor
    queries: Tensor
    row_queries: Tensor
    log_chunk: Tensor


def chunk_decays(chunk_size: int, log_decay: Tensor, compute_dtype: torch.dtype | None = None) -> ChunkDecays:
    """``ChunkDecays`` for chunks of ``chunk_size``: formed in ``log_decay``'s dtype and device,
    the product factors cast to ``compute_dtype`` (default: the same)."""
    dtype = compute_dtype or log_decay.dtype
    ld = log_decay[:, None, None]  # (H, 1, 1)
    pos = torch.arange(chunk_size, device=log_decay.device).to(log_decay.dtype)
    pairs = lambda a, b: torch.exp(torch.stack((a, b), -1)[None] * ld)  # noqa: E731  (H, C, 2)
    queries = pairs(pos + 1, chunk_size - pos)
    return ChunkDecays(chunk_size, torch.exp((pos[:, None] - pos[None, :]).abs() * ld).to(dtype),
                       pairs(chunk_size - 1 - pos, pos)[..., None].to(dtype), queries[..., None].to(dtype),
                       queries, chunk_size * log_decay)


def intra_chunks(q: Tensor, k: Tensor, v: Tensor, decays: ChunkDecays
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The exact within-chunk part and the per-chunk summaries of the decayed sums.

    q, k (B, H, N, C, dk), v (B, H, N, C, dv): whole chunks, compute dtype. Returns
    num (B, H, N, C, dv), compute dtype, = sum over m in the same chunk of gamma**|n - m|
    (q_n . k_m) v_m (the diagonal once); and in the state dtype: row (B, H, N, C, 1) = the same
    sum without v_m (the score row sums; no gradient: they only feed the detached normaliser)
    and the summaries u_fwd (weights gamma**(C-1-j), key j -> the chunk's end) and u_bwd
    (gamma**j, key j -> its start), each (B, H, N, dk * dv + dk): the flattened (dk, dv)
    matrix sum_j w_j k_j v_j^T followed by the decayed key sum sum_j w_j k_j (which carries the
    row sums across chunks; ``state_parts`` splits them).
    """
    state = decays.log_chunk.dtype
    dk = k.shape[-1]
    scores = (q @ k.transpose(-1, -2)).mul_(decays.intra[None, :, None])  # (B, H, N, C, C)
    row = scores.detach().sum(dim=-1, keepdim=True, dtype=state)
    num = scores @ v
    del scores  # long inputs: free each temporary as soon as it is used
    # both directions' key weights in one (2 dk, C) @ (C, dv) product per chunk
    weighted = (k.unsqueeze(-2) * decays.keys[None, :, None]).flatten(-2)  # (B, H, N, C, 2 dk)
    key_sums = weighted.detach().sum(dim=-2, dtype=state).unflatten(-1, (2, dk))  # (B, H, N, 2, dk)
    summaries = (weighted.transpose(-1, -2) @ v).unflatten(-2, (2, dk)).flatten(-2)  # (B, H, N, 2, dk dv)
    del weighted
    both = torch.cat((summaries, key_sums), dim=-1)  # one pass, cast to the state dtype on the way
    if both.dtype != state:  # (a float64 model's products are already float64)
        both = both.to(state)
    return num, row, both[:, :, :, 0], both[:, :, :, 1]


def state_parts(state: Tensor, dk: int) -> tuple[Tensor, Tensor]:
    """A summary or state (..., dk * dv + dk) -> its (dk, dv) matrix part (..., dk, dv) and its
    key-sum part (..., dk), both views."""
    dv = (state.shape[-1] - dk) // dk
    return state[..., :dk * dv].unflatten(-1, (dk, dv)), state[..., dk * dv:]


def add_inter_chunks_(num: Tensor, row: Tensor, q: Tensor, fwd: Tensor, bwd: Tensor,
                      decays: ChunkDecays) -> None:
    """num += the other chunks' part, row += its row sums, in place:
    [q * gamma**(i+1) | q * gamma**(C-i)] @ [fwd; bwd], one product with 2 dk inner terms.

    num (B, H, N, C, dv) contiguous and q (B, H, N, C, dk) in the compute dtype (the product
    accumulates into num in float32 inside the matmul and is rounded once); row
    (B, H, N, C, 1) contiguous and fwd/bwd (B, H, N, dk * dv + dk) (``segment_states``) in the state dtype; the row sums are formed in the state dtype."""
    dk = q.shape[-1]
    (f_matrix, f_keys), (b_matrix, b_keys) = state_parts(fwd, dk), state_parts(bwd, dk)
    with torch.no_grad():  # q . (decayed key sums), weighted by each query's decay, state dtype
        reach = q.to(fwd.dtype) @ torch.stack((f_keys, b_keys), dim=-1)  # (B, H, N, C, 2)
        row.add_((reach * decays.row_queries[None, :, None]).sum(dim=-1, keepdim=True))
    # both directions' states, cast to the compute dtype on the way into one (2 dk, dv) matrix
    states = f_matrix.new_empty((*f_matrix.shape[:-2], 2 * dk, f_matrix.shape[-1]), dtype=num.dtype)
    states[..., :dk, :].copy_(f_matrix)
    states[..., dk:, :].copy_(b_matrix)
    scaled = (q.unsqueeze(-2) * decays.queries[None, :, None]).flatten(-2)  # (B, H, N, C, 2 dk)
    num.flatten(0, 2).baddbmm_(scaled.flatten(0, 2), states.flatten(0, 2))  # a view: adds land in num


def segment_totals(u_fwd: Tensor, u_bwd: Tensor, decays: ChunkDecays) -> tuple[Tensor, Tensor]:
    """Totals of one segment of n chunks' summaries (B, H, n, D), decayed to the segment's
    right edge (fwd: a**(n-1-j) u_fwd[j]) and left edge (bwd: a**j u_bwd[j]), a = gamma**C.
    Returns two (B, H, D)."""
    n = u_fwd.shape[2]
    powers = _decay_powers(n, decays.log_chunk)[None, :, None, :]  # (1, H, 1, n)
    return (powers.flip(-1) @ u_fwd).squeeze(-2), (powers @ u_bwd).squeeze(-2)


def segment_carries(t_fwd: Tensor, t_bwd: Tensor, chunks_per_segment: int, decays: ChunkDecays
                    ) -> tuple[Tensor, Tensor]:
    """States entering each segment from the left and from the right, (B, H, S, D), from the
    totals (B, H, S, D) of S segments of ``chunks_per_segment`` chunks (the last may be
    shorter: it is only ever a source)."""
    log_a = decays.log_chunk * chunks_per_segment
    return exclusive_decay_scan(t_fwd, log_a), exclusive_decay_scan(t_bwd, log_a, reverse=True)


def segment_states(u_fwd: Tensor, u_bwd: Tensor, carry_fwd: Tensor, carry_bwd: Tensor,
                   decays: ChunkDecays) -> tuple[Tensor, Tensor]:
    """States entering each chunk of one segment (B, H, n, D): the exclusive scans of the
    segment's own summaries starting from the carries from the other segments (B, H, D).
    Together they equal ``chunk_states`` over the whole sequence."""
    return (exclusive_decay_scan(u_fwd, decays.log_chunk, initial=carry_fwd),
            exclusive_decay_scan(u_bwd, decays.log_chunk, reverse=True, initial=carry_bwd))


def chunkwise_pass(segments: list[tuple[int, int]], project, finish, decays: ChunkDecays,
                   device_type: str) -> None:
    """The chunkwise form, composed once: the encoder's layers and ``decayed_sums`` both run it.

    ``segments``: (start, end) position ranges of whole chunks of ``decays.size`` covering the
    sequence in order; ``project(start, end)`` -> (q, k, v, context) for those positions,
    q, k (B, H, S, dk), v (B, H, S, dv), contiguous, compute dtype (k zero at PAD);
    ``finish(start, end, num, row, context)`` receives num (B, H, S, dv), compute dtype, and
    row (B, H, S, 1), state dtype: sum_m gamma**|n - m| (q_n . k_m) v_m and the same without
    v_m over the whole sequence, exactly (``context`` is passed through untouched).

    Two passes, so that long inputs are processed in cache-sized pieces: pass 1 projects each
    segment and forms its within-chunk part, its chunk summaries and their segment totals; the
    totals are scanned into the states entering each segment; pass 2 builds each segment's
    chunk states, adds the other chunks' part and hands the segment on. The retention runs with
    autocast off (explicit dtypes); ``project`` and ``finish`` are called under the caller's.
    """
    c = decays.size
    no_autocast = lambda: torch.autocast(device_type=device_type, enabled=False)  # noqa: E731
    pending, totals = [], []
    for start, end in segments:  # pass 1
        q, k, v, context = project(start, end)
        with no_autocast():
            q, k, v = (t.unflatten(2, (-1, c)) for t in (q, k, v))  # (B, H, n, C, d) views
            num, row, u_fwd, u_bwd = intra_chunks(q, k, v, decays)
            if len(segments) > 1:
                totals.append(segment_totals(u_fwd, u_bwd, decays))
        pending.append((q, num, row, u_fwd, u_bwd, context))
        del q, k, v, num, row, u_fwd, u_bwd, context  # long inputs: hold each only in ``pending``
    carries = None
    if totals:  # the other segments' states entering each segment
        with no_autocast():
            carries = segment_carries(torch.stack([t[0] for t in totals], 2),
                                      torch.stack([t[1] for t in totals], 2),
                                      (segments[0][1] - segments[0][0]) // c, decays)
        del totals
    for index, (start, end) in enumerate(segments):  # pass 2
        q, num, row, u_fwd, u_bwd, context = pending[index]
        pending[index] = None
        with no_autocast():
            if carries is not None or q.shape[2] > 1:  # a single chunk has no other chunks
                carry_fwd, carry_bwd = ((carries[0][:, :, index], carries[1][:, :, index])
                                        if carries is not None else (None, None))
                fwd, bwd = segment_states(u_fwd, u_bwd, carry_fwd, carry_bwd, decays)
                add_inter_chunks_(num, row, q, fwd, bwd, decays)
                del fwd, bwd
            del q, u_fwd, u_bwd
        finish(start, end, num.flatten(2, 3), row.flatten(2, 3), context)
        del num, row, context


def decayed_sums(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, chunk_size: int) -> tuple[Tensor, Tensor]:
    """num_n = sum_m gamma**|n - m| (q_n . k_m) v_m and row_n = sum_m gamma**|n - m| q_n . k_m
    for every n, exactly, in O(L) time and memory.

    q, k (B, H, L, dk), v (B, H, L, dv) in the compute dtype, ``log_decay`` (H,) in the state
    dtype. Returns num (B, H, L, dv), compute dtype, and row (B, H, L, 1), state dtype.
    ``chunkwise_pass`` over the whole sequence as one segment.
    """
    length = q.shape[2]
    c = min(chunk_size, length)
    padded = -(-length // c) * c
    if padded > length:  # zero queries/keys/values add nothing and are cut off at the end
        q, k, v = (F.pad(t, (0, 0, 0, padded - length)) for t in (q, k, v))
    q, k, v = (t.contiguous() for t in (q, k, v))
    result = []
    chunkwise_pass([(0, padded)], lambda start, end: (q, k, v, None),
                   lambda start, end, num, row, context: result.extend((num, row)),
                   chunk_decays(c, log_decay, q.dtype), q.device.type)
    num, row = result
    return (num[:, :, :length], row[:, :, :length]) if padded > length else (num, row)


def decay_row_sums(padding_mask: Tensor | None, length: int, log_decay: Tensor,
                   chunk_size: int) -> Tensor:
    """s_n = sum over real m of gamma**|n - m|: (B or 1, H, L, 1), by the chunked scans (q=1,
    k=mask), in ``log_decay``'s dtype. Without a mask every position is real."""
    dtype, device = log_decay.dtype, log_decay.device
    heads = log_decay.shape[0]
    if padding_mask is None:
        mu = torch.ones(1, heads, length, 1, dtype=dtype, device=device)
    else:
        mu = padding_mask.to(dtype)[:, None, :, None].expand(-1, heads, -1, -1)
    ones = torch.ones_like(mu)
    return decayed_sums(ones, mu, ones, log_decay, chunk_size)[1]


def chunkwise_terms(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, row_scale: Tensor,
                    padding_mask: Tensor | None, chunk_size: int) -> tuple[Tensor, Tensor]:
    """Retention, chunkwise bidirectional form, as (numerator, row scale): out = num * scale
    equals ``parallel_terms``' to rounding. q, k (B, H, L, dk) rotated and scaled, v
    (B, H, L, dv), compute dtype; ``log_decay`` (H,); ``row_scale`` = 1 / sqrt(s_n)
    (B or 1, H, L, 1) from ``decay_row_sums``; ``padding_mask`` (B, L) bool or None."""
    if padding_mask is not None:
        k = k * padding_mask[:, None, :, None].to(k.dtype)  # PAD never acts as a key
    num, row = decayed_sums(q, k, v, log_decay, chunk_size)
    return num, row_normaliser(row, row_scale)


def row_normaliser(row: Tensor, row_scale: Tensor) -> Tensor:
    """The published per-row factor of the chunkwise form, state dtype (..., L, 1): the D row
    normalisation 1/sqrt(s_n) over clamp(|score row sum|, 1), from the decayed score sums
    ``row`` and ``row_scale`` = 1/sqrt(s_n). No gradient: it only rescales (as published)."""
    return row_scale / (row * row_scale).abs().clamp(min=1)


# ---------------------------------------------------------------- per-forward plan

@dataclass
class RetentionPlan:
    """What every layer of one forward pass shares: form, rotary tables, decay normalisation.

    phasors: (L, dk/2) complex rotary factors (state dtype); compute_dtype: the dtype of the
    products (bf16 under bf16 autocast, else the state dtype of ``log_decay``); decay: (H, L, L)
    or (B, H, L, L) (parallel form) or None; row_scale: (B or 1, H, L, 1), decays
    (``ChunkDecays``) and segment (positions per pass, whole chunks) for the chunkwise form;
    padding_mask (B, L) bool or None.
    """
    form: str
    phasors: Tensor
    log_decay: Tensor
    padding_mask: Tensor | None
    chunk_size: int
    compute_dtype: torch.dtype
    decay: Tensor | None = None
    row_scale: Tensor | None = None
    decays: ChunkDecays | None = None
    segment: int = 0


def make_plan(form: str, length: int, angle: Tensor, log_decay: Tensor,
              padding_mask: Tensor | None, chunk_size: int, dtype: torch.dtype,
              zero_tail: int = 0, segment_len: int = 4096,
              compute_dtype: torch.dtype | None = None) -> RetentionPlan:
    """Precompute, once per forward, what the retention of every layer needs.

    ``angle`` (dk,) and ``log_decay`` (H,) are the encoder's buffers; ``dtype`` is the state
    dtype (float32, or float64 for float64 models), ``compute_dtype`` that of the products
    (default: ``dtype``; bfloat16 under bf16 autocast); ``padding_mask`` (B, L) bool or None
    (None: every position real, the fast path). ``zero_tail``: the last positions are
    chunk-alignment padding whose keys and values are exactly zero: they only need to be left
    out of the decay row sums (chunkwise form). ``segment_len``: positions the chunkwise
    layers process per pass (rounded down to whole chunks, at least one).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS} or None, got {form!r}")
    compute_dtype = compute_dtype or dtype
    angle, log_decay = angle.to(dtype), log_decay.to(dtype)
    plan = RetentionPlan(form, rotary_phasors(length, angle), log_decay, padding_mask, chunk_size,
                         compute_dtype)
    if form == "parallel":
        plan.decay = decay_matrix(length, log_decay, padding_mask).to(compute_dtype)
    else:
        real = padding_mask
        if zero_tail:
            real = torch.ones(1, length, dtype=torch.bool, device=angle.device) if real is None else real.clone()
            real[:, length - zero_tail:] = False
        plan.row_scale = decay_row_sums(real, length, log_decay, chunk_size).clamp(min=1).rsqrt()
        plan.decays = chunk_decays(min(chunk_size, length), log_decay, compute_dtype)
        plan.segment = max(1, segment_len // plan.decays.size) * plan.decays.size
    return plan


def retention_terms(q: Tensor, k: Tensor, v: Tensor, plan: RetentionPlan) -> tuple[Tensor, Tensor]:
    """The plan's form as (numerator, row scale): q, k (B, H, L, dk) rotated, v (B, H, L, dv),
    compute dtype -> num (B, H, L, dv), compute dtype, and scale (B, H, L, 1), state dtype;
    the retention output is num * scale (the encoder folds the scale into its group norm)."""
    if plan.form == "parallel":
        return parallel_terms(q, k, v, plan.decay)
    return chunkwise_terms(q, k, v, plan.log_decay, plan.row_scale, plan.padding_mask, plan.chunk_size)


def retention(q: Tensor, k: Tensor, v: Tensor, plan: RetentionPlan) -> Tensor:
    """The retention output of the plan's form: (B, H, L, dv) in the state dtype."""
    num, scale = retention_terms(q, k, v, plan)
    return num.to(scale.dtype) * scale
