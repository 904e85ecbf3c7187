"""Streaming FASTA reading (plain or gzip) with checks that name file, record, line and column.

Biopython's ``SimpleFastaParser`` does the parsing over :func:`rnaret.io.text.text_lines` (which
refuses folders, unreadable and empty files, bytes that are not UTF-8, NUL bytes and truncated
gzip streams, and reads any line ending); a thin wrapper around the lines remembers where each
record's header and sequence lines are, so that an error points at the line and column where
the offending letter stands. Nucleotide letters are the IUPAC codes (either case), U or T, and
the gap symbols '-' and '.'; anything else is an error.

The alphabet of every sequence a model reads (``rnaret fold``, ``embed``, ``classify``, the
fine-tuning data and the web page/API) is one policy, applied by :func:`read_sequences` for files
and :func:`check_sequence_letters` for strings given directly:
- A C G U and T, either case (T is read as U);
- the other IUPAC codes (N R Y S W K M B D H V) are accepted and kept: the tokenizer gives any
  k-mer holding one the UNK token, and a structure pairs them with nothing;
- the alignment gaps '-' and '.' are refused, naming the line and column where they stand (a
  model has no gap token: deleting them would shift every position after them, and keeping them
  would make up a letter); give the ungapped sequence;
- any other character is refused the same way.
"""
from __future__ import annotations

import os
import re
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Iterator

from Bio.SeqIO.FastaIO import SimpleFastaParser

from rnaret.io.errors import InputError
from rnaret.io.text import GZIP_MAGIC, is_gzip, open_text, text_lines  # noqa: F401  (re-exported)

IUPAC_NUCLEOTIDES = "ACGTUNRYSWKMBDHV-."
_BAD_LETTER = re.compile(f"[^{re.escape(IUPAC_NUCLEOTIDES + IUPAC_NUCLEOTIDES.lower())}]")
_NON_ACGTU = re.compile("[^ACGTUacgtu]")
_GAP = re.compile("[-.]")
# characters the parser and read_fasta drop from sequence lines (besides trailing white space)
_DROPPED = " \r\t"


@dataclass(frozen=True)
class FastaRecord:
    id: str           # first word of the header
    description: str  # the whole header line without '>'
    sequence: str     # as written, line breaks and spaces removed
    line: int         # 1-based line number of the header

    @property
    def n_non_acgtu(self) -> int:
        return len(_NON_ACGTU.findall(self.sequence))


class DuplicateIdWarning(UserWarning):
    """A FASTA id seen twice, when the caller asked for duplicates to be reported, not fatal."""


class _RecordLines:
    """Iterates a file's lines for the parser, noting each record's header and sequence lines.

    The parser reads one header ahead, so records are queued: at most two are held, each with
    references to its own sequence lines (no copy), which only an error message reads.
    """

    def __init__(self, path):
        self.path = path
        self.records: deque[tuple[int, list[tuple[int, str]]]] = deque()  # (header line, lines)
        self.first_content: tuple[int, str] | None = None
        self._lines = self._read()

    def __iter__(self):
        # the parser loops over the handle twice (up to the first header, then the rest): both
        # loops must share one position
        return self._lines

    def _read(self):
        last_id = None  # of the record being read: named when the text layer refuses a line
        try:
            for number, text in text_lines(self.path):
                if text.startswith(">"):
                    self.records.append((number, []))
                    last_id = text[1:].split(None, 1)[0] if text[1:].strip() else None
                elif self.records:
                    self.records[-1][1].append((number, text))
                elif text.strip() and self.first_content is None:
                    self.first_content = (number, text.strip())
                yield text
        except InputError as exc:
            if exc.record is None and last_id:
                raise InputError(exc.path, exc.what, record=last_id, line=exc.line, column=exc.column) from None
            raise


def _locate(lines: list[tuple[int, str]], position: int, header: int) -> tuple[int, int | None]:
    """(line, column) of the 0-based ``position`` of the record's sequence, whose ``lines`` are
    (number, text) as in the file: the letters are counted as the parser keeps them. Falls back
    to the header line (no column) should the counts ever disagree."""
    seen = 0
    for number, text in lines:
        for column, char in enumerate(text.rstrip(), start=1):
            if char in _DROPPED:
                continue
            if seen == position:
                return number, column
            seen += 1
    return header, None


def read_fasta(path, *, check_letters: bool = True, allow_empty_sequence: bool = False,
               duplicate_ids: str = "error", allow_gaps: bool = True) -> Iterator[FastaRecord]:
    """Yield the records of a FASTA file (plain or gzipped), streaming.

    Raises ``InputError`` for: a missing, unreadable or empty file, a folder, text before the
    first header, no records, a header with no id, a header with no sequence (unless
    ``allow_empty_sequence``), letters that are not IUPAC nucleotides (when ``check_letters``;
    the message names the line and column where the letter stands and its position in the
    record), alignment gaps '-' and '.' (when not ``allow_gaps``; named the same way), bytes
    that are not UTF-8, binary data, a truncated gzip, and duplicate ids.
    ``duplicate_ids``: "error" raises naming both lines; "warn" emits a ``DuplicateIdWarning``
    naming both lines and goes on; "ignore" keeps no id set (constant memory on huge files).
    Any line ending is accepted (``\\n``, ``\\r\\n``, ``\\r``).
    """
    if duplicate_ids not in ("error", "warn", "ignore"):
        raise ValueError(f"duplicate_ids must be 'error', 'warn' or 'ignore', got {duplicate_ids!r}")
    path = os.fspath(path)
    seen: dict[str, int] = {}  # id -> header line of its first occurrence
    n = 0
    lines = _RecordLines(path)
    for title, sequence in SimpleFastaParser(lines):
        if lines.first_content is not None:
            ln, text = lines.first_content
            raise InputError(path, f"text before the first '>' header: {text[:40]!r}", line=ln)
        line, sequence_lines = lines.records.popleft()
        rec_id = title.split(None, 1)[0] if title.strip() else ""
        if not rec_id:
            raise InputError(path, "a header with no id", line=line)
        sequence = sequence.replace("\t", "")
        if not sequence and not allow_empty_sequence:
            raise InputError(path, "the header has no sequence", record=rec_id, line=line)
        if check_letters:
            bad = _BAD_LETTER.search(sequence)
            if bad:
                at_line, column = _locate(sequence_lines, bad.start(), line)
                # where the letter stands (line, column) and its position in the record's sequence
                raise InputError(path, f"{bad.group()!r} at position {bad.start() + 1} is not an IUPAC "
                                       f"nucleotide letter", record=rec_id, line=at_line, column=column)
        if not allow_gaps:
            gap = _GAP.search(sequence)
            if gap:
                at_line, column = _locate(sequence_lines, gap.start(), line)
                raise InputError(path, f"{gap.group()!r} at position {gap.start() + 1} is an alignment gap; "
                                       f"give the sequence without gaps", record=rec_id, line=at_line,
                                 column=column)
        if duplicate_ids != "ignore":
            first = seen.setdefault(rec_id, line)
            if first != line:
                what = f"duplicate id (first seen at line {first}; ids must be unique)"
                if duplicate_ids == "error":
                    raise InputError(path, what, record=rec_id, line=line)
                warnings.warn(str(InputError(path, what, record=rec_id, line=line)),
                              DuplicateIdWarning, stacklevel=2)
        n += 1
        yield FastaRecord(rec_id, title, sequence, line)
    if n == 0:
        if lines.first_content is not None:
            ln, text = lines.first_content
            raise InputError(path, f"no FASTA records: text before any '>' header: {text[:40]!r}", line=ln)
        raise InputError(path, "no FASTA records (no '>' header line)")


def read_sequences(path, *, duplicate_ids: str = "error") -> Iterator[FastaRecord]:
    """The records of a FASTA a model reads, under the one alphabet policy (module doc): IUPAC
    letters only, no gaps, every error naming the file, the record, the line and the column.
    Streaming; ``duplicate_ids`` as in :func:`read_fasta`."""
    return read_fasta(path, check_letters=True, allow_gaps=False, duplicate_ids=duplicate_ids)


def check_sequence_letters(sequence, *, path=None, record: str | None = None, line: int | None = None) -> None:
    """The alphabet policy (module doc) for a sequence given as a string (the Python API): an
    ``InputError`` naming the record and the 1-based position of the first gap or non-IUPAC
    character, or for an empty sequence or a value that is not a string."""
    if not isinstance(sequence, str) or not sequence:
        raise InputError(path, "empty sequence" if sequence == "" else
                         f"a sequence must be a string of letters, got {type(sequence).__name__}",
                         record=record, line=line)
    bad = _BAD_LETTER.search(sequence) or _GAP.search(sequence)
    if bad:
        what = ("is an alignment gap; give the sequence without gaps" if bad.group() in "-."
                else "is not an IUPAC nucleotide letter")
        raise InputError(path, f"{bad.group()!r} at position {bad.start() + 1} {what}", record=record, line=line)


def write_fasta(records, handle, width: int = 60) -> int:
    """Write (id_or_description, sequence) pairs as FASTA; returns the number written."""
    n = 0
    for header, sequence in records:
        handle.write(f">{header}\n")
        for start in range(0, len(sequence), width):
            handle.write(sequence[start:start + width] + "\n")
        n += 1
    return n
