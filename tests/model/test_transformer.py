"""The Transformer baseline: same interface, padding-aware, checkpoints round-trip."""
from __future__ import annotations

import pytest
import torch

from rnaret.checkpoint import load_encoder, save_encoder
from rnaret.io.fasta import read_fasta
from rnaret.model import EncoderConfig, RetNetEncoder, build_encoder
from rnaret.model.transformer import TransformerEncoder
from rnaret.tokenizer import PAD, encode


pytestmark = pytest.mark.usefixtures("one_thread")


def _config(k=3, **overrides):
    fields = dict(retnet_embed_dim=32, retnet_value_embed_dim=48, retnet_ffn_embed_dim=40,
                  retnet_layers=2, dropout=0.0, activation_dropout=0.0, architecture="transformer")
    fields.update(overrides)
    return EncoderConfig.paper(k, **fields)


@pytest.fixture(scope="module")
def real_tokens(resources):
    """Token ids (k = 3) of real RNAcentral sequences of different lengths."""
    rows = []
    for record in read_fasta(resources / "rnacentral" / "rnacentral_sample.fa.gz"):
        if 20 <= len(record.sequence) <= 400:
            rows.append(torch.from_numpy(encode(record.sequence, 3)))
        if len(rows) == 5:
            break
    return rows


def test_paper_size_shares_the_retnet_shape():
    config = EncoderConfig.paper(1, architecture="transformer")
    model = build_encoder(config)
    assert isinstance(model, TransformerEncoder)
    retnet = RetNetEncoder(EncoderConfig.paper(1))
    d, dv = 384, 512
    assert model.num_parameters() == retnet.num_parameters() - 8 * d * dv == 10_237_824
    assert model.embed_tokens.weight.shape == retnet.embed_tokens.weight.shape
    assert [n for n in model.state_dict() if n.startswith("layers.0.ffn")] == \
           [n for n in retnet.state_dict() if n.startswith("layers.0.ffn")]
    with pytest.raises(ValueError, match="architecture='transformer'"):
        TransformerEncoder(EncoderConfig.paper(1))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_padded_batch_equals_each_row_alone(real_tokens, dtype, tol):
    torch.manual_seed(0)
    model = TransformerEncoder(_config()).to(dtype).eval()
    longest = max(len(t) for t in real_tokens)
    batch = torch.zeros(len(real_tokens), longest, dtype=torch.long)
    for i, row in enumerate(real_tokens):
        batch[i, :len(row)] = row
    assert (batch == PAD).any()
    with torch.no_grad():
        together = model(batch)
        for i, row in enumerate(real_tokens):
            alone = model(row[None])
            n = len(row)
            assert torch.allclose(together.logits[i, :n], alone.logits[0], atol=tol, rtol=0)
            assert torch.allclose(together.last_inner_state[i, :n], alone.last_inner_state[0], atol=tol, rtol=0)
            assert (together.logits[i, n:] == 0).all() and (together.hidden[i, n:] == 0).all()
    # every interface argument of the RetNet works, ``form`` included
    for form in (None, "parallel", "chunkwise"):
        out = model(batch[:1], form=form, return_logits=False)
        assert out.logits is None and out.last_inner_state.shape == (1, longest, 32)
    with pytest.raises(ValueError, match="form must be one of"):
        model(batch, form="recurrent")


def test_positions_matter_and_are_relative(real_tokens):
    torch.manual_seed(1)
    model = TransformerEncoder(_config()).eval()
    row = real_tokens[0][None]
    with torch.no_grad():
        out = model(row).last_inner_state
        shuffled = model(row.flip(1)).last_inner_state.flip(1)
    assert (out - shuffled).abs().max() > 1e-3  # not a bag of tokens


def test_save_and_load_round_trip(tmp_path, real_tokens):
    torch.manual_seed(2)
    model = TransformerEncoder(_config(k=3)).eval()
    save_encoder(model, tmp_path / "transformer-k3")
    loaded = load_encoder(tmp_path / "transformer-k3")
    assert isinstance(loaded, TransformerEncoder) and not loaded.training
    assert loaded.config == model.config and loaded.config.architecture == "transformer"
    tokens = real_tokens[1][None]
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, model(tokens).logits)
    # a bare state dict (.pth) is recognised as a Transformer from its key names
    torch.save(model.state_dict(), tmp_path / "transformer.pth")
    from_pth = load_encoder(tmp_path / "transformer.pth")
    assert isinstance(from_pth, TransformerEncoder)
    with torch.no_grad():
        assert torch.equal(from_pth(tokens).logits, model(tokens).logits)


def test_it_learns_masked_tokens(real_tokens):
    """A few optimizer steps on one real sequence lower the MLM loss: gradients flow."""
    torch.manual_seed(3)
    model = TransformerEncoder(_config(dropout=0.1, activation_dropout=0.1)).train()
    tokens = real_tokens[2][None]
    masked = tokens.clone()
    positions = torch.arange(2, tokens.shape[1], 7)
    masked[0, positions] = 4  # MASK
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        logits = model(masked).logits[0, positions]
        loss = torch.nn.functional.cross_entropy(logits, tokens[0, positions])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
