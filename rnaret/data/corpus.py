"""Corpus FASTA helpers: validation + U→T normalisation (before seqkit), counts, FASTA writing.

seqkit ``rmdup -s -i`` ignores case but not U/T, so every U is written as T (u as t) first;
headers are kept verbatim. Streaming: memory is constant except for 8 bytes per record used
to find duplicate ids (a 64-bit hash per id, sorted once at the end).
"""
from __future__ import annotations

import gzip
import io
import hashlib
import json
from array import array
from collections import Counter
from contextlib import contextmanager

import numpy as np

from rnaret.data.progress import progress
from rnaret.io.atomic import atomic_open, atomic_path
from rnaret.io.fasta import read_fasta

_U_TO_T = str.maketrans("Uu", "Tt")
ACGT = frozenset("ACGTacgt")


def id_hash(record_id: str) -> int:
    """A stable 64-bit hash of an id (blake2b), used for duplicate detection and splits."""
    return int.from_bytes(hashlib.blake2b(record_id.encode(), digest_size=8).digest(), "little")


@contextmanager
def fasta_writer(path, compresslevel: int = 1):
    """Open ``path`` for writing FASTA text atomically; gzip when it ends with ``.gz``."""
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            # level 1: the intermediates are large and short-lived; speed matters more than size.
            # No name and mtime 0 in the gzip header: identical runs give identical bytes.
            raw = open(tmp, "wb")
            handle = io.TextIOWrapper(
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=compresslevel),
                encoding="utf-8")
        else:
            # UTF-8: headers may hold any text the reader accepted (sequences are ASCII letters)
            raw, handle = None, open(tmp, "w", encoding="utf-8")
        try:
            with handle:
                yield handle
        finally:
            if raw is not None:
                raw.close()


def write_counts(path, counts: dict) -> None:
    """Write a stage's counts as JSON (atomically)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(counts, handle, indent=2, sort_keys=False)
        handle.write("\n")


def normalize_corpus(source, output, counts_path=None, *, show_progress: bool = True) -> dict:
    """Validate ``source`` FASTA (plain/gz) and write it to ``output`` with U→T, headers kept.

    Raises ``InputError`` (file, record, line) on the bad inputs ``read_fasta`` rejects;
    duplicate ids are counted and reported (with up to 10 examples), not fatal.
    Returns the counts dict (records, nucleotides, records with U, non-ACGTU letters, duplicate ids).
    """
    letters: Counter = Counter()
    hashes = array("Q")
    n = nt = n_with_u = n_non_acgtu_records = 0
    with fasta_writer(output) as out:
        for record in progress(read_fasta(source, duplicate_ids="ignore"), desc="normalize",
                               disable=not show_progress):
            seq = record.sequence
            n += 1
            nt += len(seq)
            if "U" in seq or "u" in seq:
                n_with_u += 1
                seq = seq.translate(_U_TO_T)
            if not ACGT.issuperset(seq):
                n_non_acgtu_records += 1
                letters.update(c for c in seq.upper() if c not in "ACGT")
            hashes.append(id_hash(record.id))
            out.write(f">{record.description}\n{seq}\n")
    duplicate_ids, examples = _duplicate_ids(hashes, output)
    counts = {
        "stage": "normalize",
        "source": str(source),
        "records_in": n,
        "records_out": n,
        "nucleotides_in": nt,
        "nucleotides_out": nt,
        "records_with_U": n_with_u,
        "records_with_non_ACGTU": n_non_acgtu_records,
        "non_ACGTU_letters": dict(sorted(letters.items())),
        "duplicate_ids": duplicate_ids,
        "duplicate_id_examples": examples,
    }
    if duplicate_ids:
        print(f"normalize: {source}: {duplicate_ids} records reuse an earlier id, e.g. {examples}; "
              f"kept (dedupe works on sequences)", flush=True)
    if counts_path is not None:
        write_counts(counts_path, counts)
    return counts


def _duplicate_ids(hashes: array, written) -> tuple[int, list[str]]:
    """Count records whose id hash was seen before; name up to 10 of them from ``written``."""
    if len(hashes) < 2:
        return 0, []
    values = np.sort(np.frombuffer(hashes, dtype=np.uint64))
    repeated = values[1:] == values[:-1]
    count = int(repeated.sum())
    if not count:
        return 0, []
    dup_hashes = set(values[1:][repeated].tolist())
    examples: list[str] = []
    for record in read_fasta(written, duplicate_ids="ignore", check_letters=False):
        if id_hash(record.id) in dup_hashes and record.id not in examples:
            examples.append(record.id)
            if len(examples) == 10:
                break
    return count, examples
