"""Length-grouped batches under a token budget, split across DDP ranks, with exact resume.

``TokenBudgetBatchSampler(lengths, max_tokens)`` is a ``batch_sampler`` for
``torch.utils.data.DataLoader``: each batch is a list of record indices whose padded size
``max(length) * len(batch)`` is at most ``max_tokens`` (a record longer than ``max_tokens``
forms a batch alone). ``collate`` pads a list of token arrays into a (B, L) LongTensor.
"""
from __future__ import annotations

import numpy as np


def pack_batches(order: np.ndarray, lengths: np.ndarray, max_tokens: int,
                 max_rows: int | None = None) -> list[np.ndarray]:
    """Cut ``order`` (indices sorted by ascending length) into consecutive batches whose padded
    size max_len * n stays within ``max_tokens`` and that hold at most ``max_rows`` records
    (None: no row cap); returns a list of index arrays.

    With ascending lengths the padded size of ``order[start:end]`` is ``len[end-1] * (end-start)``,
    which only grows with ``end``, so the longest batch from each start is found by bisection.
    """
    sorted_lengths = np.maximum(lengths[order], 1)
    n = len(order)
    batches = []
    start = 0
    while start < n:
        lo = start + 1  # a single record always forms a batch, even over budget
        hi = n if max_rows is None else min(n, start + max_rows)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(sorted_lengths[mid - 1]) * (mid - start) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        batches.append(order[start:lo])
        start = lo
    return batches


class TokenBudgetBatchSampler:
    """Batches of similar-length records under a padded-token budget, for one DDP rank.

    In: ``lengths`` (n,) token counts per record (e.g. ``ShardCorpus.lengths``), ``max_tokens``
    per batch (padded: max_len * batch_size), ``max_rows`` (records per batch; None = no cap),
    ``shuffle`` (random order within equal lengths and
    random batch order, both from ``(seed, epoch)``), ``rank``/``world_size`` (each rank gets the
    same number of batches: the batch list is cut (``drop_last``) or wrapped around to a
    multiple of ``world_size``). Deterministic given (seed, epoch). ``state_dict()`` /
    ``load_state_dict()`` hold (epoch, position) for resuming mid-epoch exactly.
    Yields lists of int indices.
    """

    def __init__(self, lengths, max_tokens: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 max_rows: int | None = None):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be 1-D, got shape {self.lengths.shape}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}")
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
        self.max_tokens = int(max_tokens)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)
        self.epoch = 0
        self.position = 0  # batches of this rank already yielded in the current epoch
        self.start_position = 0
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order; a new epoch starts at its first batch."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def _all_batches(self) -> list[np.ndarray]:
        """Every rank's batches of the current epoch, before the split across ranks."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        n = len(self.lengths)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            tie_order = rng.permutation(n)
            order = tie_order[np.argsort(self.lengths[tie_order], kind="stable")]
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = pack_batches(order, self.lengths, self.max_tokens, self.max_rows)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.world_size > 1 and batches:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % self.world_size]
            else:
                extra = (-len(batches)) % self.world_size
                batches = batches + [batches[i % len(batches)] for i in range(extra)]
        self._cache = (self.epoch, batches)
        return batches

    def __len__(self) -> int:
        """Number of batches this rank yields in a full epoch."""
        return len(self._all_batches()) // self.world_size  # a multiple of world_size by construction

    def __iter__(self):
        mine = self._all_batches()[self.rank::self.world_size]
        self.start_position = self.position  # where this pass began (resume point)
        while self.position < len(mine):
            batch = mine[self.position]
            self.position += 1
            yield batch.tolist()
        self.position = 0  # a finished pass; set_epoch picks the next order

    def state_dict(self, consumed: int | None = None) -> dict:
        """{'epoch', 'position', 'seed', 'max_tokens', 'world_size'}: enough to resume exactly.

        A DataLoader fetches batches ahead of the training loop, so ``position`` (batches handed
        out) can run ahead of the batches trained on: pass ``consumed``, the batches the loop
        has trained on since this pass began, to record the exact resume point instead.
        """
        position = self.position if consumed is None else self.start_position + int(consumed)
        return {"epoch": self.epoch, "position": position, "seed": self.seed,
                "max_tokens": self.max_tokens, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state['epoch']``, skipping the ``state['position']`` batches already seen."""
        for key in ("seed", "max_tokens", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]}, this sampler {getattr(self, key)}")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


def collate(arrays, pad_id: int = 0):
    """Right-pad token arrays into a LongTensor of shape (B, L), L = the longest; pad with ``pad_id``."""
    import torch

    if not arrays:
        raise ValueError("collate needs at least one sequence")
    width = max(len(a) for a in arrays)
    out = torch.full((len(arrays), width), pad_id, dtype=torch.long)
    for row, array in enumerate(arrays):
        out[row, : len(array)] = torch.as_tensor(np.asarray(array, dtype=np.int64))
    return out
