"""The one-hot control: per-position one-hot states, and for the interaction task's CLS head the
k-mer composition of the miRNA and of the site at position 0 (checked against a count made
here from the tokens), so that the control's row in the tables reflects the sequences."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from rnaret.checkpoint.onehot import load_onehot, save_onehot
from rnaret.model.onehot import OneHotConfig, OneHotModel
from rnaret.tasks import get_task
from rnaret.tasks.base import pad_tokens
from rnaret.tasks.interaction import pair_tokens
from rnaret.io.mirna_table import read_pair_table
from rnaret.tasks.run import initial_model
from rnaret.tokenizer import CLS, encode, vocab_size

pytestmark = pytest.mark.usefixtures("one_thread")
V5 = vocab_size(5)


@pytest.fixture(scope="module")
def pairs(resources):
    """Real pairs: the first rows of the bundled DeepMirTar independent test."""
    return read_pair_table(resources / "mirna_target" / "mirtar_deepmirtar_indtest.tsv")[:6]


def composition(tokens: np.ndarray) -> np.ndarray:
    """Mean one-hot vector of ``tokens`` (V5,), from a Counter."""
    out = np.zeros(V5)
    for token, count in Counter(tokens.tolist()).items():
        out[token] = count / len(tokens)
    return out


def test_cls_state_is_the_composition_of_each_part(pairs):
    model = OneHotModel(OneHotConfig(k=5, cls_segments=2))
    tokens, mask = pad_tokens([pair_tokens(p.mirna, p.site, 5) for p in pairs])
    states = model(tokens, padding_mask=mask).last_inner_state
    assert states.shape == (len(pairs), tokens.shape[1], 2 * V5) and model.output_dim == 2 * V5
    for row, pair in enumerate(pairs):
        mirna, site = encode(pair.mirna, 5), encode(pair.site, 5)  # the two parts' own tokens
        np.testing.assert_allclose(states[row, 0, :V5].numpy(), composition(mirna), atol=1e-6)
        np.testing.assert_allclose(states[row, 0, V5:].numpy(), composition(site), atol=1e-6)
        # every other real position: its own token, in its part's block; zero at padding
        n = len(mirna) + len(site) + 2
        body = states[row, 1:n]
        assert torch.equal(body.sum(dim=1), torch.ones(n - 1))
        sep = 1 + len(mirna)
        assert int(body[sep - 1].argmax()) == V5 + CLS  # the SEP token leads the site's block
        assert int(body[0].argmax()) == int(mirna[0]) and int(body[sep].argmax()) == V5 + int(site[0])
        assert float(states[row, n:].abs().sum()) == 0.0


def test_cls_states_differ_between_pairs_and_ignore_padding(pairs):
    pooled = OneHotModel(OneHotConfig(k=5, cls_segments=2))
    plain = OneHotModel(OneHotConfig(k=5))
    tokens, mask = pad_tokens([pair_tokens(p.mirna, p.site, 5) for p in pairs])
    cls = pooled(tokens, padding_mask=mask).last_inner_state[:, 0]
    assert len({tuple(np.round(c.numpy(), 6)) for c in cls}) == len(pairs)  # the head sees the sequences
    constant = plain(tokens, padding_mask=mask).last_inner_state[:, 0]
    assert torch.equal(constant, constant[:1].expand_as(constant))        # without pooling: only CLS
    alone = pooled(torch.from_numpy(pair_tokens(pairs[0].mirna, pairs[0].site, 5))[None]).last_inner_state
    torch.testing.assert_close(cls[0], alone[0, 0])


def test_more_segments_than_configured_is_an_error():
    model = OneHotModel(OneHotConfig(k=1, cls_segments=2))
    tokens = torch.tensor([[CLS, 6, 7, CLS, 8, CLS, 9]])
    with pytest.raises(ValueError, match="more than 2 CLS-led segments"):
        model(tokens)
    with pytest.raises(ValueError, match="cls_segments"):
        OneHotModel(OneHotConfig(k=1, cls_segments=0))


def test_projection_and_saved_config_keep_the_segments(tmp_path, pairs):
    model = OneHotModel(OneHotConfig(k=5, project_dim=64, seed=3, cls_segments=2))
    tokens = torch.from_numpy(pair_tokens(pairs[0].mirna, pairs[0].site, 5))[None]
    back = load_onehot(save_onehot(model, tmp_path / "encoder"))
    assert back.config == model.config and back.output_dim == 64
    torch.testing.assert_close(back(tokens).last_inner_state, model(tokens).last_inner_state)


def test_each_task_gets_the_control_its_head_needs():
    interaction, _ = initial_model(get_task("interaction"), "onehot")
    coding, _ = initial_model(get_task("coding"), "onehot")
    structure, _ = initial_model(get_task("structure", {"preset": "laptop"}), "onehot")
    assert interaction.encoder.config.cls_segments == 2 and interaction.head.dense.in_features == 2 * V5
    assert coding.encoder.config.cls_segments is None and coding.head.linear_in.in_features == V5
    assert structure.encoder.config.cls_segments is None
