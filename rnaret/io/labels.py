"""Labelled sequences for the generic tasks: one reader per format, and the label parsers.

Two formats, one record type (:class:`LabelRecord`):

- a label table (``.tsv``, ``.csv``, optionally gzipped): a header naming ``sequence`` and
  ``label`` (``id`` and ``split`` optional; other columns ignored), one sequence a row
  (:func:`read_label_table`);
- a FASTA of the sequences with the labels in a side table (``id``, ``label``, optional
  ``split``): every FASTA record needs exactly one label row and every label row a FASTA record
  (:func:`read_fasta_labels`).

A label is kept as written; :func:`class_label`, :func:`number_label` and
:func:`position_labels` turn it into what a task trains on, with errors naming the file holding
the label, its line and the record:

- sequence classification: any non-empty text (``ncRNA``, ``1``);
- sequence regression: a finite number;
- per-position labels: a JSON list with one entry per nucleotide (``null`` = unlabelled
  position), or, for classes, a string with one character per nucleotide (``..((..))..``,
  ``0011100``), or, for numbers, comma- or space-separated numbers (``NA`` = unlabelled).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnaret.io.errors import InputError
from rnaret.io.fasta import IUPAC_NUCLEOTIDES, read_fasta
from rnaret.io.mirna_table import table_lines

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
TABLE_SUFFIXES = (".tsv", ".csv")
_LETTERS = set(IUPAC_NUCLEOTIDES.replace("-", "").replace(".", "")) | set(
    IUPAC_NUCLEOTIDES.lower().replace("-", "").replace(".", ""))
_MISSING = ("", "na", "nan", "none", "null")


@dataclass(frozen=True)
class LabelRecord:
    """One labelled sequence: ``label`` as written, ``path``/``line`` where the label stands
    (the table row; for a FASTA, the side table's row) so that label errors point there."""

    id: str
    sequence: str
    label: str
    path: str
    line: int


def label_format(path) -> str:
    """``"table"`` (.tsv/.csv) or ``"fasta"`` (.fa/.fasta/.fna), each optionally ``.gz``;
    InputError for anything else."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    if name.endswith(FASTA_SUFFIXES):
        return "fasta"
    raise InputError(path, "a labelled dataset is a table (.tsv/.csv: id, sequence, label) or a FASTA "
                           "(.fa/.fasta/.fna) with a side table of labels (id, label)")


def read_labels(path, select: str | None = None, labels=None) -> list[LabelRecord]:
    """The labelled sequences of one split, by the path's format (:func:`label_format`).

    ``labels``: the side table of a FASTA (required for one, refused for a table); ``select``:
    keep the rows whose ``split`` column equals it (of the table, or of the side table).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    kind = label_format(path)
    if kind == "table":
        if labels is not None:
            raise InputError(labels, f"a side table of labels goes with a FASTA; {path} is a table "
                                     "with its own label column")
        return read_label_table(path, select)
    if labels is None:
        raise InputError(path, "a FASTA holds no labels: give a side table (id, label) with it "
                               "(--labels SPLIT=TABLE, or `labels:` in the dataset's split)")
    return read_fasta_labels(path, labels, select)


def _header(path, lines, needed: tuple[str, ...]) -> dict[str, int]:
    if not lines:
        raise InputError(path, "no rows (the file holds only blank lines)")
    number, fields = lines[0]
    header = [f.strip() for f in fields]
    column = {name: i for i, name in enumerate(header)}
    for name in needed:
        if name not in column:
            raise InputError(path, f"missing column {name!r} (the header names {header[:12]}; a label "
                                   f"table needs {', '.join(needed)})", line=number)
    if len(column) != len(header):
        duplicated = sorted({h for h in header if header.count(h) > 1})
        raise InputError(path, f"the header names {duplicated} twice", line=number)
    return column


def _rows(path, select: str | None, needed: tuple[str, ...]):
    """(line, id or None, fields getter) of the selected rows of a table with ``needed`` columns."""
    lines = table_lines(path)
    column = _header(path, lines, needed)
    if select is not None:
        if "split" not in column:
            raise InputError(path, f"cannot select split {select!r}: the table has no 'split' column", line=lines[0][0])
        values = sorted({fields[column["split"]].strip() for _, fields in lines[1:]
                         if len(fields) == len(column)})
        if select not in values:
            raise InputError(path, f"no row has split {select!r} (the split column holds {values[:10]})")
    out = []
    for number, fields in lines[1:]:
        if len(fields) != len(column):
            raise InputError(path, f"expected {len(column)} columns as in the header, got {len(fields)}",
                             line=number)
        get = (lambda f: lambda name: f[column[name]].strip() if name in column else "")(fields)
        if select is not None and get("split") != select:
            continue
        out.append((number, get))
    if not out:
        raise InputError(path, "no rows (only the header line)" if select is None else f"no rows of split {select!r}")
    return out


def _check_sequence(path, line: int, record: str, sequence: str) -> str:
    if not sequence:
        raise InputError(path, "empty sequence", record=record, line=line)
    bad = sorted(set(sequence) - _LETTERS)
    if bad:
        raise InputError(path, f"the sequence holds letters that are not IUPAC nucleotides: {''.join(bad)[:20]!r}",
                         record=record, line=line)
    return sequence


def _unique(path, line: int, record: str, seen: dict[str, int]) -> None:
    first = seen.setdefault(record, line)
    if first != line:
        raise InputError(path, f"duplicate id (first seen at line {first}; ids must be unique)",
                         record=record, line=line)


def read_label_table(path, select: str | None = None) -> list[LabelRecord]:
    """A label table (see the module docstring) -> records in file order. ``id`` defaults to
    ``line N``. InputError naming file and line: missing column, ragged row, empty or
    non-nucleotide sequence, empty label, duplicate id, a split the table lacks."""
    path = os.fspath(path)
    records, seen = [], {}
    for number, get in _rows(path, select, ("sequence", "label")):
        record = get("id") or f"line {number}"
        _unique(path, number, record, seen)
        sequence = _check_sequence(path, number, record, get("sequence"))
        label = get("label")
        if not label:
            raise InputError(path, "empty label", record=record, line=number)
        records.append(LabelRecord(record, sequence, label, path, number))
    return records


def read_fasta_labels(fasta, labels, select: str | None = None) -> list[LabelRecord]:
    """A FASTA and its side table of labels (``id``, ``label``, optional ``split``) -> records in
    FASTA order (with ``select``: the FASTA records whose label row has that split).

    InputError: a FASTA record without a label row (naming the record and its header line), a
    label row whose id is not in the FASTA (naming the side table's line), duplicate ids in
    either, and what the FASTA and table readers refuse.
    """
    fasta, labels = os.fspath(fasta), os.fspath(labels)
    by_id: dict[str, tuple[int, str]] = {}
    seen: dict[str, int] = {}
    all_ids: set[str] = set()
    if select is not None:
        for number, get in _rows(labels, None, ("id", "label")):
            all_ids.add(get("id"))
    for number, get in _rows(labels, select, ("id", "label")):
        record = get("id")
        if not record:
            raise InputError(labels, "empty id", line=number)
        _unique(labels, number, record, seen)
        if not get("label"):
            raise InputError(labels, "empty label", record=record, line=number)
        by_id[record] = (number, get("label"))
    records, found = [], set()
    for entry in read_fasta(fasta, allow_gaps=False):
        if entry.id not in by_id:
            if select is not None and entry.id in all_ids:
                continue  # labelled, in another split
            raise InputError(fasta, f"no label for this record in {labels}", record=entry.id, line=entry.line)
        number, label = by_id[entry.id]
        found.add(entry.id)
        records.append(LabelRecord(entry.id, entry.sequence, label, labels, number))
    for record, (number, _) in by_id.items():
        if record not in found:
            raise InputError(labels, f"no record with this id in {fasta}", record=record, line=number)
    return records


# -- labels -------------------------------------------------------------------------------

def class_label(record: LabelRecord) -> str:
    """The class of a sequence-level label (the text as written)."""
    return record.label


def number_label(record: LabelRecord) -> float:
    """A regression label as a finite float; InputError naming the label's file, line, record."""
    try:
        value = float(record.label)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(record.path, f"a regression label must be a finite number, got {record.label[:30]!r}",
                         record=record.id, line=record.line)
    return value


def _json_list(record: LabelRecord) -> list | None:
    if not record.label.startswith("["):
        return None
    try:
        value = json.loads(record.label)
    except ValueError as exc:
        raise InputError(record.path, f"per-position labels starting with '[' must be a JSON list ({exc})",
                         record=record.id, line=record.line) from None
    if not isinstance(value, list):
        raise InputError(record.path, "per-position labels must be a JSON list", record=record.id, line=record.line)
    return value


def position_labels(record: LabelRecord, numeric: bool) -> list[Any]:
    """Per-position labels, one per nucleotide of ``record.sequence`` (None = unlabelled):
    strings for classes, floats for numbers. InputError for the wrong count (naming both), a
    label that is not a number (numeric) and nested lists."""
    items = _json_list(record)
    if items is None:
        text = record.label
        items = [t for t in re.split(r"[,\s]+", text) if t] if numeric else list(text)
    out: list[Any] = []
    for position, item in enumerate(items, start=1):
        if item is None or (isinstance(item, str) and item.strip().lower() in _MISSING and numeric):
            out.append(None)
            continue
        if isinstance(item, (list, dict)):
            raise InputError(record.path, f"position {position}: a label must be a number or a string, got {item!r}",
                             record=record.id, line=record.line)
        if numeric:
            try:
                value = float(item)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise InputError(record.path, f"position {position}: a regression label must be a finite "
                                              f"number, got {str(item)[:30]!r}", record=record.id, line=record.line)
            out.append(value)
        else:
            out.append(str(item))
    if len(out) != len(record.sequence):
        raise InputError(record.path, f"{len(out)} per-position labels for a sequence of {len(record.sequence)} "
                                      "nucleotides (one label per nucleotide)", record=record.id, line=record.line)
    return out
