"""The one error type for bad user input."""
from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input: the message names the file, the record (id or line) and what is wrong."""

    def __init__(self, path, what: str, record: str | None = None, line: int | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.record = record
        self.line = line
        self.what = what
        where = [p for p in (self.path, f"record {record!r}" if record else None,
                             f"line {line}" if line else None) if p]
        super().__init__(f"{': '.join(where)}: {what}" if where else what)
