"""The one error type for bad user input."""
from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input: the message names the file, the record (id or line) and what is wrong.

    ``line`` and ``column`` (1-based) say where in the file the problem stands, when there is
    such a place; the message reads ``path: record 'id': line 4, column 4: what``.
    """

    def __init__(self, path, what: str, record: str | None = None, line: int | None = None,
                 column: int | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.record = record
        self.line = line
        self.column = column
        self.what = what
        place = None
        if line:
            place = f"line {line}, column {column}" if column else f"line {line}"
        where = [p for p in (self.path, f"record {record!r}" if record else None, place) if p]
        super().__init__(f"{': '.join(where)}: {what}" if where else what)

    def __reduce__(self):
        # the default would rebuild from the message alone; worker processes send errors back
        return type(self), (self.path, self.what, self.record, self.line, self.column)
