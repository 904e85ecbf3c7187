"""Drop every corpus record that holds a sequence of a downstream validation or test split.

Two passes over the corpus, both streaming:

1. identity (cheap, exact): a record whose sequence equals a split sequence after upper-casing
   and reading U as T is removed; the others are written to MMseqs2's search file;
2. similarity (``rnaret.data.similarity``): every split sequence is searched in the remaining
   records; a record is removed when one alignment has identity >= ``min_identity``, covers
   >= ``min_test_coverage`` of the split sequence and is significant against the whole corpus
   (E-value <= ``max_evalue``). This catches a test sequence contained in a longer record, a
   record holding it with a few mismatches, and close homologues.

Outputs: the filtered FASTA; a table with one row per split (``TABLE_COLUMNS``) and a last
``all all all`` row counting each removed record once; the hits (``HIT_COLUMNS``: every
significant alignment of a split sequence in a record the identity pass kept, best per record
and split sequence, ``removed`` saying whether it passed the thresholds); the stage counts as
JSON with the thresholds, the MMseqs2 version and its options.
"""
from __future__ import annotations

import gzip
import io
from array import array
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from rnaret.data.corpus import fasta_writer, write_counts
from rnaret.data.progress import progress
from rnaret.data.sequence_key import normalized
from rnaret.data.similarity import Hit, Thresholds, best_per_test, group_by_searched, search, \
    workspace, write_search_fasta
from rnaret.io.atomic import atomic_open, atomic_path
from rnaret.io.dataset_readers import iter_sequences
from rnaret.io.fasta import read_fasta
from rnaret.settings.dataset_sources import SplitSource

TABLE_COLUMNS = ("task", "dataset", "split", "sequences", "unique_sequences", "identical_in_corpus",
                 "similar_in_corpus", "in_corpus", "corpus_records_identical",
                 "corpus_records_similar", "corpus_records_removed")
HIT_COLUMNS = ("corpus_record", "test_record", "splits", "identity", "test_coverage",
               "corpus_coverage", "aligned_length", "mismatches", "gap_opens", "corpus_start",
               "corpus_end", "test_start", "test_end", "corpus_length", "test_length", "bits",
               "evalue", "removed")


@dataclass
class SplitSequences:
    """The unique (normalised) sequences of the checked splits and where each comes from."""

    sources: list[SplitSource]
    sequences: list[str] = field(default_factory=list)        # unique, normalised
    members: list[int] = field(default_factory=list)          # bit mask of splits, per sequence
    first_record: list[str] = field(default_factory=list)     # 'task/dataset/split:record'
    index: dict[str, int] = field(default_factory=dict)       # sequence -> position
    rows: list[dict] = field(default_factory=list)            # one stats row per split

    @classmethod
    def load(cls, sources: list[SplitSource]) -> "SplitSequences":
        """Read every split (any format ``iter_sequences`` reads)."""
        if len(sources) > 63:
            raise ValueError(f"{len(sources)} splits to check; at most 63 are supported")
        out = cls(sources)
        for bit, source in enumerate(sources):
            n = 0
            seen = set()
            for record, sequence in iter_sequences(source.path, source.row_split, task=source.task):
                n += 1
                key = normalized(sequence)
                if not key:
                    continue
                seen.add(key)
                position = out.index.get(key)
                if position is None:
                    position = out.index[key] = len(out.sequences)
                    out.sequences.append(key)
                    out.members.append(0)
                    out.first_record.append(f"{source.label}:{record}")
                out.members[position] |= 1 << bit
            out.rows.append({"task": source.task, "dataset": source.dataset, "split": source.split,
                             "sequences": n, "unique_sequences": len(seen)})
        return out

    def labels(self, mask: int) -> list[str]:
        """The 'task/dataset/split' labels of the splits in a bit mask."""
        return [s.label for bit, s in enumerate(self.sources) if mask >> bit & 1]


def remove_leakage(source, output, sources: list[SplitSource], table_path, counts_path=None, *,
                   hits_path=None, thresholds: Thresholds = Thresholds(), threads: int = 1,
                   memory_mb: int | None = None, tmp_dir=None, mmseqs: str | None = None,
                   show_progress: bool = True, log=None) -> dict:
    """Stream ``source`` FASTA to ``output`` without the records holding a sequence of ``sources``.

    Writes the per-split table (TSV) to ``table_path``, the hits (TSV, gzip when the name ends
    in .gz) to ``hits_path`` and the stage counts (JSON) to ``counts_path``; returns the counts.
    ``threads``/``memory_mb``/``tmp_dir``/``mmseqs``: MMseqs2's threads, memory per split,
    scratch directory (it holds one plain copy of the corpus) and binary; ``log``: a text handle
    for MMseqs2's own output. Raises ``rnaret.data.similarity.MMseqsError`` when MMseqs2 is
    missing or fails.
    """
    splits = SplitSequences.load(sources)
    identical_masks = array("Q")                     # per record: splits it equals (0: none), 8 B each
    identical_tests = np.zeros(len(splits.sequences), dtype=bool)
    size = {"records": 0, "nucleotides": 0, "identical_nucleotides": 0}

    def not_identical():
        """Pass 1: records identical to a split sequence are removed here and not searched."""
        for ordinal, record in enumerate(progress(read_fasta(source, duplicate_ids="ignore"),
                                                  desc="leakage identity", disable=not show_progress)):
            size["records"] += 1
            size["nucleotides"] += len(record.sequence)
            position = splits.index.get(normalized(record.sequence))
            if position is None:
                identical_masks.append(0)
                yield ordinal, record.sequence
            else:
                identical_masks.append(splits.members[position])
                identical_tests[position] = True
                size["identical_nucleotides"] += len(record.sequence)

    with workspace(tmp_dir) as work:
        searched_fasta = work / "corpus.fa"
        write_search_fasta(searched_fasta, not_identical())
        corpus_nt = size["nucleotides"]
        hits, ran = search(searched_fasta, splits.sequences, work, thresholds=thresholds,
                            searched_nucleotides=corpus_nt, threads=threads, memory_mb=memory_mb,
                            binary=mmseqs, log=log)
        identical_masks = np.frombuffer(identical_masks, dtype=np.uint64)
        similar_masks = np.zeros(len(identical_masks), dtype=np.uint64)
        similar_tests = np.zeros(len(splits.sequences), dtype=bool)
        grouped = group_by_searched(hits)
        pending = next(grouped, None)
        n_out = nt_out = 0
        # pass 2: the hits come in record order, like the corpus: decide and write each record
        with fasta_writer(output) as out, _hits_writer(hits_path) as hit_out:
            for ordinal, record in enumerate(progress(read_fasta(source, duplicate_ids="ignore"),
                                                      desc="leakage similarity",
                                                      disable=not show_progress)):
                mask = 0
                if pending is not None and pending[0] == ordinal:
                    for hit in best_per_test(pending[1]):
                        passed = thresholds.passes(hit, corpus_nt)
                        if passed:
                            mask |= splits.members[hit.test]
                            similar_tests[hit.test] = True
                        if hit_out is not None and hit.evalue(corpus_nt) <= thresholds.max_evalue:
                            hit_out.write("\t".join(_hit_row(record.id, hit, splits, passed, corpus_nt)) + "\n")
                    pending = next(grouped, None)
                similar_masks[ordinal] = mask
                if identical_masks[ordinal] or mask:
                    continue
                n_out += 1
                nt_out += len(record.sequence)
                out.write(f">{record.description}\n{record.sequence}\n")
            if pending is not None:
                raise RuntimeError(f"{source}: hits for record {pending[0]}, beyond the "
                                   f"{len(identical_masks)} records read again (file changed?)")
    rows = _table_rows(splits, identical_masks, similar_masks, identical_tests, similar_tests)
    with atomic_open(table_path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(TABLE_COLUMNS) + "\n")
        for row in rows:
            handle.write("\t".join(str(row[c]) for c in TABLE_COLUMNS) + "\n")
    n_in = size["records"]
    counts = {"stage": "leakage", "records_in": n_in, "records_out": n_out,
              "nucleotides_in": corpus_nt, "nucleotides_out": nt_out,
              "records_removed": n_in - n_out,
              "records_removed_identical": int(np.count_nonzero(identical_masks)),
              "records_removed_similar": int(np.count_nonzero((similar_masks != 0) & (identical_masks == 0))),
              "nucleotides_removed_identical": size["identical_nucleotides"],
              "splits_checked": [s.label for s in sources],
              "per_split": {f"{r['task']}/{r['dataset']}/{r['split']}":
                            {"identical": r["corpus_records_identical"], "similar": r["corpus_records_similar"]}
                            for r in rows[:-1]},
              "thresholds": ran.thresholds,
              "mmseqs": {"version": ran.version, "classes": ran.classes}}
    if counts_path is not None:
        write_counts(counts_path, counts)
    return counts


def _bit_counts(masks: np.ndarray, n_splits: int) -> list[int]:
    """How many entries of ``masks`` (uint64 bit masks) hold each split's bit."""
    return [int(np.count_nonzero((masks >> np.uint64(bit)) & np.uint64(1))) for bit in range(n_splits)]


def _table_rows(splits: SplitSequences, identical_masks, similar_masks, identical_tests,
                similar_tests) -> list[dict]:
    """The per-split rows and the ``all`` row (each record and split sequence counted once)."""
    n = len(splits.sources)
    members = np.asarray(splits.members, dtype=np.uint64)
    similar_only = np.where(identical_masks == 0, similar_masks, np.uint64(0))
    found = identical_tests | similar_tests
    columns = {
        "identical_in_corpus": _bit_counts(members[identical_tests], n),
        "similar_in_corpus": _bit_counts(members[similar_tests], n),
        "in_corpus": _bit_counts(members[found], n),
        "corpus_records_identical": _bit_counts(identical_masks, n),
        "corpus_records_similar": _bit_counts(similar_only, n),
        "corpus_records_removed": _bit_counts(identical_masks | similar_only, n),
    }
    rows = []
    for bit, row in enumerate(splits.rows):
        rows.append({**row, **{key: values[bit] for key, values in columns.items()}})
    rows.append({"task": "all", "dataset": "all", "split": "all",
                 "sequences": sum(r["sequences"] for r in splits.rows),
                 "unique_sequences": len(splits.sequences),
                 "identical_in_corpus": int(identical_tests.sum()),
                 "similar_in_corpus": int(similar_tests.sum()), "in_corpus": int(found.sum()),
                 "corpus_records_identical": int(np.count_nonzero(identical_masks)),
                 "corpus_records_similar": int(np.count_nonzero(similar_only)),
                 "corpus_records_removed": int(np.count_nonzero(identical_masks | similar_only))})
    return rows


def _hit_row(corpus_id: str, hit: Hit, splits: SplitSequences, removed: bool, corpus_nt: int) -> list[str]:
    """One line of the hits table (``HIT_COLUMNS``)."""
    return [corpus_id, splits.first_record[hit.test], ",".join(splits.labels(splits.members[hit.test])),
            f"{hit.identity:.3f}", f"{hit.test_coverage:.3f}", f"{hit.searched_coverage:.3f}",
            str(hit.aligned_length), str(hit.mismatches), str(hit.gap_opens), str(hit.searched_start),
            str(hit.searched_end), str(hit.test_start), str(hit.test_end), str(hit.searched_length),
            str(hit.test_length), f"{hit.bits:g}", f"{hit.evalue(corpus_nt):.3g}",
            "yes" if removed else "no"]


@contextmanager
def _hits_writer(path):
    """A text handle for the hits table at ``path`` (header written; gzip when the name ends
    in .gz), renamed into place only on success; yields None when ``path`` is None."""
    if path is None:
        yield None
        return
    with atomic_path(path, suffix=".gz" if str(path).endswith(".gz") else ".tsv") as tmp:
        raw = open(tmp, "wb")
        try:
            binary = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) \
                if str(path).endswith(".gz") else raw
            with io.TextIOWrapper(binary, encoding="utf-8") as handle:
                handle.write("\t".join(HIT_COLUMNS) + "\n")
                yield handle
        finally:
            raw.close()
