"""The published MLM masking (spans of k, 15 %, 80/10/10) with the random-draw off-by-one fixed."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from rnaret.data.batching import collate
from rnaret.masking import IGNORE_INDEX, MaskingConfig, mask_tokens, masked_lm_loss
from rnaret.tokenizer import CLS, FILL, FIRST_KMER_ID, MASK, PAD, UNK, encode


def _sample_sequences(resources, n: int, max_len: int = 600) -> list[str]:
    """The first n records of the bundled RNAcentral sample, cut to max_len nt."""
    seqs, current = [], []
    with gzip.open(resources / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                if current:
                    seqs.append("".join(current)[:max_len])
                    if len(seqs) == n:
                        break
                current = []
            else:
                current.append(line.strip())
    return seqs


@pytest.fixture(scope="module")
def batches(resources):
    seqs = _sample_sequences(resources, 300)
    return {k: collate([encode(s, k) for s in seqs]) for k in (1, 3, 5)}


def expected_masked_fraction(tokens: torch.Tensor, k: int) -> float:
    """E[chosen k-mer tokens] / k-mer tokens under the published rule: with S = ceil(0.15 n / k)
    starts uniform over m = n - k + 1 places, position t is covered with probability
    1 - (1 - c_t / m)**S, c_t the number of starts whose span holds t."""
    covered = maskable = 0.0
    for row in tokens.numpy():
        row = row[row != PAD]
        n = len(row)
        m = max(n - k + 1, 1)
        spans = np.ceil(0.15 * n / k)
        t = np.arange(n)
        c = np.minimum(t, m - 1) - np.maximum(0, t - k + 1) + 1
        is_kmer = (row >= FIRST_KMER_ID) & (row < FIRST_KMER_ID + 4**k)
        covered += float((1 - (1 - c[is_kmer] / m) ** spans).sum())
        maskable += int(is_kmer.sum())
    return covered / maskable


@pytest.mark.parametrize("k", [1, 3, 5])
def test_masked_fraction_and_80_10_10_split(batches, k):
    tokens = batches[k]
    out = mask_tokens(tokens, k, torch.Generator().manual_seed(0))
    chosen = out.chosen
    n = out.n_chosen
    # ceil(0.15 n / k) spans of k with starts drawn with replacement: the share of k-mer tokens
    # chosen is what the published rule gives in expectation, computed exactly below
    assert out.masked_fraction == pytest.approx(expected_masked_fraction(tokens, k), abs=0.004)
    # the corrupted inputs: 80 % MASK, 10 % another token, 10 % unchanged (among chosen tokens)
    is_mask = (out.inputs == MASK) & chosen
    unchanged = (out.inputs == tokens) & chosen
    replaced = chosen & ~is_mask & ~unchanged
    assert abs(is_mask.sum().item() / n - 0.8) < 0.02
    # a random draw may hit the original id (probability 4**-k), which then counts as unchanged
    p_same = 4.0**-k
    assert abs(replaced.sum().item() / n - 0.1 * (1 - p_same)) < 0.015
    assert abs(unchanged.sum().item() / n - (0.1 + 0.1 * p_same)) < 0.015
    # labels: the original token where chosen, ignored elsewhere; nothing outside chosen changes
    assert torch.equal(out.labels[chosen], tokens[chosen])
    assert (out.labels[~chosen] == IGNORE_INDEX).all()
    assert torch.equal(out.inputs[~chosen], tokens[~chosen])


# ------------------------------------------------------------------ the published rule, exactly
# Read from DrBlackZJU/RNAret pretrain.py (``add_mask``) and written here from that reading: a row
# of n non-PAD tokens (count_nonzero: FILL flanks and UNK count) gets ceil(0.15 n / k) span starts,
# each uniform over 0 .. n - k with replacement, and every span covers [start, start + k).


def published_span_count(row: np.ndarray, k: int) -> int:
    """The published number of spans of one row of tokens."""
    return int(np.ceil(0.15 * np.count_nonzero(row) / k))


def published_spans(row: np.ndarray, k: int, starts) -> np.ndarray:
    """The published span positions of one row for the given starts, as a bool mask."""
    covered = np.zeros(len(row), dtype=bool)
    for start in starts:
        covered[start : start + k] = True
    return covered


@pytest.fixture(scope="module")
def shard_batches(resources, tmp_path_factory):
    """Length-grouped batches of every record of shards built from the first 1,500 records of the
    bundled sample, at k = 1, 3, 5 (the batches pretraining masks, uncropped)."""
    from rnaret.data.batching import TokenBudgetBatchSampler
    from rnaret.data.shards import ShardCorpus, write_shards
    from rnaret.io.fasta import write_fasta

    records, header, chunks = [], None, []
    with gzip.open(resources / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                if header is not None:
                    records.append((header, "".join(chunks)))
                    if len(records) == 1500:
                        break
                header, chunks = line[1:].strip(), []
            else:
                chunks.append(line.strip())
    folder = tmp_path_factory.mktemp("masking_shards")
    with open(folder / "sample.fa", "w") as out:
        write_fasta(records, out)
    out = {}
    for k in (1, 3, 5):
        write_shards(folder / "sample.fa", folder / f"k{k}", k, tokens_per_shard=500_000,
                     valid_fraction=0.0, seed=0, show_progress=False)
        corpus = ShardCorpus(folder / f"k{k}", "train")
        sampler = TokenBudgetBatchSampler(corpus.lengths, 60_000, shuffle=False)
        out[k] = [collate([corpus.tokens(i) for i in batch]) for batch in sampler]
    return out


@pytest.mark.parametrize("k", [1, 3, 5])
def test_span_counts_and_spans_are_the_published_rule_on_the_shards(shard_batches, k):
    """Every record of the shards: exactly the published number of spans, every start where the
    published draw puts it, and the chosen positions exactly the published spans' k-mer tokens."""
    gen = torch.Generator().manual_seed(11)
    relative, rows = [], 0
    for tokens in shard_batches[k]:
        out = mask_tokens(tokens, k, gen)
        for b in range(tokens.shape[0]):
            row = tokens[b].numpy()
            row = row[: np.count_nonzero(row != PAD)]
            starts = out.span_starts[b][out.span_starts[b] >= 0].numpy()
            assert len(starts) == published_span_count(row, k), (k, b)
            n = len(row)
            assert starts.min() >= 0 and starts.max() <= max(n - k, 0)
            is_kmer = (row >= FIRST_KMER_ID) & (row < FIRST_KMER_ID + 4**k)
            expected = published_spans(row, k, starts) & is_kmer
            chosen = out.chosen[b, :n].numpy()
            assert np.array_equal(chosen, expected), (k, b)
            assert not out.chosen[b, n:].any()
            if n - k + 1 >= 20:
                relative.append(starts / (n - k + 1))
            rows += 1
    assert rows == 1500
    # starts uniform over the places a span fits: a chi-square test over 20 equal bins (seeded,
    # so the same figure every run)
    from scipy.stats import chisquare

    pooled = np.concatenate(relative)
    counts = np.bincount(np.minimum((pooled * 20).astype(int), 19), minlength=20)
    assert len(pooled) > 5000 and chisquare(counts).pvalue > 1e-3


def test_spans_are_k_long_runs(batches):
    """At k=5 chosen positions come in runs of >= 5 (spans of 5, maybe merged); a shorter run
    only where a span was clipped by a non-k-mer position (UNK, FILL, PAD) beside it."""
    tokens = batches[5]
    out = mask_tokens(tokens, 5, torch.Generator().manual_seed(2))
    runs = clipped = 0
    for row, maskable in zip(out.chosen.tolist(), out.maskable.tolist()):
        start = None
        for i, c in enumerate(row + [False]):
            if c and start is None:
                start = i
            elif not c and start is not None:
                runs += 1
                if i - start < 5:
                    before = maskable[start - 1] if start > 0 else False
                    after = maskable[i] if i < len(maskable) else False
                    assert not (before and after), "a short run between two k-mer positions"
                    clipped += 1
                start = None
    assert runs > 1000 and clipped < 0.05 * runs


@pytest.mark.parametrize("k", [1, 3, 5])
def test_random_draws_cover_every_kmer_and_never_a_special_id(k):
    """The fix of the published off-by-one: uniform over exactly the 4**k k-mer ids."""
    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(rng.integers(FIRST_KMER_ID, FIRST_KMER_ID + 4**k, size=(64, 4000)))
    cfg = MaskingConfig(mask_prob=1.0, mask_token_prob=0.0, random_token_prob=1.0, span=1)
    drawn = []
    gen = torch.Generator().manual_seed(3)
    for _ in range(3 if k == 5 else 1):
        out = mask_tokens(tokens, k, gen, cfg)
        drawn.append(out.inputs[out.chosen])
    drawn = torch.cat(drawn)
    assert drawn.min().item() >= FIRST_KMER_ID
    assert drawn.max().item() == FIRST_KMER_ID + 4**k - 1  # the last k-mer id, missed as published
    counts = torch.bincount(drawn - FIRST_KMER_ID, minlength=4**k)
    assert (counts > 0).all()
    expected = drawn.numel() / 4**k
    assert counts.max().item() < expected * 1.5 and counts.min().item() > expected * 0.5


def test_special_positions_are_never_masked():
    """PAD, FILL, CLS, UNK positions are never chosen, even when everything else is."""
    k = 3
    row = encode("ACGTNACGTACGGTACNNACGT", k)
    tokens = collate([np.concatenate([[CLS], row]), row[:7]])
    cfg = MaskingConfig(mask_prob=1.0)
    for seed in range(20):
        out = mask_tokens(tokens, k, torch.Generator().manual_seed(seed), cfg)
        special = (tokens == PAD) | (tokens == FILL) | (tokens == CLS) | (tokens == UNK)
        assert special.any()
        assert not out.chosen[special].any()
        assert torch.equal(out.inputs[special], tokens[special])
        assert out.chosen.any()


def test_same_seed_same_masks_other_seed_other_masks(batches):
    tokens = batches[3]
    a = mask_tokens(tokens, 3, torch.Generator().manual_seed(7))
    b = mask_tokens(tokens, 3, torch.Generator().manual_seed(7))
    c = mask_tokens(tokens, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.chosen, c.chosen)


def test_masked_lm_loss_counts_only_labelled_positions():
    logits = torch.zeros(1, 4, 10)
    logits[0, :, 6] = 5.0  # predicts id 6 everywhere
    labels = torch.tensor([[6, IGNORE_INDEX, 7, IGNORE_INDEX]])
    loss_sum, correct = masked_lm_loss(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits[0, [0, 2]], labels[0, [0, 2]], reduction="sum")
    assert torch.allclose(loss_sum, expected)
    assert int(correct) == 1
