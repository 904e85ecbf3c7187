"""The sequences of the config's downstream datasets (``datasets:`` in config.yaml).

Their resolution (config entries and the dataset sheet -> local files and row selections:
``SplitSource``, ``split_sources``) is ``rnaret.settings.datasets``, re-exported here.

Layout (DESIGN.md contract)::

    datasets:
      <task>:                       # interaction | structure | coding
        <name>:
          train: <split source>
          valid: <split source>
          test:  <split source>
          finetuned_on: <other name>  # optional, for a test-only dataset

A split source is a path or URL (format from the extension: ``.csv``/``.tsv`` tables,
``.fa``/``.fasta``/``.fna`` (optionally ``.gz``), ``.dbn``, ``.ct``, a folder of ``.bpseq``/``.ct``
files), or a mapping ``{path: <table>, split: <value>}`` meaning the rows of that table whose
``split`` column equals ``<value>`` (one table holding several splits).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Iterator

from rnaret.io.errors import InputError
from rnaret.io.fasta import read_fasta
from rnaret.settings.datasets import SPLITS, SplitSource, split_sources  # noqa: F401  (resolution)

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz")
_SEQ_COLUMN = re.compile(r"^(sequence|seq|.+_seq)$")


def dataset_format(path) -> str:
    """'table', 'fasta', 'dbn', 'ct', 'bpseq' or 'structure_dir' (a folder of .bpseq/.ct files),
    from a path's extension; ``InputError`` for anything else."""
    text = str(path).lower()
    if os.path.isdir(path):
        return "structure_dir"
    if text.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        return "table"
    if text.endswith(FASTA_SUFFIXES):
        return "fasta"
    if text.endswith(".dbn"):
        return "dbn"
    if text.endswith(".ct"):
        return "ct"
    if text.endswith(".bpseq"):
        return "bpseq"
    raise InputError(path, "unknown dataset format (expected .csv, .tsv, .fa[.gz], .dbn, .ct, "
                           ".bpseq or a folder of .bpseq/.ct files)")


def read_table_rows(path, row_split: str | None = None) -> Iterator[dict]:
    """Rows of a CSV/TSV table as dicts; only those whose ``split`` column equals ``row_split``
    when given. Raises ``InputError`` when the table has no ``split`` column but one is asked."""
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    delimiter = "\t" if ".tsv" in str(path).lower() else ","
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if not reader.fieldnames:
            raise InputError(path, "empty table (no header)")
        if row_split is not None and "split" not in reader.fieldnames:
            raise InputError(path, f"rows of split {row_split!r} asked for, but the table has no "
                                   f"'split' column")
        for row in reader:
            if row_split is None or row.get("split") == row_split:
                yield row


def sequence_columns(fieldnames) -> list[str]:
    """Columns of a table that hold sequences: ``sequence``/``seq`` or names ending in ``_seq``
    (so ``mirna_seq`` and ``target_seq``, not the reversed ``mirna_seq_3to5``)."""
    return [name for name in fieldnames if _SEQ_COLUMN.match(name)]


def iter_sequences(source: SplitSource | str, row_split: str | None = None) -> Iterator[tuple[str, str]]:
    """(record, sequence) pairs of one split source, in file order.

    Tables give every sequence column of the selected rows (record = 'line N:column');
    FASTA gives transcripts; .dbn/.ct/.bpseq give the structure's sequence.
    """
    if isinstance(source, SplitSource):
        path, row_split = source.path, source.row_split
    else:
        path = source
    if not os.path.exists(path):
        raise InputError(path, "dataset file not found")
    kind = dataset_format(path)
    if kind == "table":
        line = 1
        columns = None
        for row in read_table_rows(path, row_split):
            line += 1
            if columns is None:
                columns = sequence_columns(row.keys())
                if not columns:
                    raise InputError(path, f"no sequence column (expected 'sequence' or *_seq) "
                                           f"among {list(row.keys())}")
            for column in columns:
                if row[column]:
                    yield f"row {line}:{column}", row[column]
    elif kind == "fasta":
        for record in read_fasta(path, duplicate_ids="ignore"):
            yield record.id, record.sequence
    elif kind == "dbn":
        yield from _dbn_sequences(path)
    elif kind in ("bpseq", "ct"):
        yield Path(path).stem, _pair_table_sequence(path, kind)
    else:
        for child in sorted(Path(path).iterdir()):
            if child.suffix.lower() in (".bpseq", ".ct"):
                yield child.stem, _pair_table_sequence(child, child.suffix.lower()[1:])


def _dbn_sequences(path) -> Iterator[tuple[str, str]]:
    """Dot-bracket files: '>id', sequence, structure lines per record."""
    with open(path, encoding="utf-8") as handle:
        record, expect_seq = None, False
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text:
                continue
            if text.startswith(">"):
                record, expect_seq = text[1:].split(None, 1)[0] if text[1:].strip() else f"line {number}", True
            elif expect_seq:
                yield record or f"line {number}", text
                expect_seq = False
    if record is None:
        raise InputError(path, "no '>' records in the dot-bracket file")


def _pair_table_sequence(path, kind: str) -> str:
    """The sequence column of a .bpseq (``i base j``) or .ct (header, then ``i base ...``) file."""
    letters = []
    header_pending = kind == "ct"  # a CT file starts with '<length> <title>'
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if header_pending:
                header_pending = False
                continue
            if len(parts) < 3 or not parts[0].isdigit():
                raise InputError(path, f"expected 'index base pair' columns, got {line.strip()!r}",
                                 line=number)
            letters.append(parts[1])
    if not letters:
        raise InputError(path, "no nucleotides in the file")
    return "".join(letters)


def normalized(sequence: str) -> str:
    """The comparison key of leakage checks: upper case, U read as T."""
    return sequence.upper().replace("U", "T")
