"""Turning what a user pasted or uploaded into checked sequences, with messages a biologist can act on.

The text is written to ``input.fa`` inside the job's temporary folder and read back with
``rnaret.io.fasta.read_sequences`` (the project's one reader of the sequences a model reads,
and its checks: IUPAC letters, no gaps, empty records, duplicate ids, binary data), so the
server accepts exactly what ``rnaret fold``, ``embed`` and ``classify`` accept. Errors are ``BadInput`` (a 422) or
``TooLarge`` (a 413) whose message names the input ("your FASTA" or the uploaded file's name),
the record, the line and what is wrong — never the server's temporary path.

A paste without any ``>`` header that holds only nucleotide letters and white space is read as
one sequence named ``sequence_1`` (people paste bare sequences).
"""
from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from rnaret.io.errors import InputError
from rnaret.io.fasta import GZIP_MAGIC, IUPAC_NUCLEOTIDES, read_sequences
from rnaret.serve.config import Limits

# gaps included, so that a pasted gapped sequence is refused for its gap (line and column), as
# every command refuses it, not as "not FASTA"
_BARE_SEQUENCE = re.compile(f"[{re.escape(IUPAC_NUCLEOTIDES)}\\s]+", re.IGNORECASE)


class BadInput(ValueError):
    """The input is not usable (answered with 422)."""


class TooLarge(ValueError):
    """The input exceeds one of the server's limits (answered with 413)."""


@dataclass(frozen=True)
class SequenceInput:
    """One checked sequence: ``id`` (the FASTA id), ``sequence`` upper case with U for T."""

    id: str
    sequence: str

    def __len__(self) -> int:
        return len(self.sequence)


def decode_upload(data: bytes, limits: Limits) -> bytes:
    """Bytes of an upload, gunzipped when gzipped (at most ``max_request_bytes`` decompressed,
    so a small compressed bomb cannot fill the disk). Raises TooLarge / BadInput."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
            out = handle.read(limits.max_request_bytes + 1)
    except (EOFError, OSError, zlib.error) as exc:
        raise BadInput(f"the gzip upload is truncated or corrupt ({exc})") from None
    if len(out) > limits.max_request_bytes:
        raise TooLarge(f"the gzip upload decompresses to more than {limits.max_request_bytes:,} bytes "
                       f"(this server's max_request_bytes)")
    return out


def parse_fasta_text(text: bytes | str, folder, limits: Limits, label: str = "your FASTA") -> list[SequenceInput]:
    """Check FASTA text (or one bare sequence) against the FASTA rules and ``limits``.

    ``folder``: the job's temporary folder (``input.fa`` is written there); ``label``: how the
    input is named in messages. Returns the sequences in input order, upper case, T -> U.
    Raises BadInput (not FASTA, bad letters, empty, gaps, duplicate ids) or TooLarge.
    """
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not data.strip():
        raise BadInput(f"{label}: no sequence given (the input is empty)")
    if not data.lstrip().startswith(b">"):
        try:
            bare = data.decode("utf-8")
        except UnicodeDecodeError:
            bare = ""
        if bare and _BARE_SEQUENCE.fullmatch(bare):
            # a bare sequence: one record (line numbers in messages then count the added header)
            data = b">sequence_1\n" + data
    path = Path(folder) / "input.fa"
    path.write_bytes(data)
    out: list[SequenceInput] = []
    total = 0
    try:
        for record in read_sequences(path):
            out.append(SequenceInput(record.id, record.sequence.upper().replace("T", "U")))
            total += len(record.sequence)
            check_counts(len(out), total, limits)
    except InputError as exc:
        raise BadInput(_relabel(exc, label)) from None
    finally:
        path.unlink(missing_ok=True)
    return out


def check_counts(n_sequences: int, total_length: int, limits: Limits) -> None:
    """TooLarge when ``n_sequences`` or ``total_length`` (nt) exceed ``limits``."""
    if n_sequences > limits.max_sequences:
        raise TooLarge(f"too many sequences: more than {limits.max_sequences} (this server's "
                       f"max_sequences per request); split the input into smaller requests")
    if total_length > limits.max_total_length:
        raise TooLarge(f"too long: the sequences add up to more than {limits.max_total_length:,} nt "
                       f"(this server's max_total_length per request)")


def _relabel(exc: InputError, label: str) -> str:
    what = exc.what
    if what.startswith("no FASTA records") or what.startswith("text before the first"):
        found = what.split(": ", 1)[1] if what.startswith("no FASTA records:") else what
        what = f"this is not FASTA: {found} (a FASTA record starts with a '>id' line, then the sequence)"
    elif what == "the file is empty":
        what = "no sequence given (the input is empty)"
    elif "is not UTF-8 text" in what or what.startswith("binary data"):
        what = f"this is not a text FASTA file ({what})"
    return str(InputError(label, what, record=exc.record, line=exc.line, column=exc.column))


def sequences_to_fasta(items) -> str:
    """(id, sequence) pairs -> FASTA text (so JSON input goes through the same checks)."""
    return "".join(f">{seq_id}\n{sequence}\n" for seq_id, sequence in items)
