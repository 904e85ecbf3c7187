"""TokenBudgetBatchSampler and collate: budget, grouping, determinism, DDP ranks, exact resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rnaret.data.batching import TokenBudgetBatchSampler, collate


@pytest.fixture(scope="module")
def lengths():
    # the token lengths of the bundled sample's first records, with two over-budget ones
    rng = np.random.default_rng(0)
    values = rng.lognormal(5, 1, size=3000).astype(np.int64) + 1
    values[[10, 20]] = [9000, 12000]
    return values


def padded(batch, lengths):
    return int(lengths[batch].max()) * len(batch)


def test_every_record_once_within_the_budget(lengths):
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=4096, seed=3)
    batches = list(sampler)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert padded(batch, lengths) <= 4096 or len(batch) == 1
    alone = [b for b in batches if lengths[b].max() > 4096]
    assert sorted(b[0] for b in alone) == [10, 20] and all(len(b) == 1 for b in alone)
    efficiency = lengths.sum() / sum(padded(b, lengths) for b in batches)
    assert efficiency > 0.9  # similar lengths grouped: little padding
    assert len(sampler) == len(batches)


def test_deterministic_per_seed_and_epoch(lengths):
    a = TokenBudgetBatchSampler(lengths, 4096, seed=1)
    b = TokenBudgetBatchSampler(lengths, 4096, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(2)
    epoch1, epoch2 = list(a), list(b)
    assert epoch1 != epoch2
    a.set_epoch(2)
    assert list(a) == epoch2
    c = TokenBudgetBatchSampler(lengths, 4096, shuffle=False)
    first = list(c)
    assert first == list(c) and np.all(np.diff(lengths[np.concatenate(first)]) >= 0)


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_get_equal_numbers_of_batches(lengths, drop_last):
    world = 3
    samplers = [TokenBudgetBatchSampler(lengths, 4096, seed=5, rank=r, world_size=world,
                                        drop_last=drop_last) for r in range(world)]
    for s in samplers:
        s.set_epoch(4)
    per_rank = [list(s) for s in samplers]
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
    single = TokenBudgetBatchSampler(lengths, 4096, seed=5)
    single.set_epoch(4)
    total = len(list(single))
    covered = {i for p in per_rank for b in p for i in b}
    if drop_last:
        assert len(per_rank[0]) == total // world
        assert len(covered) < len(lengths)
    else:
        assert len(per_rank[0]) == -(-total // world)
        assert covered == set(range(len(lengths)))
    firsts = [tuple(p[0]) for p in per_rank]
    assert len(set(firsts)) == world  # ranks see different batches


def test_resume_mid_epoch_is_exact(lengths):
    sampler = TokenBudgetBatchSampler(lengths, 2048, seed=9, rank=1, world_size=2)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3)
    iterator = iter(sampler)
    seen = [next(iterator) for _ in range(7)]
    state = sampler.state_dict()
    assert state["epoch"] == 3 and state["position"] == 7
    resumed = TokenBudgetBatchSampler(lengths, 2048, seed=9, rank=1, world_size=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the training loop's call does not restart the epoch
    assert seen + list(resumed) == full
    resumed.set_epoch(4)
    assert len(list(resumed)) == len(resumed)
    with pytest.raises(ValueError, match="seed"):
        TokenBudgetBatchSampler(lengths, 2048, seed=1, world_size=2, rank=1).load_state_dict(state)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        TokenBudgetBatchSampler([1, 2], 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="max_tokens"):
        TokenBudgetBatchSampler([1, 2], 0)


def test_collate_pads_right():
    batch = collate([np.array([5, 6, 7]), np.array([8]), np.array([9, 10])], pad_id=0)
    assert batch.dtype == torch.long and batch.shape == (3, 3)
    assert batch.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    with pytest.raises(ValueError):
        collate([])


def test_dataloader_over_shards(tmp_path, resources):
    from torch.utils.data import DataLoader

    from rnaret.data.shards import ShardCorpus, write_shards

    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">r{i}\n{'ACGU' * (i % 17 + 1)}\n" for i in range(200)))
    write_shards(fasta, tmp_path / "k1", 1, tokens_per_shard=500, valid_fraction=0.1, show_progress=False)
    corpus = ShardCorpus(tmp_path / "k1", "train")
    sampler = TokenBudgetBatchSampler(corpus.lengths, max_tokens=256, seed=0)
    loader = DataLoader(corpus, batch_sampler=sampler, collate_fn=collate, num_workers=0)
    n = 0
    for batch in loader:
        assert batch.ndim == 2 and batch.numel() <= 256
        n += int((batch != 0).sum())
    assert n == int(corpus.lengths.sum())


def test_resume_point_behind_a_prefetching_dataloader(lengths):
    from torch.utils.data import DataLoader

    sampler = TokenBudgetBatchSampler(lengths, 2048, seed=2)
    full = list(sampler)
    loader = DataLoader(list(range(len(lengths))), batch_sampler=sampler, num_workers=2,
                        prefetch_factor=4, collate_fn=list)
    consumed = []
    for batch in loader:
        consumed.append(batch)
        if len(consumed) == 5:
            break
    assert sampler.position > 5  # the workers fetched ahead
    state = sampler.state_dict(consumed=5)
    assert state["position"] == 5
    resumed = TokenBudgetBatchSampler(lengths, 2048, seed=2)
    resumed.load_state_dict(state)
    assert consumed + [b for b in resumed] == [b.tolist() if hasattr(b, "tolist") else b for b in full]
