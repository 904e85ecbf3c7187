"""Task heads: published key layout, strict loading, the coding loss and window score."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnaret.checkpoint import save_encoder
from rnaret.heads.coding import CodingHead, position_loss, window_scores
from rnaret.heads.interaction import InteractionHead
from rnaret.model import EncoderConfig, build_encoder
from rnaret.tasks import get_task
from rnaret.checkpoint.published import load_published_finetuned
from rnaret.tokenizer import encode

D = 16


def tiny_encoder(k: int = 5):
    torch.manual_seed(0)
    return build_encoder(EncoderConfig.paper(k, retnet_embed_dim=D, retnet_value_embed_dim=16,
                                             retnet_ffn_embed_dim=32, retnet_layers=2,
                                             retnet_retention_heads=2, dropout=0.0,
                                             activation_dropout=0.0)).eval()


def published_interaction_classifier(d: int) -> dict[str, torch.Tensor]:
    """The keys of rri.py's nn.Sequential(Linear(d, d), Tanh(), Linear(d, 2)), random values."""
    g = torch.Generator().manual_seed(1)
    return {"0.weight": torch.randn(d, d, generator=g), "0.bias": torch.randn(d, generator=g),
            "2.weight": torch.randn(2, d, generator=g), "2.bias": torch.randn(2, generator=g)}


def published_coding_classifier(d: int, blocks: int = 16, hidden: int = 128) -> dict[str, torch.Tensor]:
    """The keys of lnc.py's ResNet1D_classifier: linear_in, conv_out, and the 16 unused ResNet
    blocks (Conv1d kernel 1, 7, 1 with biases), random values."""
    g = torch.Generator().manual_seed(2)
    state = {"linear_in.weight": torch.randn(hidden, d, generator=g),
             "linear_in.bias": torch.randn(hidden, generator=g),
             "conv_out.weight": torch.randn(1, hidden, 3, generator=g),
             "conv_out.bias": torch.randn(1, generator=g)}
    for b in range(blocks):
        for index, kernel in ((0, 1), (2, 7), (4, 1)):
            state[f"resnet.blocks.{b}.conv_net.{index}.weight"] = torch.randn(hidden, hidden, kernel, generator=g)
            state[f"resnet.blocks.{b}.conv_net.{index}.bias"] = torch.randn(hidden, generator=g)
    return state


def write_published_finetuned(path, encoder, classifier: dict[str, torch.Tensor]) -> None:
    """A released-style fine-tuned file: ret.* (the encoder) + classifier.* (the head)."""
    state = {f"ret.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in classifier.items()})
    torch.save(state, path)


def test_interaction_head_loads_published_layout_and_computes_cls_mlp(tmp_path):
    encoder = tiny_encoder()
    classifier = published_interaction_classifier(D)
    write_published_finetuned(tmp_path / "MirTar_5mer.pth", encoder, classifier)
    model = load_published_finetuned(tmp_path / "MirTar_5mer.pth", get_task("interaction"))
    assert torch.equal(model.head.dense.weight, classifier["0.weight"])
    assert torch.equal(model.head.out_proj.bias, classifier["2.bias"])
    for name, value in encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    tokens = torch.tensor([[3, *encode("ACGTACGTAC", 5), 3, *encode("GGGAAACCCUU", 5)]])
    with torch.no_grad():
        states = encoder(tokens, return_logits=False).last_inner_state
        expected = torch.tanh(states[:, 0] @ classifier["0.weight"].T + classifier["0.bias"]) \
            @ classifier["2.weight"].T + classifier["2.bias"]
        got = model(tokens, tokens != 0)
    torch.testing.assert_close(got, expected)


def test_coding_head_loads_published_layout_dropping_unused_resnet(tmp_path):
    encoder = tiny_encoder()
    classifier = published_coding_classifier(D)
    write_published_finetuned(tmp_path / "lnc_M_5mer.pth", encoder, classifier)
    model = load_published_finetuned(tmp_path / "lnc_M_5mer.pth", get_task("coding"))
    assert torch.equal(model.head.linear_in.weight, classifier["linear_in.weight"])
    assert torch.equal(model.head.conv_out.weight, classifier["conv_out.weight"])
    assert set(model.head.state_dict()) == {"linear_in.weight", "linear_in.bias", "conv_out.weight", "conv_out.bias"}
    # the published forward: linear_in, transpose, conv_out ('same' padding), squeeze
    tokens = torch.from_numpy(encode("ACGTTGCAAGGCTTACGATCGATCGGA", 5))[None]
    with torch.no_grad():
        x = encoder(tokens, return_logits=False).last_inner_state @ classifier["linear_in.weight"].T \
            + classifier["linear_in.bias"]
        expected = torch.nn.functional.conv1d(x.transpose(1, 2), classifier["conv_out.weight"],
                                              classifier["conv_out.bias"], padding=1).squeeze(1)
        got = model(tokens, tokens != 0)
    torch.testing.assert_close(got, expected)


def test_published_head_loading_is_strict_and_names_keys():
    head = InteractionHead(D)
    state = published_interaction_classifier(D)
    with pytest.raises(ValueError, match=r"missing keys \['2.bias'\]"):
        head.load_published_state_dict({k: v for k, v in state.items() if k != "2.bias"})
    with pytest.raises(ValueError, match="unexpected keys.*dense.weight"):
        head.load_published_state_dict({**state, "dense.weight": state["0.weight"]})
    with pytest.raises(ValueError, match=r"0.weight has shape \(8, 8\)"):
        head.load_published_state_dict({**state, "0.weight": torch.zeros(8, 8)})
    coding = CodingHead(D)
    with pytest.raises(ValueError, match="missing keys.*conv_out.bias"):
        coding.load_published_state_dict({k: v for k, v in published_coding_classifier(D, blocks=1).items()
                                          if k != "conv_out.bias"})


def test_published_file_with_wrong_head_is_an_input_error(tmp_path):
    from rnaret.io.errors import InputError

    encoder = tiny_encoder()
    write_published_finetuned(tmp_path / "MirTar_5mer.pth", encoder, published_interaction_classifier(D))
    with pytest.raises(InputError, match="MirTar_5mer.pth.*coding head"):
        load_published_finetuned(tmp_path / "MirTar_5mer.pth", get_task("coding"))
    save_encoder(encoder, tmp_path / "ours")
    torch.save(encoder.state_dict(), tmp_path / "pretrain_5mer.pth")
    with pytest.raises(InputError, match="no classifier"):
        load_published_finetuned(tmp_path / "pretrain_5mer.pth", get_task("coding"))


def test_window_score_hand_computed():
    # probabilities 0.9 on positions 10..49 (40 positions) of 60, 0.1 elsewhere
    probs = torch.full((1, 60), 0.1)
    probs[0, 10:50] = 0.9
    logits = torch.logit(probs)
    real = torch.ones(1, 60, dtype=torch.bool)
    torch.testing.assert_close(window_scores(logits, real), torch.tensor([0.9]))
    # a 20-position stretch: the best window holds 20 x 0.9 + 10 x 0.1
    probs = torch.full((1, 60), 0.1)
    probs[0, 5:25] = 0.9
    torch.testing.assert_close(window_scores(torch.logit(probs), real), torch.tensor([(20 * 0.9 + 10 * 0.1) / 30]))
    # padding counts as 0 and never raises the score; a short sequence is averaged over 30
    short = torch.logit(torch.full((1, 12), 0.8))
    torch.testing.assert_close(window_scores(short, torch.ones(1, 12, dtype=torch.bool)), torch.tensor([12 * 0.8 / 30]))
    padded = torch.cat([torch.logit(probs), torch.full((1, 40), 10.0)], dim=1)
    mask = torch.cat([real, torch.zeros(1, 40, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(window_scores(padded, mask), torch.tensor([(20 * 0.9 + 10 * 0.1) / 30]))


def test_position_loss_is_mean_bce_over_real_positions():
    logits = torch.tensor([[2.0, -1.0, 0.5, 9.0], [0.0, 1.0, -3.0, -9.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    real = torch.tensor([[True, True, True, False], [True, True, True, False]])

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = np.mean([bce(2.0, 1), bce(-1.0, 0), bce(0.5, 1), bce(0.0, 0), bce(1.0, 1), bce(-3.0, 0)])
    assert float(position_loss(logits, labels, real)) == pytest.approx(expected, rel=1e-6)
    weighted = np.sum([bce(2.0, 1) * 3, bce(-1.0, 0), bce(0.5, 1) * 3, bce(0.0, 0), bce(1.0, 1) * 3,
                       bce(-3.0, 0)]) / 6
    assert float(position_loss(logits, labels, real, positive_weight=3.0)) == pytest.approx(weighted, rel=1e-6)


def test_coding_head_output_does_not_depend_on_padding():
    torch.manual_seed(0)
    head = CodingHead(D).eval()
    states = torch.randn(1, 20, D)
    alone = head(states, torch.ones(1, 20, dtype=torch.bool))
    padded_states = torch.cat([states, torch.randn(1, 7, D)], dim=1)
    mask = torch.cat([torch.ones(1, 20, dtype=torch.bool), torch.zeros(1, 7, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(head(padded_states, mask)[:, :20], alone)
