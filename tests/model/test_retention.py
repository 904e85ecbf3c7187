"""The retention itself: the chunkwise form equals the parallel (published) form, PAD is inert."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rnaret.model import naive
from rnaret.model import retention as ret


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference_buffers(reference):
    weights = load_file(reference / "official_vectors" / "weights.safetensors")
    return weights["retnet_rel_pos.angle"], weights["retnet_rel_pos.decay"]


def _qkv(batch, heads, length, dk, dv, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dk, generator=g, dtype=dtype)
    k = torch.randn(batch, heads, length, dk, generator=g, dtype=dtype) * dk ** -0.5
    v = torch.randn(batch, heads, length, dv, generator=g, dtype=dtype)
    return q, k, v


def _run(form, q, k, v, mask, chunk_size):
    plan = ret.make_plan(form, q.shape[2], ret.rotary_angle(q.shape[-1]), ret.decay_log(q.shape[1]),
                         mask, chunk_size, q.dtype)
    return ret.retention(q, k, v, plan)


def test_buffers_are_the_published_ones(reference_buffers):
    angle, decay = reference_buffers
    assert torch.equal(ret.rotary_angle(angle.numel()), angle)
    assert torch.equal(ret.decay_log(decay.numel()), decay)
    # gamma_h = 1 - 2**(-5 - h)
    assert torch.allclose(decay.exp(), torch.tensor([1 - 2 ** -5, 1 - 2 ** -6, 1 - 2 ** -7, 1 - 2 ** -8]))


def test_complex_rotation_is_the_published_theta_shift():
    x = torch.randn(2, 37, 3, 16, dtype=torch.float64)  # (B, L, H, dk)
    angle = ret.rotary_angle(16).double()
    sin, cos = ret.rotary_tables(37, angle)
    expected = naive.theta_shift(x.transpose(1, 2), sin, cos).transpose(1, 2)
    assert torch.allclose(ret.rotate(x, ret.rotary_phasors(37, angle)), expected, atol=1e-14, rtol=0)


@pytest.mark.parametrize("initial", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 100, 1100])
def test_blocked_scan_equals_a_step_by_step_loop(n, reverse, initial):
    u = torch.randn(2, 3, n, 5, dtype=torch.float64)
    log_a = torch.log(torch.tensor([0.9, 0.02, 0.999], dtype=torch.float64))
    a = log_a.exp().view(1, 3, 1)
    start = torch.randn(2, 3, 5, dtype=torch.float64) if initial else None
    expected = torch.zeros_like(u)
    state = start.clone() if initial else torch.zeros_like(u[:, :, 0])
    for c in (reversed(range(n)) if reverse else range(n)):
        expected[:, :, c] = state
        state = state * a + u[:, :, c]
    got = ret.exclusive_decay_scan(u, log_a, reverse=reverse, initial=start)
    assert torch.allclose(got, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("length", [1, 5, 64, 200, 777])
def test_decay_row_sums_are_exact(length):
    log_decay = ret.decay_log(4).double()
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, (2 * length) // 3:] = False
    got = ret.decay_row_sums(mask, length, log_decay, chunk_size=64)
    index = torch.arange(length, dtype=torch.float64)
    full = torch.exp((index[:, None] - index[None, :]).abs() * log_decay[:, None, None])
    expected = (full[None] * mask[:, None, None, :]).sum(-1, keepdim=True)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("length,chunk", [(64, 16), (200, 64), (777, 64), (50, 128), (1, 16)])
@pytest.mark.parametrize("padded", [False, True])
def test_chunkwise_equals_parallel(dtype, tol, length, chunk, padded):
    q, k, v = _qkv(3, 4, length, 8, 12, dtype)
    mask = None
    if padded:
        mask = torch.ones(3, length, dtype=torch.bool)
        mask[1, max(1, length // 2):] = False
        mask[2, max(1, length - 3):] = False
    parallel = _run("parallel", q, k, v, mask, chunk)
    chunkwise = _run("chunkwise", q, k, v, mask, chunk)
    assert torch.allclose(chunkwise, parallel, atol=tol, rtol=tol)


@pytest.mark.parametrize("form", ret.FORMS)
def test_padded_row_equals_unpadded_row(form):
    q, k, v = _qkv(2, 4, 300, 8, 12)
    q[1, :, 180:], k[1, :, 180:], v[1, :, 180:] = 99.0, -50.0, 1e3  # loud PAD: must not matter
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 180:] = False
    padded = _run(form, q, k, v, mask, 64)[1, :, :180]
    alone = _run("parallel", q[1:, :, :180], k[1:, :, :180], v[1:, :, :180], None, 64)[0]
    assert torch.allclose(padded, alone, atol=1e-12, rtol=1e-12)


def test_parallel_without_mask_is_the_published_formula():
    """No mask: D = gamma^|n-m| / sqrt(row sum), scores / clamp(|row sum|, 1), as published."""
    q, k, v = _qkv(1, 2, 40, 4, 6)
    log_decay = ret.decay_log(2).double()
    index = torch.arange(40, dtype=torch.float64)
    mask = torch.exp((index[:, None] - index[None, :]).abs() * log_decay[:, None, None])
    mask = mask / mask.sum(-1, keepdim=True).sqrt()
    scores = (q @ k.transpose(-1, -2)) * mask
    expected = (scores / scores.sum(-1, keepdim=True).abs().clamp(min=1)) @ v
    got = naive.parallel_retention(q, k, v, naive.decay_matrix(40, log_decay))
    assert torch.allclose(got, expected, atol=1e-13)


@pytest.mark.parametrize("padded", [False, True])
def test_gradients_agree(padded):
    length = 150
    q0, k0, v0 = _qkv(2, 4, length, 8, 12)
    mask = None
    if padded:
        mask = torch.ones(2, length, dtype=torch.bool)
        mask[0, 100:] = False
    grads = {}
    for form in ret.FORMS:
        q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
        out = _run(form, q, k, v, mask, 32)
        (out.sin() * torch.linspace(-1, 1, 12, dtype=torch.float64)).sum().backward()
        grads[form] = (q.grad, k.grad, v.grad)
    for a, b in zip(grads["parallel"], grads["chunkwise"]):
        assert torch.allclose(a, b, atol=1e-11, rtol=1e-10)
    if padded:  # PAD keys and values receive no gradient from anything real
        assert grads["chunkwise"][1][0, :, 100:].abs().max() == 0


def test_chunkwise_never_builds_length_squared_matrices():
    """50,000 positions x 4 heads: the parallel form would need 40 GB per (L, L) float matrix
    set; the chunkwise form runs in a few MB."""
    q, k, v = _qkv(1, 4, 50_000, 8, 8, dtype=torch.float32)
    out = _run("chunkwise", q, k, v, None, 128)
    assert out.shape == (1, 4, 50_000, 8) and torch.isfinite(out).all()
    # far-apart windows still equal the parallel form computed on an excerpt's exact sums
    part = _run("parallel", q[:, :, :300], k[:, :, :300], v[:, :, :300], None, 128)
    tail_mask = torch.zeros(1, 50_000, dtype=torch.bool)
    tail_mask[:, :300] = True
    masked = _run("chunkwise", q, k, v, tail_mask, 128)[:, :, :300]
    assert torch.allclose(masked, part, atol=2e-5, rtol=2e-5)


def test_bad_form_is_refused():
    with pytest.raises(ValueError, match="form must be one of"):
        ret.make_plan("recurrent", 10, ret.rotary_angle(8), ret.decay_log(4), None, 16, torch.float32)


@pytest.mark.parametrize("n_chunks,per_segment", [(7, 3), (9, 3), (5, 8), (40, 6)])
def test_segment_states_equal_whole_sequence_states(n_chunks, per_segment):
    """Chunk states assembled segment by segment (the encoder's two-pass layers) equal the
    whole-sequence scan, a short last segment included."""
    g = torch.Generator().manual_seed(n_chunks)
    u_fwd = torch.randn(2, 4, n_chunks, 3 * 5 + 3, generator=g, dtype=torch.float64)
    u_bwd = torch.randn(2, 4, n_chunks, 3 * 5 + 3, generator=g, dtype=torch.float64)
    decays = ret.chunk_decays(16, ret.decay_log(4).double())
    # the whole sequence's chunk states in one scan each way
    fwd = ret.exclusive_decay_scan(u_fwd, decays.log_chunk)
    bwd = ret.exclusive_decay_scan(u_bwd, decays.log_chunk, reverse=True)
    bounds = list(range(0, n_chunks, per_segment))
    totals = [ret.segment_totals(u_fwd[:, :, b:b + per_segment], u_bwd[:, :, b:b + per_segment], decays)
              for b in bounds]
    carry_fwd, carry_bwd = ret.segment_carries(torch.stack([t[0] for t in totals], 2),
                                               torch.stack([t[1] for t in totals], 2), per_segment, decays)
    for i, b in enumerate(bounds):
        seg = slice(b, b + per_segment)
        f, r = ret.segment_states(u_fwd[:, :, seg], u_bwd[:, :, seg], carry_fwd[:, :, i], carry_bwd[:, :, i], decays)
        assert torch.allclose(f, fwd[:, :, seg], atol=1e-12, rtol=1e-12)
        assert torch.allclose(r, bwd[:, :, seg], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("segment", [16, 48, 64, 256])
def test_chunkwise_pass_in_segments_equals_the_parallel_form(segment):
    """The one chunkwise composition, driven segment by segment as the encoder's layers drive
    it (a short last segment included), gives the parallel form's sums."""
    q, k, v = _qkv(2, 4, 208, 8, 12)  # 13 chunks of 16
    log_decay = ret.decay_log(4).double()
    decays = ret.chunk_decays(16, log_decay)
    parts = {}
    segments = [(s, min(s + segment, 208)) for s in range(0, 208, segment)]
    ret.chunkwise_pass(segments, lambda s, e: (q[:, :, s:e].contiguous(), k[:, :, s:e].contiguous(),
                                               v[:, :, s:e].contiguous(), s),
                       lambda s, e, num, row, context: parts.setdefault(context, (num, row)), decays, "cpu")
    assert sorted(parts) == [s for s, _ in segments]
    num = torch.cat([parts[s][0] for s, _ in segments], dim=2)
    row = torch.cat([parts[s][1] for s, _ in segments], dim=2)
    index = torch.arange(208, dtype=torch.float64)
    scores = (q @ k.transpose(-1, -2)) * torch.exp((index[:, None] - index[None, :]).abs() * log_decay[:, None, None])
    assert torch.allclose(num, scores @ v, atol=1e-12, rtol=1e-12)
    assert torch.allclose(row, scores.sum(-1, keepdim=True), atol=1e-12, rtol=1e-12)
