"""Reader of mRNA/lncRNA transcript FASTA files labelled by a ``CDS:a-b`` header field.

Headers are GENCODE transcript headers (``|``-separated fields) optionally followed by
`` pc`` or `` lnc`` (the layout of the published ``lnc_sample.fa``): a transcript is coding
(label 1) when a field reads ``CDS:a-b`` (1-based, inclusive), and its positions a..b are the
CDS; otherwise it is non-coding (label 0, every position 0), as the published ``lnc.py`` reads
them. A trailing ``pc``/``lnc`` tag, when present, must agree with the CDS field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from rnaret.io.errors import InputError
from rnaret.io.fasta import read_sequences

_CDS = re.compile(r"^CDS:([0-9]+)-([0-9]+)$")


@dataclass(frozen=True)
class Transcript:
    """One transcript; ``cds`` = (start, end) 1-based inclusive, or None for a non-coding one."""

    id: str
    sequence: str
    cds: tuple[int, int] | None
    line: int

    @property
    def label(self) -> int:
        """1 for a coding transcript (it has a CDS), else 0."""
        return int(self.cds is not None)


def parse_cds(path, record_id: str, line: int, description: str, length: int) -> tuple[int, int] | None:
    """The ``CDS:a-b`` field of a header -> (a, b), or None; InputError when malformed or outside."""
    fields = [f.strip() for f in description.replace(" ", "|").split("|")]
    found = [f for f in fields if f.startswith("CDS:")]
    tag = fields[-1] if fields and fields[-1] in ("pc", "lnc") else None
    if len(found) > 1:
        raise InputError(path, "more than one CDS field in the header", record=record_id, line=line)
    if not found:
        if tag == "pc":
            raise InputError(path, "tagged 'pc' but the header has no CDS:a-b field", record=record_id, line=line)
        return None
    match = _CDS.match(found[0])
    if not match:
        raise InputError(path, f"malformed CDS field {found[0][:40]!r} (expected CDS:start-end)",
                         record=record_id, line=line)
    start, end = int(match.group(1)), int(match.group(2))
    if not 1 <= start <= end <= length:
        raise InputError(path, f"CDS {start}-{end} is not inside the sequence (length {length})",
                         record=record_id, line=line)
    if tag == "lnc":
        raise InputError(path, "tagged 'lnc' but the header has a CDS field", record=record_id, line=line)
    return start, end


def read_transcripts(path, *, labelled: bool = True) -> Iterator[Transcript]:
    """Stream transcripts of a FASTA (plain or gzipped). With ``labelled=False`` the CDS field
    is not read (``cds`` None): a user's FASTA to classify."""
    for record in read_sequences(path):  # the one alphabet policy: no gaps
        cds = (parse_cds(path, record.id, record.line, record.description, len(record.sequence))
               if labelled else None)
        yield Transcript(record.id, record.sequence, cds, record.line)
