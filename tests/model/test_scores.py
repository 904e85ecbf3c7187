"""Every layer's output and the retention scores of a layer and head, against the published code
(tests/fixtures/published_retention) and padding-invariant."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rnaret.model import EncoderConfig, RetNetEncoder, TransformerEncoder
from rnaret.model.scores import retention_scores
from rnaret.tokenizer import PAD

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def published(root):
    return load_file(root / "tests" / "fixtures" / "published_retention" / "published_retention.safetensors")


@pytest.fixture(scope="module")
def reference_model(reference):
    folder = reference / "official_vectors"
    model = RetNetEncoder(EncoderConfig.from_dict(json.loads((folder / "config.json").read_text())))
    model.load_state_dict(load_file(folder / "weights.safetensors"), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def tokens(reference):
    tokens = load_file(reference / "official_vectors" / "io_parallel.safetensors")["tokens"]
    assert (tokens[1, 150:] == PAD).all() and (tokens[1, :150] != PAD).all() and (tokens[0] != PAD).all()
    return tokens


@pytest.mark.parametrize("layer,head", [(0, 1), (1, 3)])
def test_retention_scores_are_the_published_ones_and_padding_aware(reference_model, tokens, published, layer, head):
    scores = retention_scores(reference_model, tokens, layer, head)
    assert scores.shape == (3, 200, 200) and scores.dtype == torch.float32
    expected = published[f"rttn_layer{layer}_head{head}_row0"]
    assert expected.abs().max() > 1e-2  # not a trivial comparison
    assert torch.allclose(scores[0], expected, atol=1e-6, rtol=0)
    # the padded row gives the published scores of the row alone; its PAD rows and columns are zero
    assert torch.allclose(scores[1, :150, :150], published[f"rttn_layer{layer}_head{head}_row1_first150"],
                          atol=1e-6, rtol=0)
    assert (scores[1, 150:] == 0).all() and (scores[1, :, 150:] == 0).all()
    # other heads differ (the head is really chosen)
    other = retention_scores(reference_model, tokens[:1], layer, (head + 1) % 4)
    assert not torch.allclose(other[0], scores[0], atol=1e-4)


def test_retention_scores_leave_the_model_in_its_mode_and_reject_bad_arguments(reference_model, tokens):
    reference_model.train()
    try:
        retention_scores(reference_model, tokens[:1, :20], 0, 0)
        assert reference_model.training
    finally:
        reference_model.eval()
    with pytest.raises(ValueError, match="layer 2 out of range"):
        retention_scores(reference_model, tokens, 2, 0)
    with pytest.raises(ValueError, match="head 4 out of range"):
        retention_scores(reference_model, tokens, 0, 4)
    with pytest.raises(ValueError, match="RetNet encoder"):
        retention_scores(TransformerEncoder(EncoderConfig(vocab_size=10, retnet_embed_dim=16,
                                                          retnet_value_embed_dim=16, retnet_ffn_embed_dim=16,
                                                          retnet_layers=1, architecture="transformer")),
                         tokens, 0, 0)


@pytest.mark.parametrize("form", ["parallel", "chunkwise"])
def test_hidden_states_are_the_published_inner_states_and_padding_invariant(reference_model, tokens, published, form):
    reference_model.config.chunk_size, reference_model.config.segment_len = 16, 48
    try:
        with torch.no_grad():
            out = reference_model(tokens, form=form, output_hidden_states=True)
            alone = reference_model(tokens[1:2, :150], form=form, output_hidden_states=True)
            plain = reference_model(tokens, form=form)
    finally:
        reference_model.config.chunk_size, reference_model.config.segment_len = 128, 4096
    assert len(out.hidden_states) == reference_model.config.retnet_layers + 1
    for i, state in enumerate(out.hidden_states):
        assert state.shape == (3, 200, 64)
        assert torch.allclose(state[0], published["inner_states_row0"][i], atol=5e-5, rtol=0)
        assert torch.allclose(state[1, :150], published["inner_states_row1_first150"][i], atol=5e-5, rtol=0)
        assert torch.allclose(state[1, :150], alone.hidden_states[i][0], atol=1e-5, rtol=0)
        assert (state[1, 150:] == 0).all()
    assert torch.equal(out.hidden_states[-1], out.last_inner_state)
    assert plain.hidden_states is None and torch.equal(plain.logits, out.logits)


def test_hidden_states_of_row_groups_and_with_gradients():
    torch.manual_seed(0)
    config = EncoderConfig.paper(1, retnet_embed_dim=32, retnet_value_embed_dim=32, retnet_ffn_embed_dim=32,
                                 retnet_layers=3, dropout=0.0, activation_dropout=0.0, segment_len=40)
    model = RetNetEncoder(config).eval()
    tokens = torch.randint(6, 10, (7, 20))
    tokens[3, 12:] = PAD
    with torch.no_grad():  # 7 rows of 20 tokens run as groups of 2 rows
        grouped = model(tokens, output_hidden_states=True)
        rows = [model(tokens[i:i + 1], output_hidden_states=True) for i in range(7)]
    assert len(grouped.hidden_states) == 4
    for j in range(4):
        joined = torch.cat([r.hidden_states[j] for r in rows])
        assert torch.allclose(grouped.hidden_states[j], joined, atol=1e-5, rtol=0)
    out = model(tokens, output_hidden_states=True)  # autograd on: one pass, states in the graph
    out.hidden_states[1].sum().backward()
    assert model.embed_tokens.weight.grad is not None and model.embed_tokens.weight.grad.abs().sum() > 0
    # no hooks are left behind
    assert all(not m._forward_hooks for m in [model.embed_tokens, *model.layers])


def test_transformer_baseline_has_hidden_states_too():
    config = EncoderConfig(vocab_size=10, retnet_embed_dim=16, retnet_value_embed_dim=16, retnet_ffn_embed_dim=16,
                           retnet_layers=2, dropout=0.0, activation_dropout=0.0, architecture="transformer")
    model = TransformerEncoder(config).eval()
    tokens = torch.randint(6, 10, (2, 9))
    tokens[1, 5:] = PAD
    with torch.no_grad():
        out = model(tokens, output_hidden_states=True)
        alone = model(tokens[1:2, :5], output_hidden_states=True)
    assert len(out.hidden_states) == 3
    for state, single in zip(out.hidden_states, alone.hidden_states):
        assert torch.allclose(state[1, :5], single[0], atol=1e-5, rtol=0) and (state[1, 5:] == 0).all()
