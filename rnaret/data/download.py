"""Fetch a file from HTTP(S), ``file://`` or a local path, with resume and an md5 check.

A transfer goes to ``<dest>.part``; an interrupted HTTP transfer is resumed with a ``Range``
request (the ``.part`` file stays for the next attempt or the next run). Only a complete file
whose md5 matches (when one is given) is renamed onto ``dest``; a mismatch deletes the
``.part`` file and raises, so nothing that looks finished is left behind.

What a server may do, and what ``fetch`` then does:

- 5xx, 408 or 429: retried with exponential backoff (a ``Retry-After`` header is honoured, up
  to ``MAX_WAIT_S``); after the last attempt a ``DownloadError`` names the status.
- other 4xx (404, 403, ...): a ``DownloadError`` at once; retrying cannot help.
- redirects: followed, at most ``MAX_REDIRECTS`` in a row and only to http(s) URLs.
- a stalled connection: the socket read times out after ``timeout`` seconds; the next
  attempt resumes from the bytes already written.
- a ``206`` whose ``Content-Range`` does not start where the partial file ends (or whose total
  differs from the size seen before): refused; the partial file is discarded and the transfer
  starts again from byte 0.
- a server that ignores ``Range`` (answers ``200`` to a resume): the transfer starts over.

The checksum may be given as 32 hex digits or as the path/URL of a checksum file in
``md5sum`` layout (``<md5>  <filename>`` lines, as RNAcentral's release folders have), in
which case the line whose file name equals the downloaded file's name is used.
"""
from __future__ import annotations

import email.utils
import hashlib
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from rnaret.data.progress import progress
from rnaret.io.errors import InputError

CHUNK = 1 << 20
MAX_REDIRECTS = 5
# longest wait between two attempts, whatever the backoff or a Retry-After header ask for
MAX_WAIT_S = 300.0
# HTTP statuses worth another attempt besides 5xx: request timeout, too many requests
RETRY_STATUSES = frozenset({408, 429})
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


class DownloadError(InputError):
    """A download that could not complete or whose checksum does not match."""


class _Restart(Exception):
    """The server's answer does not continue the partial file: start again from byte 0."""


def is_url(source: str) -> bool:
    """True for http://, https:// and file:// sources; anything else is a local path."""
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https", "file")


def source_name(source: str) -> str:
    """The file name a source ends with (URL path or local path), e.g. ``rnacentral_active.fasta.gz``."""
    if is_url(source):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(source).path)).name
    return Path(source).name


def _local_path(source: str) -> Path:
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    return Path(source)


def md5_of(path, chunk: int = CHUNK) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_checksum_file(text: str, filename: str, where: str) -> str:
    """The md5 for ``filename`` in ``md5sum``-layout text (``<md5>  <name>``, ``*name`` allowed).

    Raises ``InputError`` naming ``where`` when no line names the file.
    """
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or not _MD5.match(parts[0]):
            continue
        name = parts[1].strip().lstrip("*")
        if name == filename or Path(name).name == filename:
            return parts[0].lower()
    raise InputError(where, f"no md5 line for {filename!r} in the checksum file")


def resolve_md5(checksum: str | None, filename: str, workdir=None) -> str | None:
    """Turn the config's checksum (None/'' , 32 hex digits, or a checksum file path/URL) into hex md5."""
    if not checksum:
        return None
    checksum = str(checksum).strip()
    if _MD5.match(checksum):
        return checksum.lower()
    if is_url(checksum) and not checksum.startswith("file:"):
        tmp = Path(workdir or ".") / f".{source_name(checksum)}.checksums"
        try:
            fetch(checksum, tmp, md5=None, show_progress=False)
            text = tmp.read_text(encoding="utf-8", errors="replace")
        finally:
            tmp.unlink(missing_ok=True)
    else:
        path = _local_path(checksum)
        if not path.is_file():
            raise InputError(checksum, "checksum file not found")
        text = path.read_text(encoding="utf-8", errors="replace")
    return parse_checksum_file(text, filename, checksum)


def _copy_local(source: str, part: Path, show_progress: bool) -> None:
    path = _local_path(source)
    if not path.is_file():
        raise DownloadError(source, "no such file" if not path.exists() else "not a regular file")
    total = path.stat().st_size
    with open(path, "rb") as src, open(part, "wb") as dst, \
            progress(total=total, desc=f"copy {path.name}", unit="B", disable=not show_progress) as bar:
        for block in iter(lambda: src.read(CHUNK), b""):
            dst.write(block)
            bar.update(len(block))


class _BoundedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow at most MAX_REDIRECTS redirects per request, and only to http(s) URLs."""

    max_redirections = MAX_REDIRECTS

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("Location") or headers.get("URI") or ""
        newurl = urllib.parse.urljoin(req.full_url, location)
        if urllib.parse.urlparse(newurl).scheme not in ("http", "https"):
            fp.close()
            raise DownloadError(req.full_url, f"HTTP {code} redirects to {newurl!r}, which is not "
                                              f"an http(s) URL; refused")
        hops = getattr(req, "redirect_dict", {})
        if newurl in hops or newurl == req.full_url:
            fp.close()
            raise DownloadError(req.full_url, f"HTTP {code} redirect loop back to {newurl}; refused")
        if sum(hops.values()) >= MAX_REDIRECTS:
            fp.close()
            raise DownloadError(req.full_url, f"more than {MAX_REDIRECTS} redirects in a row "
                                              f"(last to {newurl}); refused")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_BoundedRedirects)


def _content_range(value: str | None, where: str) -> tuple[int, int, int | None]:
    """(start, end, total or None) of a ``Content-Range: bytes a-b/n`` header; _Restart if unreadable."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        raise _Restart(f"{where}: unreadable Content-Range {value!r}")
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def _http_attempt(url: str, part: Path, timeout: float, bar, known: dict) -> None:
    """One request continuing ``part``; returns when the server has sent the whole file.

    known: sizes seen in earlier attempts of this download (``total``), so that a server that
    changed the file between two attempts is noticed. Raises ``_Restart`` when the answer does
    not continue ``part`` (the caller deletes it), HTTPError/URLError/OSError when interrupted.
    """
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "rnaret-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: complete, or a stale longer file
            match = re.match(r"^\s*bytes\s+\*/(\d+)\s*$", exc.headers.get("Content-Range", "") or "")
            total = int(match.group(1)) if match else None
            exc.close()
            if total == have:
                return
            raise _Restart(f"the server cannot continue at byte {have} (HTTP 416, file size "
                           f"{total if total is not None else 'not given'})")
        raise
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        if status == 206:
            start, end, total = _content_range(response.headers.get("Content-Range"), url)
            if start != have:
                raise _Restart(f"the server resumed at byte {start}, not at byte {have}")
            if total is not None and known.get("total") not in (None, total):
                raise _Restart(f"the file's size changed between attempts ({known['total']} -> {total})")
            if length is not None and int(length) != end - start + 1:
                raise _Restart(f"Content-Length {length} disagrees with Content-Range {start}-{end}")
            expected = total if total is not None else end + 1
            mode = "ab"
        elif status == 200:  # a full answer: the server ignores Range, or there was none
            if have:
                print(f"download: the server ignores Range; starting again from byte 0", flush=True)
            have, mode = 0, "wb"
            expected = int(length) if length is not None else None
        else:
            raise urllib.error.URLError(f"unexpected HTTP status {status}")
        if expected is not None:
            known["total"] = expected
            bar.total = expected
        bar.n = have
        bar.refresh()
        with open(part, mode) as out:
            while True:
                # read1: whatever has arrived (up to CHUNK), so a stall loses nothing written so far
                block = response.read1(CHUNK)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if expected is not None and size < expected:
        raise urllib.error.URLError(f"connection closed after {size} of {expected} bytes")
    if expected is not None and size > expected:
        raise _Restart(f"received {size} bytes, more than the {expected} announced")


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP date), or None."""
    value = (exc.headers.get("Retry-After") if exc.headers else None) or ""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(exc: BaseException, timeout: float) -> str:
    """A short reason for an interrupted attempt: a stall (read timeout) or what the socket said."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError):
        return f"no data for {timeout:g} s"
    return str(reason)


def fetch(source: str, dest, md5: str | None = None, *, retries: int = 5, timeout: float = 60.0,
          backoff: float = 1.0, show_progress: bool = True) -> str:
    """Download ``source`` (http(s)://, file:// or local path) to ``dest``; return its md5 (hex).

    HTTP transfers resume from ``dest + '.part'`` with Range requests, up to ``retries``
    further attempts within one call (and across calls, since the ``.part`` file stays);
    ``timeout``: seconds a connection may stay silent; ``backoff``: the first wait between
    attempts in seconds, doubled each time (0 = no wait). ``md5`` (hex) is checked before
    ``dest`` appears; a mismatch deletes the ``.part`` file and raises ``DownloadError``, as does
    every failure (the module docstring lists what is retried).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if is_url(source) and not source.startswith("file:"):
        last_error: str | None = None
        known: dict = {}
        with progress(total=None, desc=f"download {source_name(source)}", unit="B",
                      disable=not show_progress) as bar:
            for attempt in range(retries + 1):
                wait = backoff * 2 ** attempt
                try:
                    _http_attempt(source, part, timeout, bar, known)
                    last_error = None
                    break
                except _Restart as exc:
                    part.unlink(missing_ok=True)
                    known.clear()
                    last_error = f"{exc}; the partial file was discarded"
                    wait = 0.0  # the server answered: ask again at once, from byte 0
                except urllib.error.HTTPError as exc:
                    exc.close()
                    if exc.code < 500 and exc.code not in RETRY_STATUSES:
                        raise DownloadError(source, f"HTTP {exc.code} {exc.reason}") from exc
                    last_error = f"HTTP {exc.code} {exc.reason}"
                    asked = _retry_after(exc)
                    if asked is not None:
                        wait = max(wait, asked)
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                    last_error = _describe(exc, timeout)
                if attempt == retries:
                    break
                done = part.stat().st_size if part.exists() else 0
                print(f"download: attempt {attempt + 1} of {retries + 1} interrupted at byte {done} "
                      f"({last_error}); resuming", flush=True)
                time.sleep(min(wait, MAX_WAIT_S))
            if last_error is not None:
                kept = f"; partial file kept at {part} for resume" if part.exists() else ""
                raise DownloadError(source, f"transfer failed after {retries + 1} attempts "
                                            f"({last_error}){kept}")
    else:
        _copy_local(source, part, show_progress)
    got = md5_of(part)
    if md5 is not None and got != md5.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(source, f"md5 mismatch: expected {md5.lower()}, got {got}; the partial "
                                    f"file was deleted")
    os.replace(part, dest)
    return got
