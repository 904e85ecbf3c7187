"""RNA secondary structures: dot-bracket, .dbn, .bpseq, .ct and structure tables.

Every reader yields ``StructureRecord(id, sequence, pairs)`` where ``pairs`` is a sorted list of
1-based ``(i, j)`` with ``i < j`` and no base in two pairs, and raises ``InputError`` naming the
file, the record and what is wrong. ``read_structures(path)`` picks the reader from the path:

| path | reader |
|---|---|
| folder of ``*.bpseq`` (or ``*.ct``) | walked recursively (RNAStrAlign is nested by family), files in sorted relative-path order, id = the relative path without the suffix (the stem in a flat folder); see :func:`structure_files` |
| ``.csv`` / ``.tsv`` | table with ``id, sequence`` and ``structure`` and/or ``base_pairs`` |
| ``.dbn`` / ``.db`` / ``.dot`` | 3-line records ``>id``, sequence, dot-bracket (bpRNA ``#Name:`` too) |
| ``.bpseq`` | one record, id = file stem |
| ``.ct`` | one or more CT records |

each optionally gzipped (``.gz``). Sequences are kept as written (case included: bpRNA has
lower-case letters); consumers that check pairing rules uppercase them.

Dot-bracket: ``()`` is the nested page, ``[]``, ``{}``, ``<>`` and then ``Aa`` .. ``Zz`` (upper
case opens, lower case closes) are further pseudoknot pages. ``.`` marks an unpaired base
(``-``, ``_``, ``,`` and ``:`` are accepted as well). Writing pairs as dot-bracket assigns each
pair, in 5'->3' order of its opening base, the lowest page on which it crosses no pair already
placed (greedy page assignment), so nested structures use ``()`` only.
"""
from __future__ import annotations

import csv
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from rnaret.io.atomic import atomic_open
from rnaret.io.errors import InputError
from rnaret.io.text import text_lines

# page k uses BRACKETS[k]; letters follow the four bracket kinds (bpRNA/.dbn convention)
BRACKETS: tuple[tuple[str, str], ...] = (("(", ")"), ("[", "]"), ("{", "}"), ("<", ">")) + tuple(
    (chr(c), chr(c).lower()) for c in range(ord("A"), ord("Z") + 1))
_OPEN = {o: k for k, (o, _) in enumerate(BRACKETS)}
_CLOSE = {c: k for k, (_, c) in enumerate(BRACKETS)}
UNPAIRED = ".-_,:"

TABLE_EXTENSIONS = (".csv", ".tsv")
DBN_EXTENSIONS = (".dbn", ".db", ".dot")
_SEQUENCE_OK = re.compile(r"[A-Za-z]+")

Pair = tuple[int, int]


@dataclass
class StructureRecord:
    """One RNA with its secondary structure.

    ``pairs``: sorted list of 1-based ``(i, j)``, ``i < j``, each base in at most one pair.
    """

    id: str
    sequence: str
    pairs: list[Pair] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sequence)

    @property
    def dot_bracket(self) -> str:
        """The structure as dot-bracket (greedy page assignment, see module doc)."""
        return pairs_to_dot_bracket(self.pairs, len(self.sequence))


# --------------------------------------------------------------------------- pairs and brackets

def check_pairs(pairs: Iterable[Sequence[int]], n: int, *, path=None, record: str | None = None,
                line: int | None = None) -> list[Pair]:
    """Validate 1-based pairs for a sequence of length ``n``; return them sorted, ``i < j``.

    Accepts either orientation; the same pair listed twice (e.g. ``[1, 9]`` and ``[9, 1]``) is
    kept once. Raises ``InputError`` for non-integers, positions outside 1..n, a base paired
    with itself and a base in two different pairs (naming ``line`` of ``path`` when given).
    """
    partner: dict[int, int] = {}
    out: set[Pair] = set()
    for raw in pairs:
        if not isinstance(raw, (list, tuple)) or len(raw) != 2:
            raise InputError(path, f"a base pair must be two positions, got {_clip(raw)}", record=record,
                             line=line)
        a, b = raw
        if isinstance(a, bool) or isinstance(b, bool) or not all(
                isinstance(x, (int, np.integer)) for x in (a, b)):
            raise InputError(path, f"base pair {_clip(list(raw))} is not two integers", record=record, line=line)
        a, b = int(a), int(b)
        if not (1 <= a <= n and 1 <= b <= n):
            raise InputError(path, f"base pair ({a}, {b}) is outside positions 1..{n}", record=record, line=line)
        if a == b:
            raise InputError(path, f"base {a} is paired with itself", record=record, line=line)
        i, j = min(a, b), max(a, b)
        for x, y in ((i, j), (j, i)):
            if partner.get(x, y) != y:
                raise InputError(path, f"base {x} is paired twice (with {partner[x]} and {y})",
                                 record=record, line=line)
            partner[x] = y
        out.add((i, j))
    return sorted(out)


def parse_dot_bracket(structure: str, *, path=None, record: str | None = None,
                      line: int | None = None) -> list[Pair]:
    """Dot-bracket string -> sorted 1-based pairs ``(i, j)``, ``i < j``.

    Raises ``InputError`` for an unknown character, a closing bracket with nothing of its kind
    open (naming the open bracket of another kind it meets, as in ``(]``) and an opening
    bracket never closed, each naming the 1-based position (and ``line`` of ``path`` if given).
    """
    stacks: list[list[int]] = [[] for _ in BRACKETS]
    pairs: list[Pair] = []
    for pos, ch in enumerate(structure, start=1):
        if ch in UNPAIRED:
            continue
        if ch in _OPEN:
            stacks[_OPEN[ch]].append(pos)
        elif ch in _CLOSE:
            stack = stacks[_CLOSE[ch]]
            if not stack:
                still_open = max(((s[-1], k) for k, s in enumerate(stacks) if s), default=None)
                what = f"unbalanced brackets: {ch!r} at position {pos} closes nothing"
                if still_open is not None:
                    what = (f"mismatched brackets: {ch!r} at position {pos} closes nothing; the open "
                            f"bracket before it is {BRACKETS[still_open[1]][0]!r} at position {still_open[0]}")
                raise InputError(path, what, record=record, line=line)
            pairs.append((stack.pop(), pos))
        else:
            raise InputError(path, f"{ch!r} at position {pos} is not a dot-bracket character",
                             record=record, line=line)
    for k, stack in enumerate(stacks):
        if stack:
            raise InputError(path, f"unbalanced brackets: {BRACKETS[k][0]!r} at position {stack[-1]} "
                                   f"is never closed", record=record, line=line)
    pairs.sort()
    return pairs


def pairs_to_dot_bracket(pairs: Iterable[Sequence[int]], n: int, *, path=None,
                         record: str | None = None) -> str:
    """Sorted or unsorted 1-based pairs -> dot-bracket string of length ``n``.

    Greedy page assignment: pairs in order of their opening base each go to the lowest page on
    which they cross nothing placed before. Raises ``InputError`` for invalid pairs or when more
    than ``len(BRACKETS)`` (30) pages would be needed.
    """
    pairs = check_pairs(pairs, n, path=path, record=record)
    chars = ["."] * n
    # per page: stack of closing positions of pairs still open at the current opening base;
    # pages are nested, so the innermost open pair has the smallest closing position
    open_ends: list[list[int]] = []
    for i, j in pairs:
        for page, ends in enumerate(open_ends):
            while ends and ends[-1] < i:
                ends.pop()
            if not ends or ends[-1] > j:
                break
        else:
            page = len(open_ends)
            if page >= len(BRACKETS):
                raise InputError(path, f"dot-bracket cannot hold these {len(pairs)} base pairs: they need more "
                                       f"than its {len(BRACKETS)} bracket pages ((), [], {{}}, <>, Aa..Zz); "
                                       f"write .ct or .bpseq, which hold every pair", record=record)
            open_ends.append([])
        open_ends[page].append(j)
        chars[i - 1], chars[j - 1] = BRACKETS[page]
    return "".join(chars)


def crossing_pairs(pairs: Sequence[Sequence[int]]) -> list[Pair]:
    """The pseudoknotted pairs: those that cross at least one other pair of the same structure.

    ``(i, j)`` and ``(k, l)`` cross when ``i < k < j < l``. Input: pairs with ``i < j``; output
    sorted. Vectorised: O(P^2) memory for P pairs (fine for thousands of pairs).
    """
    if len(pairs) < 2:
        return []
    arr = np.asarray(pairs, dtype=np.int64)
    i, j = arr[:, 0][:, None], arr[:, 1][:, None]
    k, l = arr[:, 0][None, :], arr[:, 1][None, :]
    cross = ((i < k) & (k < j) & (j < l)) | ((k < i) & (i < l) & (l < j))
    hit = cross.any(axis=1)
    return sorted((int(a), int(b)) for a, b in arr[hit])


def pairs_to_matrix(pairs: Iterable[Sequence[int]], n: int, *, as_torch: bool = False, dtype=None):
    """1-based pairs -> symmetric ``(n, n)`` 0/1 contact matrix (numpy, or torch if ``as_torch``).

    ``dtype`` defaults to float32. Entry ``[i-1, j-1]`` and ``[j-1, i-1]`` are 1 for each pair.
    """
    idx = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2) - 1
    if as_torch:
        import torch

        mat = torch.zeros((n, n), dtype=dtype or torch.float32)
        if len(idx):
            t = torch.from_numpy(idx)
            mat[t[:, 0], t[:, 1]] = 1
            mat[t[:, 1], t[:, 0]] = 1
        return mat
    mat = np.zeros((n, n), dtype=dtype or np.float32)
    if len(idx):
        mat[idx[:, 0], idx[:, 1]] = 1
        mat[idx[:, 1], idx[:, 0]] = 1
    return mat


def matrix_to_pairs(matrix) -> list[Pair]:
    """Symmetric ``(n, n)`` 0/1 (or boolean) matrix, numpy or torch -> sorted 1-based pairs.

    Reads the upper triangle (nonzero = paired). Raises ``ValueError`` when the matrix is not
    square and symmetric or a base has more than one partner (decode probabilities first).
    """
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    mat = np.asarray(matrix) != 0
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {mat.shape}")
    if not np.array_equal(mat, mat.T):
        raise ValueError("the contact matrix is not symmetric")
    if np.diag(mat).any():
        raise ValueError("the contact matrix pairs a base with itself")
    degree = mat.sum(axis=1)
    if (degree > 1).any():
        base = int(np.argmax(degree > 1)) + 1
        raise ValueError(f"base {base} has {int(degree[base - 1])} partners in the contact matrix")
    ii, jj = np.nonzero(np.triu(mat, k=1))
    return [(int(a) + 1, int(b) + 1) for a, b in zip(ii, jj)]


def _clip(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so messages stay readable on garbage input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_sequence(sequence: str, *, path, record, line: int | None = None) -> None:
    if not sequence:
        raise InputError(path, "empty sequence", record=record, line=line)
    if not _SEQUENCE_OK.fullmatch(sequence):
        bad = re.search(r"[^A-Za-z]", sequence)
        raise InputError(path, f"{bad.group()!r} at position {bad.start() + 1} of the sequence is "
                               f"not a letter", record=record, line=line)


def record_from_dot_bracket(id: str, sequence: str, structure: str, *, path=None, line: int | None = None,
                            structure_line: int | None = None) -> StructureRecord:
    """Build a ``StructureRecord`` from a sequence and its dot-bracket, checking both lengths.

    ``line`` / ``structure_line``: where the sequence / the structure stand in ``path`` (named
    in errors; ``structure_line`` defaults to ``line``).
    """
    structure_line = structure_line if structure_line is not None else line
    _check_sequence(sequence, path=path, record=id, line=line)
    if len(structure) != len(sequence):
        raise InputError(path, f"length mismatch: sequence has {len(sequence)} nt, structure "
                               f"{len(structure)} characters", record=id, line=structure_line)
    return StructureRecord(id, sequence, parse_dot_bracket(structure, path=path, record=id, line=structure_line))


# --------------------------------------------------------------------------- readers

def _lines(path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) of a plain or gzipped text file, after the
    checks of :func:`rnaret.io.text.text_lines` (missing, folder, unreadable, empty, not UTF-8,
    binary, truncated gzip)."""
    for number, line in text_lines(path):
        yield number, line.rstrip("\n")


def _stem(path) -> str:
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[0] if "." in name else name


def _is_base(letter: str) -> bool:
    # one ASCII letter: what every consumer (tokenizer, pairing rules, writers) can handle
    return len(letter) == 1 and letter.isascii() and letter.isalpha()


def read_dbn(path) -> Iterator[StructureRecord]:
    """Yield the records of a dot-bracket file.

    Format: ``>id`` (first word), then the sequence line, then the structure line (anything after
    whitespace on it, e.g. an RNAfold energy ``(-3.40)``, is ignored); blank lines between
    records are skipped. bpRNA's layout (``#Name: id`` header, other ``#`` lines ignored) is read
    too. Raises ``InputError`` for missing lines, length mismatch, bad brackets, duplicate ids.
    """
    path = os.fspath(path)
    seen: set[str] = set()
    header: tuple[int, str] | None = None
    body: list[tuple[int, str]] = []
    n = 0

    def finish():
        line, rec_id = header
        if len(body) != 2:
            raise InputError(path, f"a record needs a sequence line and a structure line, found "
                                   f"{len(body)} line(s)", record=rec_id, line=line)
        if rec_id in seen:
            raise InputError(path, "duplicate id (ids must be unique)", record=rec_id, line=line)
        seen.add(rec_id)
        (sequence_line, sequence), (structure_line, structure) = body
        return record_from_dot_bracket(rec_id, sequence, structure.split()[0], path=path, line=sequence_line,
                                       structure_line=structure_line)

    for number, line in _lines(path):
        stripped = line.strip()
        if stripped.startswith(">") or stripped.startswith("#Name:"):
            if header is not None:
                n += 1
                yield finish()
            rec_id = stripped[1:] if stripped.startswith(">") else stripped[len("#Name:"):]
            rec_id = rec_id.split()[0] if rec_id.split() else ""
            if not rec_id:
                raise InputError(path, "a header with no id", line=number)
            header, body = (number, rec_id), []
        elif not stripped or stripped.startswith("#"):
            continue
        elif header is None:
            raise InputError(path, f"text before the first '>' header: {stripped[:40]!r}", line=number)
        else:
            body.append((number, stripped))
    if header is not None:
        n += 1
        yield finish()
    if n == 0:
        raise InputError(path, "no dot-bracket records (no '>' header line)")


def _ints(fields: list[str], *, path, record, line) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise InputError(path, f"expected integers, got {_clip(' '.join(fields))}", record=record,
                         line=line) from None


def _pairs_from_partners(partner: list[int], *, path, record, lines: list[int]) -> list[Pair]:
    """partner[i-1] = j (0 = unpaired) -> pairs, checking range and symmetry."""
    n = len(partner)
    pairs = []
    for i, j in enumerate(partner, start=1):
        if j == 0:
            continue
        if not 1 <= j <= n:
            raise InputError(path, f"base {i} has partner {j} outside 1..{n}", record=record,
                             line=lines[i - 1])
        if j == i:
            raise InputError(path, f"base {i} is paired with itself", record=record, line=lines[i - 1])
        if partner[j - 1] != i:
            raise InputError(path, f"not symmetric: base {i} pairs with {j} but base {j} pairs with "
                                   f"{partner[j - 1] or 'nothing'}", record=record, line=lines[i - 1])
        if i < j:
            pairs.append((i, j))
    return pairs


def read_bpseq(path, record_id: str | None = None) -> StructureRecord:
    """Read one ``.bpseq`` file (``i base j`` per line, ``j = 0`` when unpaired); id =
    ``record_id`` or the file stem.

    Header lines before the first numbered line (``Filename:``, ``Organism:`` ... as in CRW
    files) and ``#`` lines are skipped. Raises ``InputError`` for an empty file, a file without
    numbered lines, bad numbers, positions not 1, 2, 3 ..., partners out of range, a
    non-symmetric pairing and a base that is not one letter.
    """
    path = os.fspath(path)
    rec_id = record_id or _stem(path)
    bases: list[str] = []
    partner: list[int] = []
    lines: list[int] = []
    for number, line in _lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not bases and not fields[0].lstrip("-").isdigit():
            continue  # free-text header before the table
        if len(fields) != 3:
            raise InputError(path, f"expected 3 columns 'i base j', got {len(fields)}: {_clip(line.strip())}",
                             record=rec_id, line=number)
        i, j = _ints([fields[0], fields[2]], path=path, record=rec_id, line=number)
        _add_base((bases, partner, lines), i, fields[1], j, path=path, record=rec_id, line=number)
    if not bases:
        raise InputError(path, "no 'i base j' lines", record=rec_id)
    pairs = _pairs_from_partners(partner, path=path, record=rec_id, lines=lines)
    return StructureRecord(rec_id, "".join(bases), pairs)


def _add_base(columns: tuple[list, list, list], i: int, base: str, j: int, *, path, record, line: int) -> None:
    """Append a table line's base, partner ``j`` (0: unpaired) and line number to ``columns``
    (bases, partners, line numbers of the record read so far); InputError when ``i`` is not the
    next position or ``base`` is not one letter."""
    bases, partner, lines = columns
    if i != len(bases) + 1:
        raise InputError(path, f"position {i} where {len(bases) + 1} was expected", record=record, line=line)
    if not _is_base(base):
        raise InputError(path, f"base {_clip(base)} is not one letter", record=record, line=line)
    bases.append(base)
    partner.append(j)
    lines.append(line)


def _ct_title(rest: str) -> str:
    """The record name in a CT header after the length: drops an 'ENERGY = x' / 'dG = x' part."""
    rest = re.sub(r"^\s*(ENERGY|dG)\s*=\s*\S+\s*", "", rest, flags=re.IGNORECASE)
    return rest.split()[0] if rest.split() else ""


def _is_ct_base_line(fields: list[str], position: int) -> bool:
    """True when ``fields`` read as the CT line of base ``position`` (``i base i-1 i+1 j i``)."""
    if len(fields) != 6 or fields[0] != str(position) or not _is_base(fields[1]):
        return False
    return all(f.lstrip("-").isdigit() for f in fields[2:])


def read_ct(path, name: str | None = None) -> Iterator[StructureRecord]:
    """Yield the records of a connectivity table (``.ct``) file.

    Each record: a header ``N  name`` (an ``ENERGY = x`` before the name is skipped; no name ->
    file stem, numbered from the second record on), then N lines ``i base i-1 i+1 j i``; column 5
    is the partner (0 = unpaired). ``name``: name the records ``name``, ``name_2``, ... instead
    (headers' names ignored; the folder reader uses the file's path). Raises ``InputError`` for
    a bad header, bad numbers, too few columns, positions out of order, partners out of range,
    non-symmetric pairing, a record with fewer or more base lines than its header's length, and
    duplicate names.
    """
    path = os.fspath(path)
    stem = name or _stem(path)
    seen: set[str] = set()
    state = None  # (name, n, header line, bases, partners, lines) of the record being read
    last: tuple[str, int] | None = None  # (name, n) of the last record read
    n_records = 0

    def finish(st):
        rec_name, _, line, bases, partner, lines = st
        if rec_name in seen:
            raise InputError(path, "duplicate record name (names must be unique)", record=rec_name, line=line)
        seen.add(rec_name)
        return StructureRecord(rec_name, "".join(bases),
                               _pairs_from_partners(partner, path=path, record=rec_name, lines=lines))

    for number, line in _lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if state is None:
            if last is not None and _is_ct_base_line(fields, last[1] + 1):
                raise InputError(path, f"the record goes on past the {last[1]} nt its header gives "
                                       f"(this line is base {last[1] + 1})", record=last[0], line=number)
            try:
                n = int(fields[0])
            except ValueError:
                raise InputError(path, f"a CT header must start with the sequence length, got "
                                       f"{_clip(line.strip()[:40])}", line=number) from None
            if n <= 0:
                raise InputError(path, f"a CT header gives length {n}", line=number)
            if name is not None:
                rec_name = name if n_records == 0 else f"{name}_{n_records + 1}"
            else:
                rec_name = _ct_title(line.strip()[len(fields[0]):]) or (
                    stem if n_records == 0 else f"{stem}_{n_records + 1}")
            state = (rec_name, n, number, [], [], [])
            continue
        rec_name, n, _, bases, partner, lines = state
        if len(fields) < 5:
            # a length and a title (not the next base with columns missing): the next header
            if fields[0].isdigit() and (len(fields) == 1 or not _is_base(fields[1])
                                        or int(fields[0]) != len(bases) + 1):
                raise InputError(path, f"the record ends after {len(bases)} of the {n} nt its header gives "
                                       f"(this line reads as the next header)", record=rec_name, line=number)
            raise InputError(path, f"expected 6 columns 'i base i-1 i+1 j i', got {len(fields)}",
                             record=rec_name, line=number)
        i, _, _, j = _ints([fields[0], fields[2], fields[3], fields[4]], path=path, record=rec_name,
                           line=number)
        _add_base((bases, partner, lines), i, fields[1], j, path=path, record=rec_name, line=number)
        if len(bases) == n:
            n_records += 1
            last = (rec_name, n)
            yield finish(state)
            state = None
    if state is not None:
        raise InputError(path, f"truncated record: header says {state[1]} nt, found {len(state[3])} "
                               f"lines", record=state[0], line=state[2])
    if n_records == 0:
        raise InputError(path, "no CT records")


def _table_rows(path, delimiter: str):
    """(reader, rows) of a CSV/TSV file read through the text layer; csv's own errors (a NUL
    byte, a field over csv's size limit) become ``InputError`` naming the line."""
    reader = csv.DictReader((line for _, line in _lines(path)), delimiter=delimiter)

    def rows():
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(path, f"not a readable table: {exc}", line=reader.line_num) from None
            yield row

    try:
        columns = [c.strip() for c in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise InputError(path, f"not a readable table: {exc}", line=reader.line_num) from None
    reader.fieldnames = columns
    return reader, columns, rows()


def _parse_base_pairs(text: str, *, path, record, line):
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(path, "base_pairs is nested too deeply to be a list of pairs", record=record,
                         line=line) from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer too long to convert
        raise InputError(path, f"base_pairs is not JSON ({getattr(exc, 'msg', exc)})", record=record,
                         line=line) from None


def read_structure_table(path, split: str | None = None) -> Iterator[StructureRecord]:
    """Yield the rows of a CSV/TSV structure table (delimiter from the extension).

    Columns: ``id``, ``sequence`` and ``structure`` (dot-bracket) and/or ``base_pairs`` (JSON list
    of 1-based ``[i, j]``); a non-empty ``base_pairs`` wins over ``structure`` (docs/inputs.md),
    which is then not read at all. Other columns are ignored, except ``split`` when ``split`` is
    given: only rows whose ``split`` column equals it are read (the config's
    ``{path: table, split: value}`` entries). Raises ``InputError`` for missing columns, rows
    with more or fewer fields than the header, bad JSON, invalid pairs, bad brackets, length
    mismatch, duplicate ids, a header and no (selected) rows.
    """
    path = os.fspath(path)
    name = Path(path).name.lower().removesuffix(".gz")
    delimiter = "\t" if name.endswith(".tsv") else ","
    seen: set[str] = set()
    reader, columns, rows = _table_rows(path, delimiter)
    missing = [c for c in ("id", "sequence") if c not in columns]
    if missing or not ({"structure", "base_pairs"} & set(columns)):
        want = missing + ([] if {"structure", "base_pairs"} & set(columns) else ["structure or base_pairs"])
        found = ", ".join(columns)[:200] or "none"
        raise InputError(path, f"missing column(s) {', '.join(want)}; found {found}", line=1)
    if split is not None and "split" not in columns:
        raise InputError(path, f"rows of split {split!r} were asked for but the table has no 'split' column")
    n = 0
    for row in rows:
        line = reader.line_num
        if None in row:
            raise InputError(path, f"more fields than the header's {len(columns)} columns", line=line)
        if None in row.values():
            given = sum(value is not None for value in row.values())
            raise InputError(path, f"fewer fields ({given}) than the header's {len(columns)} columns", line=line)
        if split is not None and row["split"].strip() != split:
            continue
        rec_id = row["id"].strip()
        if not rec_id:
            raise InputError(path, "empty id", line=line)
        if rec_id in seen:
            raise InputError(path, "duplicate id (ids must be unique)", record=rec_id, line=line)
        seen.add(rec_id)
        sequence = row["sequence"].strip()
        _check_sequence(sequence, path=path, record=rec_id, line=line)
        raw_pairs = (row.get("base_pairs") or "").strip()
        if raw_pairs:
            parsed = _parse_base_pairs(raw_pairs, path=path, record=rec_id, line=line)
            if not isinstance(parsed, list):
                raise InputError(path, "base_pairs must be a JSON list of [i, j] pairs", record=rec_id, line=line)
            pairs = check_pairs(parsed, len(sequence), path=path, record=rec_id, line=line)
            yield StructureRecord(rec_id, sequence, pairs)
        else:
            structure = (row.get("structure") or "").strip()
            if not structure:
                raise InputError(path, "neither structure nor base_pairs given", record=rec_id, line=line)
            yield record_from_dot_bracket(rec_id, sequence, structure, path=path, line=line)
        n += 1
    if n == 0:
        raise InputError(path, "the table has no rows" + (f" of split {split!r}" if split is not None else ""))


STRUCTURE_FILE_SUFFIXES = {"bpseq": (".bpseq", ".bpseq.gz"), "ct": (".ct", ".ct.gz")}


def structure_files(folder) -> tuple[str, list[tuple[str, Path]]]:
    """The structure files under ``folder``, walked recursively -> (kind, [(record id, file)]).

    ``kind`` is "bpseq" when the tree holds any ``.bpseq`` file (what the published ``ssp.py``
    reads), else "ct" (a warning names the ``.ct`` files left aside when both are there). Files
    come in the order of their relative paths, compared part by part (the published reader
    takes ``os.walk``'s order, which is the order a file system happens to list entries and
    differs between machines; sorted paths give every machine the same examples in the same
    order). The id of a file's record is its relative path without the suffix (``/``-separated;
    the file stem in a flat folder). Names starting with '.' (hidden files, macOS ``._*``
    companions in archives) are skipped; symbolic links to folders are not followed. Raises
    ``InputError`` for a folder that cannot be listed and one without structure files.
    """
    folder = Path(folder)

    def refuse(exc: OSError):
        raise InputError(exc.filename or folder, f"cannot list the folder: {exc.strerror or exc}")

    found: dict[str, list[Path]] = {"bpseq": [], "ct": []}
    for root, dirs, files in os.walk(folder, onerror=refuse):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for file_name in files:
            lower = file_name.lower()
            for kind, suffixes in STRUCTURE_FILE_SUFFIXES.items():
                if not file_name.startswith(".") and lower.endswith(suffixes):
                    found[kind].append(Path(root, file_name))
    kind = "bpseq" if found["bpseq"] else "ct"
    if not found[kind]:
        raise InputError(folder, "the folder (and its subfolders) holds no .bpseq or .ct files")
    if kind == "bpseq" and found["ct"]:
        warnings.warn(f"{folder}: {len(found['ct'])} .ct file(s) left aside: the folder holds .bpseq files, "
                      f"which are read instead", stacklevel=3)
    out = []
    for file in sorted(found[kind], key=lambda p: p.relative_to(folder).parts):
        relative = file.relative_to(folder).as_posix()
        # the longest suffix that fits: ".bpseq.gz" before ".bpseq"
        suffix = max((s for s in STRUCTURE_FILE_SUFFIXES[kind] if relative.lower().endswith(s)), key=len)
        out.append((relative[: -len(suffix)], file))
    return kind, out


def read_structure_folder(path) -> Iterator[StructureRecord]:
    """Yield the records of the ``.bpseq`` (or ``.ct``) files under a folder, walked
    recursively in sorted relative-path order, ids from the files' relative paths (see
    :func:`structure_files`). Raises ``InputError`` for a folder without such files and for
    the bad contents each file reader refuses."""
    kind, files = structure_files(path)
    seen: dict[str, Path] = {}
    for rec_id, file in files:
        records = [read_bpseq(file, rec_id)] if kind == "bpseq" else read_ct(file, name=rec_id)
        for rec in records:
            if rec.id in seen:
                raise InputError(file, f"record id {rec.id!r} is also the id of a record of {seen[rec.id]}")
            seen[rec.id] = file
            yield rec


@dataclass
class PublishedRead:
    """What the published ``ssp.py`` makes of one ``.bpseq`` file (see :func:`read_bpseq_published`).

    ``status``: "ok", "unreadable" (the script's parser fails on it, or it holds no line) or
    "too_long" (more than ``max_len`` nt). ``record``: the sequence and the paired cells of the
    script's map as 1-based ``(i, j)``, ``i <= j`` (None unless "ok"); ``reason``: why not ok.
    """

    status: str
    record: StructureRecord | None = None
    reason: str = ""


def read_bpseq_published(path, max_len: int, record_id: str | None = None) -> PublishedRead:
    """One ``.bpseq`` file read as the published ``ssp.py`` reads it, with its silent skips
    made explicit (the caller counts them).

    Every line must be exactly ``i base j`` with integer ``i`` and ``j`` (a header line, a blank
    line or a file that is not text makes the file unreadable); the bases are concatenated; each
    ``j != 0`` marks cells ``(i, j)`` and ``(j, i)`` of a ``max_len`` x ``max_len`` map with
    numpy's indexing (so a position past ``max_len`` makes the file unreadable, and position 0
    counts from the end, as in the script), which is then cut to the sequence's length. A
    sequence longer than ``max_len`` is "too_long" (whether the script fails on its map or
    checks its length first). An empty file (the script would then fail
    on an empty input) is "unreadable". No pair check beyond that: the map keeps what the file
    says (a self-pair, a base in two pairs).
    """
    path = os.fspath(path)
    rec_id = record_id or _stem(path)
    bases, links = [], []
    try:
        with open(path) as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                if len(fields) != 3:
                    return PublishedRead("unreadable", reason=f"line {number}: {len(fields)} fields, not 3")
                bases.append(fields[1])
                links.append((int(fields[0]) - 1, int(fields[2]) - 1))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return PublishedRead("unreadable", reason=f"{type(exc).__name__}: {exc}")
    sequence = "".join(bases)
    if not sequence:
        return PublishedRead("unreadable", reason="no line")
    # the script fails on a long record's first position past max_len, or reads it and then
    # drops the record for its length: left out either way, counted here as too long
    if len(sequence) > max_len:
        return PublishedRead("too_long", reason=f"{len(sequence)} nt > max_len {max_len}")
    matrix = np.zeros((max_len, max_len), dtype=np.int8)
    try:
        for i, j in links:
            if j != -1:
                matrix[i, j] = 1
                matrix[j, i] = 1
    except IndexError as exc:
        return PublishedRead("unreadable", reason=f"IndexError: {exc}")
    cells = np.argwhere(np.triu(matrix[: len(sequence), : len(sequence)]))
    pairs = [(int(a) + 1, int(b) + 1) for a, b in cells]
    return PublishedRead("ok", StructureRecord(rec_id, sequence, pairs))


def published_bpseq_files(folder) -> tuple[list[tuple[str, Path]], int]:
    """The files the published ``ssp.py`` reads under ``folder``: every file whose name ends
    ``.bpseq`` (case-sensitive, hidden ones included, nested folders walked, links to folders
    not followed) -> ([(record id, file)] in sorted relative-path order, the number of other
    files left aside). Ids as :func:`structure_files` gives them."""
    folder = Path(folder)
    found, other = [], 0
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".bpseq"):
                found.append(Path(root, name))
            else:
                other += 1
    found.sort(key=lambda p: p.relative_to(folder).parts)
    return [(f.relative_to(folder).as_posix()[: -len(".bpseq")], f) for f in found], other


def structure_format(path) -> str | None:
    """The structure format a path names: "structure_folder" (a folder), "structure_table"
    (``.csv``/``.tsv``), "dbn" (``.dbn``/``.db``/``.dot``), "bpseq" or "ct" (each optionally
    ``.gz``); None for any other name."""
    if os.path.isdir(path):
        return "structure_folder"
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(TABLE_EXTENSIONS):
        return "structure_table"
    if name.endswith(DBN_EXTENSIONS):
        return "dbn"
    if name.endswith(".bpseq"):
        return "bpseq"
    if name.endswith(".ct"):
        return "ct"
    return None


def read_structures(path, split: str | None = None) -> Iterator[StructureRecord]:
    """Yield ``StructureRecord``s from any supported path (see the module doc for the formats).

    ``split``: keep only the rows of a table whose ``split`` column equals it (tables only).
    Raises ``InputError`` for a missing path or an extension that names no structure format.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "no such file or folder")
    kind = structure_format(path)
    if split is not None and kind != "structure_table":
        raise InputError(path, f"a split ({split!r}) can only be selected from a .csv/.tsv table")
    if kind == "structure_folder":
        return read_structure_folder(path)
    if kind == "structure_table":
        return read_structure_table(path, split)
    if kind == "dbn":
        return read_dbn(path)
    if kind == "bpseq":
        return iter([read_bpseq(path)])
    if kind == "ct":
        return read_ct(path)
    raise InputError(path, "unknown structure format: expected .csv, .tsv, .dbn, .bpseq, .ct or a "
                           "folder of .bpseq/.ct files")


# --------------------------------------------------------------------------- writers

def format_bpseq(record: StructureRecord) -> str:
    """One record as ``.bpseq`` text (``i base j`` lines, ``j = 0`` when unpaired)."""
    partner = _partner_list(record)
    return "".join(f"{i} {b} {partner[i - 1]}\n" for i, b in enumerate(record.sequence, start=1))


def format_ct(record: StructureRecord) -> str:
    """One record as CT text: header ``N  id``, then ``i base i-1 i+1 j i`` (next = 0 at the end)."""
    n = len(record.sequence)
    partner = _partner_list(record)
    out = [f"{n}\t{record.id}\n"]
    for i, b in enumerate(record.sequence, start=1):
        out.append(f"{i}\t{b}\t{i - 1}\t{i + 1 if i < n else 0}\t{partner[i - 1]}\t{i}\n")
    return "".join(out)


def format_dbn(record: StructureRecord) -> str:
    """One record as a 3-line ``.dbn`` entry."""
    return f">{record.id}\n{record.sequence}\n{record.dot_bracket}\n"


def _partner_list(record: StructureRecord) -> list[int]:
    partner = [0] * len(record.sequence)
    for i, j in check_pairs(record.pairs, len(record.sequence), record=record.id):
        partner[i - 1], partner[j - 1] = j, i
    return partner


def _write_records(records: Iterable[StructureRecord], path, format_record) -> int:
    """Write ``format_record(record)`` of each record to one file (atomically); returns the
    number written."""
    n = 0
    with atomic_open(path) as handle:
        for rec in records:
            handle.write(format_record(rec))
            n += 1
    return n


def write_dbn(records: Iterable[StructureRecord], path) -> int:
    """Write records as 3-line ``.dbn`` (atomically); returns the number written."""
    return _write_records(records, path, format_dbn)


def write_bpseq(record: StructureRecord, path) -> None:
    """Write one record as a ``.bpseq`` file (atomically)."""
    with atomic_open(path) as handle:
        handle.write(format_bpseq(record))


def write_bpseq_folder(records: Iterable[StructureRecord], path) -> int:
    """Write one ``{id}.bpseq`` per record into folder ``path`` (each file atomically)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for rec in records:
        if "/" in rec.id or rec.id in (".", ".."):
            raise InputError(None, "the id cannot be used as a file name", record=rec.id)
        write_bpseq(rec, folder / f"{rec.id}.bpseq")
        n += 1
    return n


def write_ct(records: Iterable[StructureRecord], path) -> int:
    """Write records as one CT file (atomically); returns the number written."""
    return _write_records(records, path, format_ct)


def write_structure_table(records: Iterable[StructureRecord], path) -> int:
    """Write a structure table (``id, sequence, structure, base_pairs``; TSV when ``path`` ends
    in ``.tsv``, else CSV) atomically; returns the number of rows."""
    delimiter = "\t" if os.fspath(path).lower().endswith(".tsv") else ","
    n = 0
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(["id", "sequence", "structure", "base_pairs"])
        for rec in records:
            writer.writerow([rec.id, rec.sequence, rec.dot_bracket,
                             json.dumps([list(p) for p in rec.pairs])])
            n += 1
    return n
