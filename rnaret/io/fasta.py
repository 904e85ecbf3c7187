"""Streaming FASTA reading (plain or gzip) with checks that name file, record and line.

Biopython's ``SimpleFastaParser`` does the parsing; a thin line-counting wrapper around the
handle remembers where each header was, so that every error can point at a line.
Windows line endings are accepted. Nucleotide letters are the IUPAC codes (either case),
U or T, and the gap symbols '-' and '.'; anything else is an error.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import warnings
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Iterator

from Bio.SeqIO.FastaIO import SimpleFastaParser

from rnaret.io.errors import InputError

IUPAC_NUCLEOTIDES = "ACGTUNRYSWKMBDHV-."
_BAD_LETTER = re.compile(f"[^{re.escape(IUPAC_NUCLEOTIDES + IUPAC_NUCLEOTIDES.lower())}]")
_NON_ACGTU = re.compile("[^ACGTUacgtu]")
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class FastaRecord:
    id: str           # first word of the header
    description: str  # the whole header line without '>'
    sequence: str     # as written, line breaks and spaces removed
    line: int         # 1-based line number of the header

    @property
    def n_non_acgtu(self) -> int:
        return len(_NON_ACGTU.findall(self.sequence))


def is_gzip(path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_text(path):
    """Open a plain or gzipped text file for reading, universal newlines."""
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline=None)
    return open(path, encoding="utf-8", newline=None)


class DuplicateIdWarning(UserWarning):
    """A FASTA id seen twice, when the caller asked for duplicates to be reported, not fatal."""


class _LineCounter:
    """Iterates a text handle, counting lines and noting where headers start."""

    def __init__(self, handle, path):
        self.handle, self.path = handle, path
        self.line = 0
        # header lines read but not yet handed out: the parser reads one header ahead, so this
        # stays at one or two entries (a list of every header would grow with the file)
        self.header_lines: deque[int] = deque()
        self.seen_header = False
        self.first_content: tuple[int, str] | None = None
        self.last_header = ""

    def __iter__(self):
        while True:
            try:
                text = self.handle.readline()
            except UnicodeDecodeError as exc:
                raise InputError(self.path, f"not a text FASTA file (undecodable bytes: {exc.reason})",
                                 line=self.line + 1) from exc
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                # decompression reads ahead, so the damage lies somewhere after the last good line
                last = self.last_header or None
                raise InputError(self.path, f"truncated or corrupt gzip stream after line {self.line} "
                                            f"({exc})", record=last) from exc
            if not text:
                return
            self.line += 1
            if "\x00" in text:
                raise InputError(self.path, "binary data (NUL bytes) in a FASTA file", line=self.line)
            if text.startswith(">"):
                self.header_lines.append(self.line)
                self.seen_header = True
                self.last_header = text[1:].split(None, 1)[0] if text[1:].strip() else ""
            elif text.strip() and self.first_content is None and not self.seen_header:
                self.first_content = (self.line, text.strip())
            yield text


def read_fasta(path, *, check_letters: bool = True, allow_empty_sequence: bool = False,
               duplicate_ids: str = "error") -> Iterator[FastaRecord]:
    """Yield the records of a FASTA file (plain or gzipped), streaming.

    Raises ``InputError`` for: a missing or empty file, text before the first header, no
    records, a header with no sequence (unless ``allow_empty_sequence``), letters that are not
    IUPAC nucleotides (when ``check_letters``), binary data, a truncated gzip, and duplicate ids.
    ``duplicate_ids``: "error" raises naming both lines; "warn" emits a ``DuplicateIdWarning``
    naming both lines and goes on; "ignore" keeps no id set (constant memory on huge files).
    Windows line endings are accepted.
    """
    if duplicate_ids not in ("error", "warn", "ignore"):
        raise ValueError(f"duplicate_ids must be 'error', 'warn' or 'ignore', got {duplicate_ids!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise InputError(path, "the file is empty")
    seen: dict[str, int] = {}  # id -> header line of its first occurrence
    n = 0
    with open_text(path) as handle:
        lines = _LineCounter(handle, path)
        for title, sequence in SimpleFastaParser(lines):
            if lines.first_content is not None:
                ln, text = lines.first_content
                raise InputError(path, f"text before the first '>' header: {text[:40]!r}", line=ln)
            line = lines.header_lines.popleft()
            rec_id = title.split(None, 1)[0] if title.strip() else ""
            if not rec_id:
                raise InputError(path, "a header with no id", line=line)
            sequence = sequence.replace("\t", "")
            if not sequence and not allow_empty_sequence:
                raise InputError(path, "the header has no sequence", record=rec_id, line=line)
            if check_letters:
                bad = _BAD_LETTER.search(sequence)
                if bad:
                    raise InputError(path, f"{bad.group()!r} at position {bad.start() + 1} is not an "
                                           f"IUPAC nucleotide letter", record=rec_id, line=line)
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
                raise InputError(path, f"no FASTA records: text before any '>' header: {text[:40]!r}",
                                 line=ln)
            raise InputError(path, "no FASTA records (no '>' header line)")


def write_fasta(records, handle, width: int = 60) -> int:
    """Write (id_or_description, sequence) pairs as FASTA; returns the number written."""
    n = 0
    for header, sequence in records:
        handle.write(f">{header}\n")
        for start in range(0, len(sequence), width):
            handle.write(sequence[start:start + width] + "\n")
        n += 1
    return n
