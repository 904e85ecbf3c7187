"""Reader of miRNA-target pair tables: our TSV and the published headerless ``.txt``, one reader.

Two layouts are read, told apart by the first non-blank line:
- a table with a header holding ``mirna_seq_3to5`` or ``mirna_seq`` (5'->3'), ``target_seq``
  and ``label`` (optional: ``mirna_id``, ``target_id``, ``split``, ...), as in
  resources/mirna_target/;
- the published 5-column layout without header: miRNA id, miRNA written 3'->5', target id,
  target site, label (``data_DeepMirTar_*_3folds*.txt``, read by the published ``rri.py``).

Columns are tab-separated, comma-separated for a ``.csv`` name. The published code reverses the
stored 3'->5' miRNA, so the model reads the miRNA 5'->3'. When a table has both miRNA columns
they must be each other's reverse.

Row selection: ``select`` keeps the rows whose ``split`` column equals it (the config's
``{path: table, split: value}``); without it every row is read.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from rnaret.io.errors import InputError
from rnaret.io.text import text_lines

_ALLOWED = set("ACGTUNacgtun")
_HEADER_COLUMNS = {"target_seq", "label", "mirna_seq", "mirna_seq_3to5"}


@dataclass(frozen=True)
class PairRow:
    """One miRNA-target pair: ``mirna`` 5'->3' and ``site`` as written (U or T), label 0/1."""

    line: int
    mirna_id: str
    mirna: str
    target_id: str
    site: str
    label: int


def delimiter_of(path) -> str:
    """',' for a ``.csv`` name (optionally ``.gz``), else a tab (``.tsv``, the published ``.txt``)."""
    return "," if Path(path).name.lower().removesuffix(".gz").endswith(".csv") else "\t"


def mirna_table_layout(fields: list[str]) -> str | None:
    """The layout whose first line ``fields`` are: "header" (names a miRNA-table column),
    "published" (5 fields, the last a 0/1 label), or None (no miRNA-target table)."""
    fields = [f.strip() for f in fields]
    if _HEADER_COLUMNS & set(fields):
        return "header"
    if len(fields) == 5 and fields[4] in ("0", "1"):
        return "published"
    return None


def is_mirna_table(path) -> bool:
    """True when the first non-blank line of a tab/comma-separated file reads as a miRNA-target
    table (:func:`mirna_table_layout`); only that line is read. ``InputError`` as the text layer
    gives it for a file it cannot read."""
    for _, line in text_lines(path):
        if line.strip():
            try:
                fields = next(csv.reader([line.rstrip("\n")], delimiter=delimiter_of(path)))
            except csv.Error:
                return False
            return mirna_table_layout(fields) is not None
    return False


def table_lines(path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank lines of a tab- or comma-separated file (see
    :func:`delimiter_of`), read through the text layer; ``InputError`` for what csv refuses."""
    path = os.fspath(path)
    delimiter = delimiter_of(path)
    out = []
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            fields = next(csv.reader([line.rstrip("\n")], delimiter=delimiter))
        except csv.Error as exc:
            raise InputError(path, f"not a readable table: {exc}", line=number) from None
        out.append((number, fields))
    return out


def _check_sequence(path, line: int, record: str, name: str, seq: str) -> str:
    seq = seq.strip()
    if not seq:
        raise InputError(path, f"empty {name}", record=record, line=line)
    bad = set(seq) - _ALLOWED
    if bad:
        letters = "".join(sorted(bad))
        raise InputError(path, f"{name} holds letters that are not nucleotides: {letters[:20]!r}",
                         record=record, line=line)
    return seq


def _label(path, line: int, record: str, text: str) -> int:
    text = text.strip()
    if text not in ("0", "1"):
        raise InputError(path, f"label must be 0 or 1, got {text[:20]!r}", record=record, line=line)
    return int(text)


def read_pair_table(path, select: str | None = None) -> list[PairRow]:
    """Read a pair table -> rows in file order (see the module docstring for layouts and
    ``select``). Raises ``InputError`` naming the file and line for a missing, empty or
    unreadable file, a header and no rows, rows with more or fewer columns than the first,
    empty or non-nucleotide sequences, labels other than 0/1, and a split the table lacks."""
    path = os.fspath(path)
    lines = table_lines(path)
    if not lines:
        raise InputError(path, "no rows (the file holds only blank lines)")
    first_line, first = lines[0]
    layout = mirna_table_layout(first)
    if layout == "header":
        rows, splits = _read_with_header(path, [c.strip() for c in first], lines[1:])
    elif layout == "published":
        rows, splits = _read_published(path, lines), None
    else:
        raise InputError(path, "neither a table with a header naming target_seq and label nor the "
                               "published 5-column layout (id, miRNA 3'->5', id, site, label)", line=first_line)
    if select is not None:
        if splits is None:
            raise InputError(path, f"cannot select split {select!r}: the table has no 'split' column")
        values = sorted(set(splits))
        if select not in values:
            raise InputError(path, f"no row has split {select!r} (the split column holds {values[:10]})")
        rows = [r for r, s in zip(rows, splits) if s == select]
    if not rows:
        raise InputError(path, "no rows (only the header line)" if layout == "header" else "no rows")
    return rows


def _read_with_header(path, header: list[str], body) -> tuple[list[PairRow], list[str] | None]:
    column = {name: i for i, name in enumerate(header)}
    for needed in ("target_seq", "label"):
        if needed not in column:
            raise InputError(path, f"missing column {needed!r} (columns: {header[:12]})", line=1)
    if "mirna_seq_3to5" not in column and "mirna_seq" not in column:
        raise InputError(path, f"missing column 'mirna_seq_3to5' or 'mirna_seq' (columns: {header[:12]})", line=1)
    rows, splits = [], ([] if "split" in column else None)
    for number, fields in body:
        if len(fields) != len(header):
            raise InputError(path, f"expected {len(header)} columns as in the header, got {len(fields)}",
                             line=number)
        get = lambda name: fields[column[name]].strip() if name in column else ""  # noqa: E731
        record = get("mirna_id") or f"row {number}"
        if "mirna_seq_3to5" in column:
            mirna = _check_sequence(path, number, record, "mirna_seq_3to5", get("mirna_seq_3to5"))[::-1]
            if "mirna_seq" in column and get("mirna_seq").upper() != mirna.upper():
                raise InputError(path, "mirna_seq is not the reverse of mirna_seq_3to5", record=record, line=number)
        else:
            mirna = _check_sequence(path, number, record, "mirna_seq", get("mirna_seq"))
        site = _check_sequence(path, number, record, "target_seq", get("target_seq"))
        rows.append(PairRow(number, record, mirna, get("target_id"), site, _label(path, number, record, get("label"))))
        if splits is not None:
            splits.append(get("split"))
    return rows, splits


def _read_published(path, lines) -> list[PairRow]:
    rows = []
    for number, fields in lines:
        if len(fields) != 5:
            raise InputError(path, f"expected 5 tab-separated columns, got {len(fields)}", line=number)
        record = fields[0].strip() or f"row {number}"
        mirna = _check_sequence(path, number, record, "miRNA", fields[1])[::-1]  # stored 3'->5'
        site = _check_sequence(path, number, record, "target site", fields[3])
        rows.append(PairRow(number, record, mirna, fields[2].strip(), site, _label(path, number, record, fields[4])))
    return rows
