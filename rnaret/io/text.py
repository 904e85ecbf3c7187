"""Text files as every reader of rnaret sees them: plain or gzipped, UTF-8, any line ending.

``text_lines(path)`` is the one way the readers (FASTA, dot-bracket, bpseq, CT, the task tables)
get at a file's lines, so that they all refuse the same things with the same words:

- a missing path, a folder, a path that cannot be read (permission), an empty file;
- gzip is recognised by its content (the two magic bytes), not by the name: a ``.gz`` name
  holding plain text is read as plain text, and a gzipped file without ``.gz`` is gunzipped;
  a truncated or corrupt gzip stream is an error naming the last line read;
- bytes that are not UTF-8 are an error naming the line and column (the file is decoded with
  ``surrogateescape``, so the bad byte is found where it stands, not where the decoder's
  read-ahead happened to be); a UTF-8 byte-order mark at the start is dropped;
- NUL bytes (binary data) are an error naming the line and column;
- ``\\n``, ``\\r\\n`` and lone ``\\r`` (classic Mac) all end a line (universal newlines), so line
  numbers are those an editor shows.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import zlib
from typing import BinaryIO, Iterator, TextIO

from rnaret.io.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
# surrogateescape decodes each byte that is not UTF-8 to U+DC80..U+DCFF
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def open_binary(path) -> BinaryIO:
    """Open ``path`` for reading bytes, gunzipped when its content starts with the gzip magic.

    Raises ``InputError`` for a missing path, a folder, an unreadable file and an empty file.
    """
    path = os.fspath(path)
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "this is a folder, not a file") from None
    except PermissionError:
        raise InputError(path, "cannot be read: permission denied") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        if os.fstat(raw.fileno()).st_size == 0 and os.path.isfile(path):
            raise InputError(path, "the file is empty")
        magic = raw.read(2)
        raw.seek(0)
    except InputError:
        raw.close()
        raise
    except OSError as exc:
        raw.close()
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from None
    if magic == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def is_gzip(path) -> bool:
    """True when the file's content starts with the gzip magic bytes (InputError if unreadable)."""
    handle = open_binary(path)
    try:
        return isinstance(handle, gzip.GzipFile)
    finally:
        handle.close()


def open_text(path) -> TextIO:
    """Open a plain or gzipped file as UTF-8 text with universal newlines (see the module doc).

    Bytes that are not UTF-8 come through as lone surrogates; :func:`text_lines` turns them into
    errors, so read through it rather than through this handle where you can.
    """
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", errors="surrogateescape",
                            newline=None)


def text_lines(path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line)`` of a text file, each line with its ``\\n`` (the last one
    may lack it), after the checks of the module docstring (``InputError`` otherwise)."""
    path = os.fspath(path)
    number = 0
    with open_text(path) as handle:
        while True:
            try:
                line = handle.readline()
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                # decompression reads ahead: the damage lies somewhere after the last good line
                raise InputError(path, f"truncated or corrupt gzip stream after line {number} ({exc})") from None
            except OSError as exc:
                raise InputError(path, f"cannot be read after line {number}: {exc.strerror or exc}") from None
            if not line:
                return
            number += 1
            if not line.isascii():
                bad = _NOT_UTF8.search(line)
                if bad:
                    byte = ord(bad.group()) - 0xDC00
                    raise InputError(path, f"byte 0x{byte:02X} is not UTF-8 text (save the file as UTF-8)",
                                     line=number, column=bad.start() + 1)
            if "\x00" in line:
                raise InputError(path, "binary data (a NUL byte): not a text file", line=number,
                                 column=line.index("\x00") + 1)
            yield number, line
