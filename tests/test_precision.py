"""The bf16 path: products in bf16, decays/sums/normalisers/states in float32, errors bounded.

Under bf16 autocast the encoders' projections and retention products run in bfloat16 while
decays, row sums, normalisers and scan states are formed and accumulated in float32
(``rnaret.model.retention``). These tests bound the bf16 error against float32 on real
sequences (outputs and gradients, both retention forms, padded and not), on a downstream
metric, check that padding still changes nothing, look at the dtypes inside, and check that the
float32 path still reproduces the published reference vectors.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rnaret import precision as prec
from rnaret.io.fasta import read_fasta
from rnaret.model import EncoderConfig, build_encoder
from rnaret.model import encoder as encoder_module
from rnaret.model import retention as retention_module
from rnaret.tokenizer import PAD, encode

pytestmark = pytest.mark.usefixtures("one_thread")

BF16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
# bf16 keeps 8 bits of mantissa (relative rounding 2**-9 per value); through a few layers of
# products and norms the relative error of whole tensors stays near 1%: bounded at 3% here
REL_OUT, REL_GRAD = 0.03, 0.05


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture(scope="module")
def sequences(resources):
    """Real RNAcentral records of mixed lengths (40..700 nt) from the bundled sample."""
    picked = []
    for record in read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz"):
        if 40 <= len(record.sequence) <= 700:
            picked.append(record.sequence)
        if len(picked) == 4:
            break
    return picked


def _model(k=3, architecture="retnet", seed=0, **overrides):
    fields = dict(retnet_embed_dim=64, retnet_value_embed_dim=128, retnet_ffn_embed_dim=128,
                  retnet_layers=2, dropout=0.0, activation_dropout=0.0, chunk_size=32, segment_len=256,
                  architecture=architecture)
    fields.update(overrides)
    torch.manual_seed(seed)
    return build_encoder(EncoderConfig.paper(k, **fields)).eval()


def _batch(sequences, k, padded):
    rows = [torch.from_numpy(encode(s, k)) for s in sequences]
    if not padded:
        n = min(len(r) for r in rows)
        rows = [r[:n] for r in rows]
    tokens = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = r
    return tokens


def _run(model, tokens, form, bf16):
    """last_inner_state, logits and the gradients of a fixed loss w.r.t. the input embeddings
    and every parameter."""
    model.zero_grad(set_to_none=True)
    mask = tokens != PAD
    embeddings = model.embed_tokens(tokens).detach().requires_grad_(True)
    with BF16() if bf16 else torch.autocast("cpu", enabled=False):
        out = model.forward_embeddings(embeddings, mask, form=form)
    weights = torch.linspace(-1, 1, out.logits.shape[-1])
    loss = (out.logits.float() * weights).tanh().sum() + out.last_inner_state.float().pow(2).mean()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return out.last_inner_state.detach().float(), out.logits.detach().float(), embeddings.grad, grads


@pytest.mark.parametrize("form", ["parallel", "chunkwise"])
@pytest.mark.parametrize("padded", [False, True])
def test_bf16_outputs_and_gradients_are_close_to_fp32(sequences, form, padded):
    model = _model()
    tokens = _batch(sequences, 3, padded)
    if padded:
        assert (tokens == PAD).any()
    exact = _run(model, tokens, form, bf16=False)
    fast = _run(model, tokens, form, bf16=True)
    state, logits, input_grad, param_grad = fast
    assert all(torch.isfinite(t).all() for t in fast)
    mask = tokens != PAD
    assert _rel(state[mask], exact[0][mask]) < REL_OUT
    assert _rel(logits[mask], exact[1][mask]) < REL_OUT
    assert _rel(input_grad[mask], exact[2][mask]) < REL_GRAD
    assert _rel(param_grad, exact[3]) < REL_GRAD
    if padded:  # PAD stays inert in bf16: zero outputs, no gradient into PAD inputs
        assert (state[~mask] == 0).all() and (input_grad[~mask] == 0).all()


@pytest.mark.parametrize("architecture,form", [("retnet", "parallel"), ("retnet", "chunkwise"),
                                               ("transformer", None)])
def test_padding_changes_nothing_in_bf16(sequences, architecture, form):
    """A padded row gives what it gives alone, in bf16 too (to bf16 rounding: the batch changes
    how the matmul kernels block their sums, not which positions enter them)."""
    model = _model(architecture=architecture)
    tokens = _batch(sequences, 3, padded=True)
    with torch.no_grad(), BF16():
        together = model(tokens, form=form).last_inner_state.float()
        for i, sequence in enumerate(sequences):
            alone = model(torch.from_numpy(encode(sequence, 3))[None], form=form).last_inner_state[0].float()
            n = len(alone)
            assert _rel(together[i, :n], alone) < 0.01
            assert (together[i, n:] == 0).all()
    # a PAD token's value does not matter: garbage after the real tokens, masked, changes nothing
    noisy = tokens.clone()
    noisy[tokens == PAD] = 7
    with torch.no_grad(), BF16():
        masked = model(noisy, form=form, padding_mask=tokens != PAD).last_inner_state.float()
    assert torch.equal(masked, together)


def test_inside_bf16_the_products_are_bf16_and_states_normalisers_float32(sequences, monkeypatch):
    """Look at the dtypes inside a chunkwise and a parallel forward under bf16 autocast."""
    seen: dict[str, set] = {}

    def note(name, *tensors):
        seen.setdefault(name, set()).update(t.dtype for t in tensors)

    def wrap(name, check, module=encoder_module):
        original = getattr(module, name)

        def wrapped(*args, **kwargs):
            result = original(*args, **kwargs)
            check(args, result)
            return result
        monkeypatch.setattr(module, name, wrapped)

    def intra(a, r):
        if a[2].shape[-1] == 1:  # values of width 1: the decay row sums s_n (q = 1, k = mask), all float32
            note("row sums", r[1])
            return
        note("q k v", *a[:3]), note("intra num", r[0]), note("row sums", r[1])
        note("chunk summaries", r[2], r[3]), note("decays", a[3].log_chunk, a[3].row_queries)

    wrap("intra_chunks", intra, retention_module)
    wrap("segment_states", lambda a, r: note("scan states", *r, *(c for c in a[2:4] if c is not None)),
         retention_module)
    wrap("segment_totals", lambda a, r: note("scan states", *r), retention_module)
    wrap("row_normaliser", lambda a, r: note("normalisers", r, a[1]))
    wrap("retention_terms", lambda a, r: (note("q k v", *a[:3]), note("parallel num", r[0]),
                                          note("normalisers", r[1]), note("decay mask", a[3].decay)))
    original_gate = encoder_module.MultiScaleRetention.gate_out

    def gate_out(self, num, scale, silu_g):
        note("gate scale", scale)
        return original_gate(self, num, scale, silu_g)
    monkeypatch.setattr(encoder_module.MultiScaleRetention, "gate_out", gate_out)

    model = _model(segment_len=64)  # chunkwise in several segments
    tokens = _batch(sequences, 3, padded=True)
    with torch.no_grad(), BF16():
        model(tokens, form="chunkwise")
        model(tokens, form="parallel")
    float32 = {torch.float32}
    for name in ("row sums", "chunk summaries", "decays", "scan states", "normalisers", "gate scale"):
        assert seen[name] == float32, (name, seen[name])
    for name in ("q k v", "intra num", "parallel num"):
        assert seen[name] == {torch.bfloat16}, (name, seen[name])
    assert seen["decay mask"] == {torch.bfloat16}  # formed in float32, multiplies bf16 scores


def test_fp32_path_reproduces_the_published_reference_vectors(reference):
    """``--precision fp32`` (rnaret.precision.autocast) is the exact path: the published
    outputs to 1e-5, in both forms."""
    folder = reference / "official_vectors"
    config = EncoderConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = build_encoder(config)
    model.load_state_dict(load_file(folder / "weights.safetensors"), strict=True)
    model.eval()
    vectors = load_file(folder / "io_parallel.safetensors")
    assert prec.configure_precision("cpu", "fp32") == "fp32"
    for form in ("parallel", "chunkwise"):
        with torch.no_grad(), prec.autocast("cpu", "fp32"):
            out = model(vectors["tokens"], form=form)
        assert out.logits.dtype == torch.float32
        for row in (0, 2):
            assert torch.allclose(out.logits[row], vectors["logits"][row], atol=1e-5, rtol=0)
        assert torch.allclose(out.logits[1, :150], vectors["logits_row1_first150_unpadded"], atol=1e-5, rtol=0)


def test_a_downstream_metric_moves_little_in_bf16(resources):
    """Coding regions of the bundled GENCODE mouse transcripts: a small encoder (k = 3, width
    64) and a per-position linear head are trained for 80 steps on 256-nt crops (float32,
    seeded), then evaluated on 60 whole test transcripts (up to 3,000 nt: chunkwise) in float32
    and in bf16. The per-position ROC AUC moves by at most 0.005 and the transcript-level AUC
    (best 30-nt window, as the coding task scores) by at most 0.01."""
    from sklearn.metrics import roc_auc_score

    from rnaret.io.transcripts import read_transcripts

    def examples(name, n):
        rows = [t for t in read_transcripts(resources / "mrna_lncrna" / name) if len(t.sequence) <= 3000]
        rows = [t for t in rows if t.label == 1][: n // 2] + [t for t in rows if t.label == 0][: n // 2]
        out = []
        for t in rows:
            labels = np.zeros(len(t.sequence), np.float32)
            if t.cds:
                labels[t.cds[0] - 1:t.cds[1]] = 1
            out.append((torch.from_numpy(encode(t.sequence, 3)), torch.from_numpy(labels), t.label))
        return out

    train, test = examples("mouse_train.fa.gz", 400), examples("mouse_test.fa.gz", 60)
    model = _model(k=3, chunk_size=64, segment_len=4096).train()
    head = torch.nn.Linear(64, 1)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=3e-3)
    rng, crop = np.random.default_rng(0), 256
    for _ in range(80):
        tokens = torch.full((16, crop), PAD, dtype=torch.long)
        target = torch.zeros(16, crop)
        for row, i in enumerate(rng.choice(len(train), 16, replace=False)):
            t, y, _ = train[i]
            start = int(rng.integers(0, max(1, len(t) - crop + 1)))
            n = min(crop, len(t))
            tokens[row, :n], target[row, :n] = t[start:start + n], y[start:start + n]
        mask = tokens != PAD
        logit = head(model(tokens, return_logits=False).last_inner_state).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit[mask], target[mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    labels = np.concatenate([y.numpy() for _, y, _ in test])
    coding = np.array([label for _, _, label in test])
    metrics = {}
    for precision in ("fp32", "bf16"):
        tracks = []
        with torch.no_grad(), prec.autocast("cpu", precision):
            for t, _, _ in test:
                state = model(t[None], return_logits=False).last_inner_state
                tracks.append(torch.sigmoid(head(state).float()).squeeze().numpy())
        window = np.array([np.convolve(p, np.ones(30) / 30, "valid").max() for p in tracks])
        metrics[precision] = (roc_auc_score(labels, np.concatenate(tracks)), roc_auc_score(coding, window))
    assert metrics["fp32"][0] > 0.65  # the model learned something: the comparison means something
    assert abs(metrics["bf16"][0] - metrics["fp32"][0]) <= 0.005
    assert abs(metrics["bf16"][1] - metrics["fp32"][1]) <= 0.01


def test_the_switch_resolves_and_refuses():
    assert prec.resolve_precision("fp32", "cpu") == "fp32"
    assert prec.resolve_precision("bf16", "cpu") == "bf16"
    auto = "bf16" if prec.cpu_has_bf16_matmul() else "fp32"
    assert prec.resolve_precision("auto", "cpu") == auto == prec.resolve_precision(None, "cpu")
    with pytest.raises(ValueError, match="fp32"):
        prec.resolve_precision("fp8", "cpu")
    # fp16 (the published pretraining): float16 autocast with a scaler on CUDA, fp32 elsewhere
    assert prec.resolve_precision("fp16", "cpu") == "fp32" and "fp16" not in prec.PRECISIONS
    with prec.autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with prec.autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    # the CPU's float32 matmuls stay exact: configure_precision changes nothing there
    before = torch.get_float32_matmul_precision()
    prec.configure_precision("cpu", "fp32")
    assert torch.get_float32_matmul_precision() == before
