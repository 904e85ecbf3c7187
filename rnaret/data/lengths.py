"""The length policy of the pretraining corpus: a minimum length, and what to do with long ones.

``long``: ``keep`` (whole, however long), ``split`` (overlapping windows of ``window`` nt with
``overlap`` nt shared by neighbours, the last window ending at the sequence's end, ids
``<id>/<start>-<end>`` 1-based inclusive), ``drop`` (counted), or ``cut`` (the first
``max_length`` nt kept under the record's own header, the rest counted: what the published
``pretrain.py`` reads of each record, ``str(record.seq)[:max_len]``). Nothing is ever cut silently.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from rnaret.data.corpus import fasta_writer, write_counts
from rnaret.data.progress import progress
from rnaret.io.fasta import read_fasta

LONG_POLICIES = ("keep", "split", "drop", "cut")


@dataclass(frozen=True)
class LengthPolicy:
    """min_length <= len is kept; len > max_length is handled by ``long``."""

    min_length: int = 10
    max_length: int = 2000
    long: str = "split"
    window: int | None = None   # defaults to max_length
    overlap: int = 200

    def __post_init__(self):
        if self.long not in LONG_POLICIES:
            raise ValueError(f"length_policy.long must be one of {LONG_POLICIES}, got {self.long!r}")
        if self.min_length < 1 or self.max_length < self.min_length:
            raise ValueError(f"length_policy: need 1 <= min_length <= max_length, got "
                             f"{self.min_length}, {self.max_length}")
        window = self.window_size
        if not (self.min_length <= window <= self.max_length):
            raise ValueError(f"length_policy.window must lie in [min_length, max_length], got {window}")
        if not (0 <= self.overlap < window):
            raise ValueError(f"length_policy.overlap must lie in [0, window), got {self.overlap}")

    @property
    def window_size(self) -> int:
        """The window length in nt (``window``, or ``max_length`` when not set)."""
        return self.max_length if self.window is None else self.window

    def as_dict(self) -> dict:
        """The policy as a plain dict (window filled in), for counts and manifests."""
        return asdict(self) | {"window": self.window_size}


def windows(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """0-based half-open (start, end) windows covering ``length`` nt.

    Steps of ``window - overlap``; the last window is moved left to end exactly at ``length``
    (so every window has ``window`` nt and neighbours share at least ``overlap`` nt).
    """
    if length <= window:
        return [(0, length)]
    step = window - overlap
    out = []
    start = 0
    while start + window < length:
        out.append((start, start + window))
        start += step
    out.append((length - window, length))
    return out


def apply_length_policy(source, output, policy: LengthPolicy, counts_path=None, *,
                        show_progress: bool = True) -> dict:
    """Stream ``source`` FASTA to ``output`` under ``policy``; return (and write) the counts."""
    c = dict(records_in=0, nucleotides_in=0, too_short=0, long=0, long_kept=0, long_split=0,
             long_dropped=0, long_cut=0, nucleotides_cut=0, windows_written=0, records_out=0, nucleotides_out=0)
    with fasta_writer(output) as out:
        for record in progress(read_fasta(source, duplicate_ids="ignore"), desc="filter",
                               disable=not show_progress):
            seq = record.sequence
            n = len(seq)
            c["records_in"] += 1
            c["nucleotides_in"] += n
            if n < policy.min_length:
                c["too_short"] += 1
                continue
            pieces = [(record.description, seq)]
            if n > policy.max_length:
                c["long"] += 1
                if policy.long == "drop":
                    c["long_dropped"] += 1
                    continue
                if policy.long == "split":
                    c["long_split"] += 1
                    rest = record.description[len(record.id):]
                    pieces = [(f"{record.id}/{a + 1}-{b}{rest}", seq[a:b])
                              for a, b in windows(n, policy.window_size, policy.overlap)]
                    c["windows_written"] += len(pieces)
                elif policy.long == "cut":
                    c["long_cut"] += 1
                    c["nucleotides_cut"] += n - policy.max_length
                    pieces = [(record.description, seq[:policy.max_length])]
                else:
                    c["long_kept"] += 1
            for header, piece in pieces:
                out.write(f">{header}\n{piece}\n")
                c["records_out"] += 1
                c["nucleotides_out"] += len(piece)
    counts = {"stage": "filter", "policy": policy.as_dict()} | c
    if counts_path is not None:
        write_counts(counts_path, counts)
    return counts
