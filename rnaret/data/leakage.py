"""Drop every corpus sequence identical to a sequence of a downstream validation or test split.

Identity is exact after upper-casing and reading U as T. The downstream sequences are held in
memory (they are small); the corpus is streamed. The table written has one row per split:

    task  dataset  split  sequences  unique_sequences  found_in_corpus  corpus_records_removed

and a last row ``all all all`` whose ``corpus_records_removed`` counts each removed record once.
"""
from __future__ import annotations

from rnaret.data.corpus import fasta_writer, write_counts
from rnaret.data.datasets import SplitSource, normalized
from rnaret.data.progress import progress
from rnaret.io.atomic import atomic_open
from rnaret.io.datasets import iter_sequences
from rnaret.io.fasta import read_fasta

TABLE_COLUMNS = ("task", "dataset", "split", "sequences", "unique_sequences", "found_in_corpus",
                 "corpus_records_removed")


def load_split_keys(sources: list[SplitSource]) -> tuple[dict[str, list[int]], list[dict]]:
    """Map normalised sequence -> indices of the splits holding it; plus one stats row per split."""
    keys: dict[str, list[int]] = {}
    rows = []
    for index, source in enumerate(sources):
        n = 0
        unique = set()
        for _record, sequence in iter_sequences(source.path, source.row_split, task=source.task):
            n += 1
            unique.add(normalized(sequence))
        for key in unique:
            keys.setdefault(key, []).append(index)
        rows.append({"task": source.task, "dataset": source.dataset, "split": source.split,
                     "sequences": n, "unique_sequences": len(unique), "found_in_corpus": 0,
                     "corpus_records_removed": 0})
    return keys, rows


def remove_leakage(source, output, sources: list[SplitSource], table_path, counts_path=None, *,
                   show_progress: bool = True) -> dict:
    """Stream ``source`` FASTA to ``output`` without records whose sequence occurs in ``sources``.

    Writes the per-split table to ``table_path`` (TSV) and the stage counts (JSON) to
    ``counts_path``; returns the counts.
    """
    keys, rows = load_split_keys(sources)
    found: set[str] = set()
    n_in = nt_in = n_out = nt_out = 0
    with fasta_writer(output) as out:
        for record in progress(read_fasta(source, duplicate_ids="ignore"), desc="leakage",
                               disable=not show_progress):
            n_in += 1
            nt_in += len(record.sequence)
            key = normalized(record.sequence)
            hits = keys.get(key)
            if hits:
                for index in hits:
                    rows[index]["corpus_records_removed"] += 1
                found.add(key)
                continue
            n_out += 1
            nt_out += len(record.sequence)
            out.write(f">{record.description}\n{record.sequence}\n")
    for key in found:
        for index in keys[key]:
            rows[index]["found_in_corpus"] += 1
    total = {"task": "all", "dataset": "all", "split": "all",
             "sequences": sum(r["sequences"] for r in rows), "unique_sequences": len(keys),
             "found_in_corpus": len(found), "corpus_records_removed": n_in - n_out}
    with atomic_open(table_path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(TABLE_COLUMNS) + "\n")
        for row in rows + [total]:
            handle.write("\t".join(str(row[c]) for c in TABLE_COLUMNS) + "\n")
    counts = {"stage": "leakage", "records_in": n_in, "records_out": n_out,
              "nucleotides_in": nt_in, "nucleotides_out": nt_out,
              "records_removed": n_in - n_out, "splits_checked": [s.label for s in sources]}
    if counts_path is not None:
        write_counts(counts_path, counts)
    return counts
