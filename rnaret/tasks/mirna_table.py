"""Reader of miRNA-target pair tables (the bundled DeepMirTar + miRAW TSVs, or the raw source files).

Two layouts are accepted:
- a TSV with a header holding ``mirna_seq_3to5`` or ``mirna_seq`` (5'->3'), ``target_seq`` and
  ``label`` (optional: ``mirna_id``, ``target_id``, ``split``, ...), as in resources/mirna_target/;
- the published 5-column file without header: miRNA id, miRNA written 3'->5', target id,
  target site, label (``data_DeepMirTar_*_3folds*.txt``, read by the published ``rri.py``).

The published code reverses the stored 3'->5' miRNA, so the model reads the miRNA 5'->3'.
When a table has both columns they must be each other's reverse.

Row selection: ``select`` keeps the rows whose ``split`` column equals it (the config's
``{path: table, split: value}``); without it every row is read.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from rnaret.io.errors import InputError
from rnaret.io.fasta import open_text

_ALLOWED = set("ACGTUNacgtun")


@dataclass(frozen=True)
class PairRow:
    """One miRNA-target pair: ``mirna`` 5'->3' and ``site`` as written (U or T), label 0/1."""

    line: int
    mirna_id: str
    mirna: str
    target_id: str
    site: str
    label: int


def _check_sequence(path, line: int, record: str, name: str, seq: str) -> str:
    seq = seq.strip()
    if not seq:
        raise InputError(path, f"empty {name}", record=record, line=line)
    bad = set(seq) - _ALLOWED
    if bad:
        raise InputError(path, f"{name} holds letters that are not nucleotides: {''.join(sorted(bad))!r}",
                         record=record, line=line)
    return seq


def _label(path, line: int, record: str, text: str) -> int:
    text = text.strip()
    if text not in ("0", "1"):
        raise InputError(path, f"label must be 0 or 1, got {text!r}", record=record, line=line)
    return int(text)


def read_pair_table(path, select: str | None = None) -> list[PairRow]:
    """Read a pair table -> rows in file order (see the module docstring for layouts and ``select``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise InputError(path, "the file is empty")
    with open_text(path) as handle:
        try:
            lines = list(csv.reader(handle, delimiter="\t"))
        except UnicodeDecodeError as exc:
            raise InputError(path, f"not a text table ({exc.reason})") from exc
    lines = [(number, row) for number, row in enumerate(lines, start=1) if row and any(c.strip() for c in row)]
    if not lines:
        raise InputError(path, "no rows")
    header = [c.strip() for c in lines[0][1]]
    if {"target_seq", "label", "mirna_seq", "mirna_seq_3to5"} & set(header):
        rows, splits = _read_with_header(path, header, lines[1:])
    elif len(header) == 5 and header[4].strip() in ("0", "1"):
        rows, splits = _read_published(path, lines), None
    else:
        raise InputError(path, "neither a table with a header naming target_seq and label nor the "
                               "published 5-column layout (id, miRNA 3'->5', id, site, label)", line=1)
    if select is not None:
        if splits is None:
            raise InputError(path, f"cannot select split {select!r}: the table has no 'split' column")
        values = sorted(set(splits))
        if select not in values:
            raise InputError(path, f"no row has split {select!r} (the split column holds {values})")
        rows = [r for r, s in zip(rows, splits) if s == select]
    if not rows:
        raise InputError(path, "no rows")
    return rows


def _read_with_header(path, header: list[str], body) -> tuple[list[PairRow], list[str] | None]:
    column = {name: i for i, name in enumerate(header)}
    for needed in ("target_seq", "label"):
        if needed not in column:
            raise InputError(path, f"missing column {needed!r} (columns: {header})", line=1)
    if "mirna_seq_3to5" not in column and "mirna_seq" not in column:
        raise InputError(path, f"missing column 'mirna_seq_3to5' or 'mirna_seq' (columns: {header})", line=1)
    rows, splits = [], ([] if "split" in column else None)
    for number, fields in body:
        if len(fields) != len(header):
            raise InputError(path, f"expected {len(header)} columns, got {len(fields)}", line=number)
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
