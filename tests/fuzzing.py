"""Shared pieces of the fuzz tests (tests/test_fuzz_*.py): the Hypothesis profile, byte-level
mutations of valid files, and the check every reader must pass on any input.

Profiles (environment variable ``RNARET_FUZZ_PROFILE``):
- ``ci`` (default): derandomized (the same inputs on every run, so the suite cannot flake),
  2,000 cases per reader, no example database written;
- ``explore``: random inputs, 20,000 cases per reader and Hypothesis' example database
  (``.hypothesis/``), to look for new failures (a failure found there becomes an explicit test).
``RNARET_FUZZ_EXAMPLES`` sets the number of cases of either.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from rnaret.io.errors import InputError

PROFILE = os.environ.get("RNARET_FUZZ_PROFILE", "ci")
EXAMPLES = int(os.environ.get("RNARET_FUZZ_EXAMPLES", "20000" if PROFILE == "explore" else "2000"))
_COMMON = dict(max_examples=EXAMPLES, deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
settings.register_profile("ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("explore", derandomize=False, **_COMMON)
FUZZ = settings.get_profile(PROFILE)

# byte strings that mean something to one reader or another: line ends, separators, brackets,
# numbers at the edges, encodings, gzip's magic, the markers of headers and fields
TOKENS = [b"\x00", b"\r", b"\r\n", b"\n", b"\n\n", b">", b">x\n", b"#", b"\t", b",", b'"', b"'", b" ", b"\xff",
          b"\xe9", b"\xef\xbb\xbf", b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"(", b")", b"[", b"]", b"(]", b"{", b"}",
          b"0", b"1", b"-1", b"2", b"999999999999", b"1" * 30, b"1e400", b"NaN", b"-", b".", b"|", b"CDS:",
          b"CDS:1-3", b"CDS:9-1", b" pc", b" lnc", b"split", b"label", b"null", b"true", b"[[", b"]]",
          b"[[1, 2]]", b"[" * 50, b"N", b"U", b"X", b"\xc3\xa9", b"\x80", b"!!python/object:os.system",
          b"&a [*a, *a]", b": ", b"- ", b"---", b"..."]


_TEXT_BYTES = list(b"ACGUTNacgu.()[]{}<>0123456789 \t\n,>-|:")


@st.composite
def mutations(draw, base: bytes, max_edits: int = 4) -> bytes:
    """``base`` with 1..``max_edits`` edits: a byte replaced, bytes inserted (random or a token
    of ``TOKENS``), a range deleted, the file cut, a line deleted, doubled or swapped."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(("replace", "insert", "token", "delete", "cut", "line", "swap", "swap")))
        at = draw(st.integers(0, len(data)))
        if op == "replace" and data:
            data[min(at, len(data) - 1)] = draw(st.one_of(st.integers(0, 255), st.sampled_from(_TEXT_BYTES)))
        elif op == "swap" and data:
            # two bytes of one line exchanged: the line keeps its length (a structure line stays
            # as long as its sequence), so the edit reaches the checks behind the length checks
            start = bytes(data).rfind(b"\n", 0, min(at, len(data) - 1)) + 1
            end = bytes(data).find(b"\n", start)
            end = len(data) if end < 0 else end
            if end - start >= 2:
                i, j = draw(st.integers(start, end - 1)), draw(st.integers(start, end - 1))
                data[i], data[j] = data[j], data[i]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif op == "delete":
            data[at:at + draw(st.integers(1, 16))] = b""
        elif op == "cut":
            del data[at:]
        elif op == "line":
            lines = bytes(data).splitlines(keepends=True)
            if lines:
                i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
                how = draw(st.sampled_from(("drop", "double", "swap")))
                if how == "drop":
                    del lines[i]
                elif how == "double":
                    lines.insert(i, lines[i])
                else:
                    lines[i], lines[j] = lines[j], lines[i]
                data = bytearray(b"".join(lines))
    return bytes(data)


def inputs(base: bytes, max_size: int = 400) -> st.SearchStrategy[bytes]:
    """What a reader is fed: mostly mutations of a valid file, sometimes any bytes at all."""
    return st.one_of(mutations(base), mutations(base), mutations(base), mutations(base, max_edits=1),
                     st.binary(max_size=max_size))


def line_count(data: bytes) -> int:
    """Lines of ``data`` as the text layer counts them (\\n, \\r\\n and lone \\r end a line)."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") + 1


def check_error(exc: InputError, path, data: bytes | None = None) -> None:
    """The error names ``path`` (the file or, for a folder reader, a file under it) first; a
    line, when given, lies inside the file (``data``: its text, when known), and a column comes
    with a line."""
    path = os.fspath(path)
    assert exc.path is not None and exc.path.startswith(path), (exc.path, path)
    assert str(exc).startswith(exc.path), str(exc)
    if exc.column is not None:
        assert exc.line is not None and exc.column >= 1
    if exc.line is not None:
        assert exc.line >= 1 and f"line {exc.line}" in str(exc)
        if data is not None:
            assert exc.line <= line_count(data), (exc.line, line_count(data))
    if exc.record:
        assert f"record {exc.record!r}" in str(exc)
