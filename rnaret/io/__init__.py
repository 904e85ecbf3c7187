"""Readers and writers for the formats rnaret touches; every reader raises ``InputError``
naming the file, the record and what is wrong."""
from rnaret.io.errors import InputError

__all__ = ["InputError"]
