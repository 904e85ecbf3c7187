"""The encoder is the published model (reference vectors), padding-aware, in both forms."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rnaret.model import EncoderConfig, RetNetEncoder
from rnaret.model.encoder import PUBLISHED_FIELDS, choose_form
from rnaret.tokenizer import PAD

PAPER_PARAMETERS = {1: 11_810_688, 3: 11_856_768, 5: 12_594_048}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vectors(reference):
    return load_file(reference / "official_vectors" / "io_parallel.safetensors")


@pytest.fixture(scope="module")
def published_encoder(reference):
    folder = reference / "official_vectors"
    config = EncoderConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = RetNetEncoder(config)
    model.load_state_dict(load_file(folder / "weights.safetensors"), strict=True)
    return model.eval()


def _small(k, **overrides):
    fields = dict(retnet_embed_dim=32, retnet_value_embed_dim=48, retnet_ffn_embed_dim=40,
                  retnet_layers=2, dropout=0.0, activation_dropout=0.0, chunk_size=16, segment_len=32)
    fields.update(overrides)
    return EncoderConfig.paper(k, **fields)


# ------------------------------------------------------------------ the published model

@pytest.mark.parametrize("form,tol,chunk,segment", [
    ("parallel", 1e-5, 128, 1024), ("chunkwise", 5e-5, 128, 1024), ("chunkwise", 5e-5, 64, 1024),
    ("chunkwise", 5e-5, 16, 48)])  # 48: the chunkwise layers run in 5 segments of 3 chunks
def test_reproduces_published_outputs(published_encoder, vectors, form, tol, chunk, segment):
    published_encoder.config.chunk_size, published_encoder.config.segment_len = chunk, segment
    try:
        with torch.no_grad():
            out = published_encoder(vectors["tokens"], form=form)
    finally:
        published_encoder.config.chunk_size, published_encoder.config.segment_len = 128, 1024
    for row in (0, 2):  # the unpadded rows
        assert torch.allclose(out.logits[row], vectors["logits"][row], atol=tol, rtol=0)
        assert torch.allclose(out.last_inner_state[row], vectors["last_inner_state"][row], atol=tol, rtol=0)
    # row 1 is padded from 150: it must give what the published model gives unpadded
    assert (vectors["tokens"][1, 150:] == PAD).all() and (vectors["tokens"][1, :150] != PAD).all()
    assert torch.allclose(out.logits[1, :150], vectors["logits_row1_first150_unpadded"], atol=tol, rtol=0)
    assert (out.logits[1, 150:] == 0).all() and (out.last_inner_state[1, 150:] == 0).all()
    assert out.padding_mask.tolist() == (vectors["tokens"] != PAD).tolist()


def test_published_outputs_change_with_padding_ours_do_not(published_encoder, vectors):
    """An all-real mask is the published, unmasked model: it reproduces the padded row as
    published, which differs from the unpadded row; our default does not."""
    tokens = vectors["tokens"]
    with torch.no_grad():
        unmasked = published_encoder(tokens, form="parallel", padding_mask=torch.ones_like(tokens, dtype=torch.bool))
    assert torch.allclose(unmasked.logits, vectors["logits"], atol=1e-5, rtol=0)
    assert torch.allclose(unmasked.last_inner_state, vectors["last_inner_state"], atol=1e-5, rtol=0)
    assert (unmasked.logits[1, :150] - vectors["logits_row1_first150_unpadded"]).abs().max() > 0.1


def test_hidden_is_the_final_norm_of_last_inner_state(published_encoder, vectors):
    with torch.no_grad():
        out = published_encoder(vectors["tokens"][:1])
        assert torch.allclose(out.hidden, published_encoder.layer_norm(out.last_inner_state))
        assert torch.allclose(out.logits, published_encoder.output_projection(out.hidden))
        assert published_encoder(vectors["tokens"][:1], return_logits=False).logits is None


# ------------------------------------------------------------------ paper size, names

@pytest.mark.parametrize("k", [1, 3, 5])
def test_paper_size_parameter_counts_and_keys(reference, k):
    model = RetNetEncoder(EncoderConfig.paper(k))
    assert model.num_parameters() == PAPER_PARAMETERS[k]
    table = [line.split("\t") for line in (reference / "official_state_dict_k1_full_size.tsv").read_text().splitlines()]
    assert len(table) == 85
    state = model.state_dict()
    assert list(state) == [name for name, _, _ in table]
    vocab = 4**k + 6
    for name, shape, dtype in table:
        expected = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
        if name in ("embed_tokens.weight", "output_projection.weight"):
            expected = (vocab,) + expected[1:]
        assert tuple(state[name].shape) == expected, name
        assert str(state[name].dtype) == dtype, name


def test_config_from_published_json_and_round_trip(reference):
    data = json.loads((reference / "official_vectors" / "config.json").read_text())
    assert set(data) == set(PUBLISHED_FIELDS)
    config = EncoderConfig.from_dict(data)
    assert config.k == 3 and config.retnet_embed_dim == 64 and config.key_dim == 16 and config.value_dim == 32
    assert EncoderConfig.from_dict(json.loads(config.to_json())) == config
    paper = EncoderConfig()
    assert (paper.retnet_embed_dim, paper.retnet_value_embed_dim, paper.retnet_ffn_embed_dim,
            paper.retnet_layers, paper.retnet_retention_heads, paper.dropout, paper.activation_dropout,
            paper.k) == (384, 512, 512, 8, 4, 0.2, 0.2, 1)
    assert EncoderConfig.paper(5).vocab_size == 1030


def test_config_rejects_unknown_keys_and_inconsistent_k(reference):
    data = json.loads((reference / "official_vectors" / "config.json").read_text())
    with pytest.raises(ValueError, match=r"unknown encoder config keys \['retnet_heads'\]"):
        EncoderConfig.from_dict({**data, "retnet_heads": 4})
    with pytest.raises(ValueError, match="k=1 does not match vocab_size=70"):
        EncoderConfig.from_dict({**data, "k": 1})
    with pytest.raises(ValueError, match="4\\*\\*k \\+ 6"):
        EncoderConfig(vocab_size=71)
    with pytest.raises(ValueError, match="heads"):
        EncoderConfig(retnet_embed_dim=100, retnet_retention_heads=3)
    with pytest.raises(ValueError, match="architecture"):
        EncoderConfig(architecture="lstm")


def test_form_is_chosen_by_length_with_an_override():
    assert choose_form(None, 512, 512) == "parallel"
    assert choose_form(None, 513, 512) == "chunkwise"
    assert choose_form("parallel", 10_000, 512) == "parallel"
    assert choose_form("chunkwise", 3, 512) == "chunkwise"
    with pytest.raises(ValueError, match="form must be one of"):
        choose_form("fast", 3, 512)


# ------------------------------------------------------------------ the two forms agree

def _outputs_and_input_gradient(model, tokens, form):
    mask = tokens != PAD
    embeddings = model.embed_tokens(tokens).detach().requires_grad_(True)
    out = model.forward_embeddings(embeddings, mask, form=form)
    weights = torch.linspace(-1, 1, out.logits.shape[-1], dtype=out.logits.dtype)
    ((out.logits * weights).tanh().sum() + out.last_inner_state.pow(2).mean()).backward()
    return out.logits.detach(), out.last_inner_state.detach(), embeddings.grad


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 5e-5)])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("length", [48, 61])  # a multiple of the chunk size (16) and not
@pytest.mark.parametrize("padded", [False, True])
def test_parallel_and_chunkwise_agree_with_gradients(k, dtype, tol, length, padded):
    torch.manual_seed(k)
    model = RetNetEncoder(_small(k)).to(dtype).eval()
    tokens = torch.randint(5, model.config.vocab_size, (3, length))
    if padded:
        tokens[1, 29:] = PAD
        tokens[2, length - 5:] = PAD
    parallel = _outputs_and_input_gradient(model, tokens, "parallel")
    chunkwise = _outputs_and_input_gradient(model, tokens, "chunkwise")
    scale = max(t.abs().max().item() for t in parallel)
    for a, b in zip(parallel, chunkwise):
        assert a.dtype == dtype
        assert torch.allclose(a, b, atol=tol * max(scale, 1), rtol=tol)
    if padded:  # PAD inputs get no gradient from real outputs
        assert parallel[2][1, 29:].abs().max() == 0 and chunkwise[2][1, 29:].abs().max() == 0


@pytest.mark.parametrize("form", ["parallel", "chunkwise"])
def test_padded_batch_equals_each_row_alone(form):
    torch.manual_seed(0)
    model = RetNetEncoder(_small(3)).eval()
    lengths = [70, 23, 41, 5]
    rows = [torch.randint(5, model.config.vocab_size, (n,)) for n in lengths]
    batch = torch.zeros(len(rows), max(lengths), dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, :len(row)] = row
    with torch.no_grad():
        together = model(batch, form=form)
        for i, row in enumerate(rows):
            alone = model(row[None], form="parallel")
            n = len(row)
            assert torch.allclose(together.logits[i, :n], alone.logits[0], atol=2e-5, rtol=0)
            assert torch.allclose(together.last_inner_state[i, :n], alone.last_inner_state[0], atol=2e-5, rtol=0)
            assert (together.hidden[i, n:] == 0).all()


def test_segments_do_not_change_the_numbers():
    """The chunkwise layers' segment passes equal the whole-sequence retention block."""
    torch.manual_seed(4)
    model = RetNetEncoder(_small(3)).double().eval()
    tokens = torch.randint(5, model.config.vocab_size, (2, 150))
    tokens[1, 100:] = PAD
    with torch.no_grad():
        outputs = []
        for segment in (16, 48, 10_000):
            model.config.segment_len = segment
            outputs.append(model(tokens, form="chunkwise").last_inner_state)
        for other in outputs[1:]:
            assert torch.allclose(other, outputs[0], atol=1e-12, rtol=0)
        # the block itself, whole sequence, both forms
        from rnaret.model.retention import make_plan
        layer, x = model.layers[0], torch.randn(2, 160, 32, dtype=torch.float64)
        mask = torch.ones(2, 160, dtype=torch.bool)
        mask[1, 100:] = False
        rel = model.retnet_rel_pos
        blocks = [layer.retention(x, make_plan(form, 160, rel.angle, rel.decay, mask, 16, torch.float64))
                  for form in ("parallel", "chunkwise")]
        assert torch.allclose(blocks[0][mask], blocks[1][mask], atol=1e-12, rtol=0)


def test_explicit_padding_mask_overrides_the_pad_id():
    torch.manual_seed(1)
    model = RetNetEncoder(_small(1)).eval()
    tokens = torch.randint(5, 10, (1, 30))
    mask = torch.ones(1, 30, dtype=torch.bool)
    mask[0, 20:] = False
    with torch.no_grad():
        masked = model(tokens, padding_mask=mask)
        cut = model(tokens[:, :20])
    assert torch.allclose(masked.logits[:, :20], cut.logits, atol=1e-5)
    with pytest.raises(ValueError, match="padding_mask shape"):
        model(tokens, padding_mask=mask[:, :10])
    with pytest.raises(ValueError, match=r"tokens must be \(batch, length\)"):
        model(tokens[0])


def test_bf16_autocast_is_stable_and_padding_aware():
    torch.manual_seed(2)
    model = RetNetEncoder(_small(3, retnet_layers=3)).eval()
    tokens = torch.randint(5, model.config.vocab_size, (2, 700))
    tokens[1, 400:] = PAD
    with torch.no_grad():
        reference = model(tokens, form="parallel")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            chunkwise = model(tokens, form="chunkwise")
            parallel = model(tokens, form="parallel")
            alone = model(tokens[1:, :400], form="chunkwise")
    scale = reference.last_inner_state.abs().max()
    for out in (chunkwise, parallel):
        assert torch.isfinite(out.logits.float()).all()
        assert (out.last_inner_state.float() - reference.last_inner_state).abs().max() < 0.03 * scale
    assert (chunkwise.last_inner_state[1, :400].float() - alone.last_inner_state[0].float()).abs().max() < 0.03 * scale


def test_dropout_acts_in_training_only():
    torch.manual_seed(3)
    model = RetNetEncoder(_small(1, dropout=0.2, activation_dropout=0.2))
    tokens = torch.randint(5, 10, (2, 40))
    model.train()
    assert not torch.equal(model(tokens).logits, model(tokens).logits)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, model(tokens).logits)


def test_inference_sees_weights_changed_in_place_between_passes():
    """Inference builds each layer's fused projection weight once per forward pass; a weight
    changed in place between passes (a fused AdamW step does not bump tensor versions) must be
    seen by the next pass, in both forms and in bf16."""
    torch.manual_seed(5)
    model = RetNetEncoder(_small(3))
    tokens = torch.randint(5, model.config.vocab_size, (3, 80))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    for precision in ("fp32", "bf16"):
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        for form in ("parallel", "chunkwise"):
            model.eval()
            with torch.no_grad(), autocast:
                before = model(tokens, form=form).last_inner_state.clone()
            model.train()
            model(tokens, form=form).logits.float().pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            model.eval()
            with torch.no_grad(), autocast:
                after = model(tokens, form=form).last_inner_state
            fresh = RetNetEncoder(model.config).eval()
            fresh.load_state_dict(model.state_dict())
            with torch.no_grad(), autocast:
                expected = fresh(tokens, form=form).last_inner_state
            assert not torch.equal(after, before)
            assert torch.equal(after, expected)
