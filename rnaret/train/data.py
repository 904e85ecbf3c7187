"""Pretraining batches: shard splits, the token-budget batch stream, random crops, masking.

Every rank builds the same global micro-batch (the sampler runs with rank 0 of 1 everywhere),
crops and masks it with a generator seeded by (seed, step), and keeps its share of the rows.
Masks therefore do not depend on the number of processes, and a resumed run draws exactly what
the uninterrupted run drew. A rank's share (``LocalBatch``) carries what the device needs: the
corrupted tokens, the flat positions of the chosen tokens and their labels (the MLM head runs at
those positions only), and each row's dropout key (``rnaret.model.dropout``), a function of
(seed, step, micro-batch, the row's index in the global batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnaret.data.batching import collate
from rnaret.io.errors import InputError
from rnaret.masking import MaskingConfig, mask_tokens
from rnaret.tokenizer import PAD


def open_split(shards, split: str, k: int | None = None):
    """The ``ShardCorpus`` of ``shards/split``, checked: every shard file listed must be there.

    shards: a shard folder (with manifest.json and train/, valid/). k: the run's k, compared with
    the manifest's. Raises ``InputError`` naming the missing or unreadable file.
    """
    from rnaret.data.shards import ShardCorpus

    folder = Path(shards) / split
    if not Path(shards).is_dir():
        raise InputError(shards, "shard folder does not exist")
    if not folder.is_dir():
        raise InputError(folder, f"shard split folder '{split}' does not exist")
    try:
        corpus = ShardCorpus(folder)
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise InputError(exc.filename or folder, "shard file is missing") from exc
    except Exception as exc:  # a truncated index or manifest
        raise InputError(folder, f"shard split cannot be read ({type(exc).__name__}: {exc})") from exc
    if k is not None and corpus.k != k:
        raise InputError(folder.parent / "manifest.json",
                         f"shards are tokenized with k={corpus.k}, the run asks for k={k}")
    files = corpus.manifest["splits"][split].get("files", [])
    for entry in files:
        path = folder / entry["file"]
        if not path.is_file():
            raise InputError(path, "shard file is missing")
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as exc:
            raise InputError(path, f"shard file cannot be read ({type(exc).__name__}: {exc})") from exc
        if array.ndim != 1 or array.size != int(entry["tokens"]):
            raise InputError(path, f"shard file holds {array.size} tokens, the manifest says {entry['tokens']}")
    if len(corpus) == 0:
        raise InputError(folder, "shard split holds no records")
    return corpus


def effective_lengths(lengths: np.ndarray, max_len: int | None) -> np.ndarray:
    """Token lengths after the crop to ``max_len`` (None = no crop): what batches are sized by."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return lengths if max_len is None else np.minimum(lengths, max_len)


def crop(tokens: np.ndarray, max_len: int | None, generator: torch.Generator) -> np.ndarray:
    """A random window of ``max_len`` tokens (start uniform) when ``tokens`` is longer; else as is."""
    n = len(tokens)
    if max_len is None or n <= max_len:
        return tokens
    start = int(torch.randint(0, n - max_len + 1, (1,), generator=generator))
    return tokens[start : start + max_len]


def step_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (run seed, step, micro-batch, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclass
class LocalBatch:
    """A rank's share of a masked global micro-batch, as the device needs it.

    inputs: (B, W) long corrupted tokens (W = the share's longest row); positions: (N,) long flat
    indices (row * W + column) of the N chosen tokens; targets: (N,) long their original ids;
    row_keys: (B,) long dropout keys of the rows.
    """

    inputs: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    row_keys: torch.Tensor


@dataclass
class GlobalBatch:
    """One global micro-batch, masked, with this rank's share.

    global_tokens: real (non-PAD) tokens over all ranks; global_chosen / global_maskable:
    chosen and maskable tokens over all ranks; global_rows: rows over all ranks; local: this
    rank's ``LocalBatch`` or None when its share is empty.
    """

    local: LocalBatch | None
    global_tokens: int
    global_chosen: int
    global_maskable: int
    global_rows: int


def make_global_batch(corpus, indices: list[int], k: int, max_len: int | None,
                      generator: torch.Generator, masking: MaskingConfig,
                      rank: int = 0, world_size: int = 1, dropout_base: int = 0) -> GlobalBatch:
    """Crop, pad and mask the records ``indices`` of ``corpus``; keep rows rank::world_size.

    Masking the whole global batch with one generator makes the masks independent of the
    number of ranks; the share is trimmed to its own longest row. dropout_base: the integer
    the rows' dropout keys derive from (with each row's global index).
    """
    from rnaret.model.dropout import row_keys

    rows = [crop(corpus.tokens(i), max_len, generator) for i in indices]
    tokens = collate(rows, pad_id=PAD)  # (B, L)
    masked = mask_tokens(tokens, k, generator, masking)
    real = tokens != PAD
    mine = list(range(rank, len(rows), world_size))
    local = None
    if mine:
        width = max(len(rows[i]) for i in mine)
        sel = torch.tensor(mine, dtype=torch.long)
        chosen = masked.chosen[sel, :width]
        positions = chosen.reshape(-1).nonzero().squeeze(1)  # on the CPU: no device sync
        local = LocalBatch(inputs=masked.inputs[sel, :width].contiguous(), positions=positions,
                           targets=masked.labels[sel, :width].reshape(-1)[positions],
                           row_keys=row_keys(dropout_base, mine))
    return GlobalBatch(local=local, global_tokens=int(real.sum()), global_chosen=masked.n_chosen,
                       global_maskable=int(masked.maskable.sum()), global_rows=len(rows))


class BatchStream:
    """Endless global micro-batches (lists of record indices) from a token-budget sampler.

    Position = (epoch, batches taken in that epoch); ``state()`` / ``restore()`` resume exactly:
    the sampler's order is a function of (seed, epoch).
    """

    def __init__(self, lengths: np.ndarray, max_tokens: int, seed: int, max_rows: int | None = None):
        from rnaret.data.batching import TokenBudgetBatchSampler

        self.sampler = TokenBudgetBatchSampler(lengths, max_tokens, shuffle=True, seed=seed,
                                               rank=0, world_size=1, drop_last=False,
                                               max_rows=max_rows)
        self.epoch = 0
        self.offset = 0
        self._iter = None

    def _start(self) -> None:
        # the sampler skips the batches a resumed run already consumed
        self.sampler.load_state_dict({"epoch": self.epoch, "position": self.offset})
        self._iter = iter(self.sampler)

    def next(self) -> list[int]:
        """The next global micro-batch's record indices."""
        if self._iter is None:
            self._start()
        while True:
            batch = next(self._iter, None)
            if batch is not None:
                self.offset += 1
                return [int(i) for i in batch]
            self.epoch += 1
            self.offset = 0
            self._start()

    def state(self) -> dict:
        """The stream position as plain ints."""
        return {"epoch": self.epoch, "offset": self.offset}

    def restore(self, state: dict) -> None:
        """Continue from a position returned by ``state()``."""
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._iter = None


def validation_batches(lengths: np.ndarray, max_tokens: int, seed: int,
                       max_batches: int | None, max_rows: int | None = None) -> list[list[int]]:
    """A fixed list of validation micro-batches: the sampler's shuffled epoch 0, cut to ``max_batches``.

    Shuffled, so that a cut keeps all lengths rather than only the shortest records.
    """
    from rnaret.data.batching import TokenBudgetBatchSampler

    sampler = TokenBudgetBatchSampler(lengths, max_tokens, shuffle=True, seed=seed, rank=0,
                                      world_size=1, drop_last=False, max_rows=max_rows)
    sampler.set_epoch(0)
    out = []
    for batch in sampler:
        out.append([int(i) for i in batch])
        if max_batches is not None and len(out) >= max_batches:
            break
    return out


def unigram_entropy(corpus, batches: list[list[int]], k: int, max_len: int | None, seed: int) -> float:
    """Entropy (nats) of the k-mer tokens of the validation windows ``batches`` covers.

    The loss of a model that ignores context and predicts token frequencies: an MLM loss
    below it shows the model reads context. Crops are drawn as in ``evaluate`` so the tokens
    are those the validation loss is measured on.
    """
    from rnaret.tokenizer import FIRST_KMER_ID

    counts = np.zeros(4**k, dtype=np.int64)
    for b, indices in enumerate(batches):
        gen = torch.Generator().manual_seed(step_seed(seed, 1, b))
        for i in indices:
            t = crop(corpus.tokens(i), max_len, gen)
            t = t[(t >= FIRST_KMER_ID) & (t < FIRST_KMER_ID + 4**k)] - FIRST_KMER_ID
            counts += np.bincount(t, minlength=4**k)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
