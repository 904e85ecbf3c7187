"""Token shards: a streaming tokenize + shard writer and the ``ShardCorpus`` reader.

On-disk format (see ``rnaret/data/SHARDS.md``)::

    <root>/manifest.json              k, vocab_size, dtype, counts, policy, source checksums
    <root>/<split>/tokens-NNNNN.npy   1-D uint16: the tokens of consecutive records, concatenated
    <root>/<split>/index.npy          structured (shard u4, offset u8, length u4), one per record
    <root>/<split>/ids.txt            record ids, one per line, in index order
    <root>/<split>/ids.offsets.npy    u8 byte offset of each id line (n + 1 values)

Records are sorted by token length (ascending; ties in a seeded pseudo-random order) across
all shards of a split, so a batch of similar lengths lies in one place on disk.
Writing is streamed: tokens go to sorted runs of at most ``run_tokens`` tokens in a temporary
folder, runs are merged at most ``MERGE_FAN_IN`` at a time (more levels for a larger corpus),
and the last merge fills one shard buffer at a time. Memory is bounded by ``run_tokens``,
``tokens_per_shard`` and the fan-in (one read buffer and one record per merged run), not by
the corpus.
"""
from __future__ import annotations

import heapq
import json
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from rnaret import __version__
from rnaret.data.corpus import id_hash
from rnaret.data.download import md5_of
from rnaret.data.progress import progress
from rnaret.io.atomic import atomic_dir
from rnaret.io.errors import InputError
from rnaret.io.fasta import read_fasta
from rnaret.tokenizer import PAD, UNK, decode, encode, vocab_size

FORMAT = "rnaret-token-shards"
FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "valid")
TOKEN_DTYPE = np.uint16  # ids < 4**5 + 6 = 1030
INDEX_DTYPE = np.dtype([("shard", "<u4"), ("offset", "<u8"), ("length", "<u4")])
_RUN_HEADER = struct.Struct("<IQI")  # token length, sort key, id byte length
MERGE_FAN_IN = 32                    # runs merged at once: bounds the merge's read buffers
RUN_READ_BUFFER = 1 << 18            # bytes of read buffer per open run
_WINDOW_SUFFIX = re.compile(r"/\d+-\d+$")
_ACGTU = "ACGTUacgtu"


def source_id(record_id: str) -> str:
    """The id a record came from: windows ``id/start-end`` of one sequence share ``id``."""
    return _WINDOW_SUFFIX.sub("", record_id)


def assign_split(record_id: str, valid_fraction: float, seed: int) -> str:
    """'valid' or 'train' from a seeded hash of the source id (windows stay together)."""
    u = id_hash(f"{seed}:{source_id(record_id)}") / 2.0**64
    return "valid" if u < valid_fraction else "train"


# ---------------------------------------------------------------- writing


class _RunWriter:
    """Collects records of one split in a fixed token buffer; writes each full buffer, sorted
    by (length, key), as a run file. The buffer is reused, so memory stays constant."""

    def __init__(self, folder: Path, split: str, run_tokens: int):
        self.folder, self.split, self.run_tokens = folder, split, run_tokens
        self.tokens = np.empty(run_tokens, dtype=TOKEN_DTYPE)
        self.filled = 0
        self.records: list[tuple[int, int, int, bytes]] = []  # (length, key, offset, id)
        self.paths: list[Path] = []

    def add(self, length: int, key: int, rid: bytes, tokens: np.ndarray) -> None:
        if self.filled + length > self.run_tokens:
            self.flush()
        if length > self.run_tokens:  # longer than a whole run: a run of its own
            self._write([(length, key, 0, rid)], tokens.astype(TOKEN_DTYPE))
            return
        self.tokens[self.filled:self.filled + length] = tokens
        self.records.append((length, key, self.filled, rid))
        self.filled += length

    def flush(self) -> None:
        if self.records:
            self.records.sort(key=lambda r: (r[0], r[1]))
            self._write(self.records, self.tokens)
        self.records = []
        self.filled = 0

    def _write(self, records, tokens: np.ndarray) -> None:
        path = self.folder / f"{self.split}-run-{len(self.paths):05d}.bin"
        with open(path, "wb", buffering=1 << 20) as out:
            for length, key, offset, rid in records:
                out.write(_RUN_HEADER.pack(length, key, len(rid)))
                out.write(rid)
                out.write(tokens[offset:offset + length].tobytes())
        self.paths.append(path)


def _read_run(path: Path) -> Iterator[tuple[int, int, bytes, bytes]]:
    itemsize = np.dtype(TOKEN_DTYPE).itemsize
    with open(path, "rb", buffering=RUN_READ_BUFFER) as handle:
        while True:
            head = handle.read(_RUN_HEADER.size)
            if not head:
                return
            length, key, id_len = _RUN_HEADER.unpack(head)
            rid = handle.read(id_len)
            yield length, key, rid, handle.read(length * itemsize)


def _merged(paths: list[Path]) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Records of sorted runs in (length, key) order."""
    return heapq.merge(*(_read_run(p) for p in paths), key=lambda r: (r[0], r[1]))


def _reduce_runs(paths: list[Path], fan_in: int) -> list[Path]:
    """Merge runs in groups of ``fan_in`` until at most ``fan_in`` remain.

    A k-way merge holds one read buffer per run, so capping k keeps memory independent of the
    number of runs (which grows with the corpus); each level costs one more pass over the data.
    """
    level = 0
    while len(paths) > fan_in:
        merged = []
        for start in range(0, len(paths), fan_in):
            group = paths[start:start + fan_in]
            out_path = group[0].with_name(f"{group[0].stem}.m{level}-{start // fan_in:05d}.bin")
            with open(out_path, "wb", buffering=1 << 20) as out:
                for length, key, rid, tokens in _merged(group):
                    out.write(_RUN_HEADER.pack(length, key, len(rid)))
                    out.write(rid)
                    out.write(tokens)
            for path in group:
                path.unlink()
            merged.append(out_path)
        paths = merged
        level += 1
    return paths


def _npy_header(fp, dtype, shape) -> None:
    """Write a .npy header for an array that will be appended in pieces."""
    np.lib.format.write_array_header_2_0(
        fp, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
             "shape": shape})


class _SplitWriter:
    """Writes one split folder: shards, index, ids; the merge feeds it records in order."""

    def __init__(self, folder: Path, n_records: int, tokens_per_shard: int):
        self.folder = folder
        folder.mkdir(parents=True)
        self.tokens_per_shard = tokens_per_shard
        self.buffer = np.empty(tokens_per_shard, dtype=TOKEN_DTYPE)
        self.filled = 0
        self.shard_records: list[int] = []  # token lengths of the records in the open shard
        self.files: list[dict] = []
        self.n_records = n_records
        self.written = 0
        self.index = open(folder / "index.npy", "wb", buffering=1 << 20)
        _npy_header(self.index, INDEX_DTYPE, (n_records,))
        self.ids = open(folder / "ids.txt", "wb", buffering=1 << 20)
        self.id_offsets = open(folder / "ids.offsets.npy", "wb", buffering=1 << 20)
        _npy_header(self.id_offsets, "<u8", (n_records + 1,))
        self.id_bytes = 0
        self.id_offsets.write(np.uint64(0).tobytes())

    def add(self, length: int, rid: bytes, tokens: bytes) -> None:
        if self.filled and self.filled + length > self.tokens_per_shard:
            self._close_shard()
        array = np.frombuffer(tokens, dtype=TOKEN_DTYPE)
        if length > self.tokens_per_shard:  # a record longer than a shard gets a shard of its own
            self._write_shard(array, [length])
            offset, shard = 0, len(self.files) - 1
        else:
            offset, shard = self.filled, len(self.files)
            self.buffer[self.filled:self.filled + length] = array
            self.filled += length
            self.shard_records.append(length)
        self.index.write(np.array([(shard, offset, length)], dtype=INDEX_DTYPE).tobytes())
        line = rid + b"\n"
        self.ids.write(line)
        self.id_bytes += len(line)
        self.id_offsets.write(np.uint64(self.id_bytes).tobytes())
        self.written += 1

    def _write_shard(self, tokens: np.ndarray, lengths: list[int]) -> None:
        """Save one shard file; its records are the last ``len(lengths)`` handed to ``add``
        (or, for a record alone in its shard, the one being added)."""
        name = f"tokens-{len(self.files):05d}.npy"
        np.save(self.folder / name, tokens)
        first = self.written - len(self.shard_records) if self.shard_records else self.written
        self.files.append({"file": name, "records": len(lengths), "tokens": int(tokens.size),
                           "first_record": first, "min_length": int(min(lengths)),
                           "max_length": int(max(lengths))})

    def _close_shard(self) -> None:
        if self.shard_records:
            self._write_shard(self.buffer[:self.filled], self.shard_records)
        self.filled = 0
        self.shard_records = []

    def close(self) -> list[dict]:
        self._close_shard()
        for handle in (self.index, self.ids, self.id_offsets):
            handle.close()
        if self.written != self.n_records:
            raise RuntimeError(f"{self.folder}: wrote {self.written} records, expected {self.n_records}")
        return self.files


def write_shards(fasta, out_dir, k: int, *, tokens_per_shard: int = 50_000_000,
                 valid_fraction: float = 0.01, seed: int = 0, run_tokens: int = 8_000_000,
                 provenance: dict | None = None, policy: dict | None = None,
                 valid_from_train: bool = False, show_progress: bool = True) -> dict:
    """Tokenize ``fasta`` at ``k`` and write the shard folder ``out_dir`` (atomically).

    In: a FASTA file (plain/gz; records already filtered), k in (1, 3, 5), shard size in tokens,
    the fraction of source sequences held out for validation and the seed of that split and of
    the tie order. ``valid_from_train``: nothing is held out; the records drawn for validation
    are written to train as well (the published pretraining trains on every record: the
    validation loss then monitors records that are trained on). Out: the manifest dict (also
    written to ``out_dir/manifest.json``).
    Non-ACGTU letters are kept; their k-mers become UNK tokens, and both are counted.
    """
    if tokens_per_shard < 1 or run_tokens < 1:
        raise ValueError("tokens_per_shard and run_tokens must be >= 1")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in [0, 1), got {valid_fraction}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stats = {s: {"records": 0, "tokens": 0, "nucleotides": 0, "unk_tokens": 0,
                 "non_acgtu_letters": 0, "min_length": None, "max_length": None} for s in SPLIT_NAMES}
    runs_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.runs.", dir=out_dir.parent))
    try:
        writers = {s: _RunWriter(runs_dir, s, run_tokens) for s in SPLIT_NAMES}
        for record in progress(read_fasta(fasta, duplicate_ids="ignore"), desc=f"tokenize k={k}",
                               disable=not show_progress):
            seq = record.sequence
            tokens = encode(seq, k)
            split = assign_split(record.id, valid_fraction, seed)
            n = int(tokens.size)
            for split in ("train", "valid") if valid_from_train and split == "valid" else (split,):
                st = stats[split]
                st["records"] += 1
                st["tokens"] += n
                st["nucleotides"] += len(seq)
                st["unk_tokens"] += int(np.count_nonzero(tokens == UNK))
                st["non_acgtu_letters"] += len(seq) - sum(seq.count(c) for c in _ACGTU)
                st["min_length"] = n if st["min_length"] is None else min(st["min_length"], n)
                st["max_length"] = n if st["max_length"] is None else max(st["max_length"], n)
                writers[split].add(n, id_hash(f"{seed}:{record.id}"), record.id.encode(), tokens)
        for writer in writers.values():
            writer.flush()
        with atomic_dir(out_dir) as tmp:
            for split in SPLIT_NAMES:
                sw = _SplitWriter(tmp / split, stats[split]["records"], tokens_per_shard)
                runs = _reduce_runs(writers[split].paths, MERGE_FAN_IN)
                for length, _key, rid, tokens in progress(_merged(runs), total=stats[split]["records"],
                                                          desc=f"shard {split} k={k}",
                                                          disable=not show_progress):
                    sw.add(length, rid, tokens)
                stats[split]["files"] = sw.close()
                for path in runs:
                    path.unlink()
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "created_by": f"rnaret {__version__}",
                "k": k, "vocab_size": vocab_size(k), "dtype": np.dtype(TOKEN_DTYPE).name, "pad_id": PAD,
                "order": "by token length ascending; ties by blake2b(seed:id)",
                "source": {"path": str(fasta), "md5": md5_of(fasta)},
                "provenance": provenance or {},
                "policy": policy or {},
                "shards": {"tokens_per_shard": tokens_per_shard, "valid_fraction": valid_fraction,
                           "seed": seed, "split_by": "blake2b(seed:source id) < valid_fraction",
                           # only when set: the manifests of held-out shards stay as they were
                           **({"valid_from_train": True} if valid_from_train else {})},
                "splits": stats,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)
    return manifest


# ---------------------------------------------------------------- reading


class ShardCorpus:
    """Random access to the records of one split of a shard folder, without loading shards.

    ``ShardCorpus("results/shards/k3/train")`` or ``ShardCorpus("results/shards/k3", "train")``.
    ``len(corpus)`` records; ``corpus.lengths`` (int64 array, tokens per record, ascending);
    ``corpus.tokens(i)`` -> int64 array (length,); ``corpus.record_id(i)`` -> str;
    ``corpus.sequence(i)`` -> nucleotides spelled by the tokens (T alphabet, N for UNK).
    Shards are memory-mapped on first use; safe to use in forked DataLoader workers.
    """

    def __init__(self, path, split: str | None = None):
        path = Path(path)
        if split is not None:
            path = path / split
        manifest_path = path.parent / "manifest.json"
        if not manifest_path.exists():
            raise InputError(path, "not a shard split folder (no manifest.json beside it)")
        self.path = path
        self.split = path.name
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if self.manifest.get("format") != FORMAT or self.split not in self.manifest["splits"]:
            raise InputError(manifest_path, f"not an {FORMAT} manifest with split {self.split!r}")
        self.k = int(self.manifest["k"])
        self.vocab_size = int(self.manifest["vocab_size"])
        info = self.manifest["splits"][self.split]
        self._files = [path / f["file"] for f in info.get("files", [])]
        self._shards: list[np.ndarray | None] = [None] * len(self._files)
        self._index = np.load(path / "index.npy", mmap_mode="r")
        self.lengths = np.asarray(self._index["length"], dtype=np.int64)
        self._id_offsets = np.load(path / "ids.offsets.npy", mmap_mode="r")
        self._ids_handle = None
        self._ids_pid = None

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def _shard(self, number: int) -> np.ndarray:
        shard = self._shards[number]
        if shard is None:
            shard = self._shards[number] = np.load(self._files[number], mmap_mode="r")
        return shard

    def tokens(self, i: int) -> np.ndarray:
        """Token ids of record ``i``: int64 array of shape (lengths[i],)."""
        shard, offset, length = self._index[i]
        return np.asarray(self._shard(int(shard))[int(offset):int(offset) + int(length)], dtype=np.int64)

    def record_id(self, i: int) -> str:
        """The FASTA id of record ``i`` (windows carry ``/start-end``)."""
        if self._ids_handle is None or self._ids_pid != os.getpid():
            self._ids_handle = open(self.path / "ids.txt", "rb")
            self._ids_pid = os.getpid()
        start, end = int(self._id_offsets[i]), int(self._id_offsets[i + 1])
        self._ids_handle.seek(start)
        return self._ids_handle.read(end - start - 1).decode()

    def sequence(self, i: int) -> str:
        """Nucleotides of record ``i`` rebuilt from its tokens (``tokenizer.decode``)."""
        return decode(self.tokens(i), self.k)

    def __getitem__(self, i: int) -> np.ndarray:
        """``tokens(i)``: lets a DataLoader use the corpus as a map-style dataset."""
        return self.tokens(i)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_ids_handle"] = None
        state["_shards"] = [None] * len(self._files)
        return state
