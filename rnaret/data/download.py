"""Fetch a file from HTTP(S), ``file://`` or a local path, with resume and an md5 check.

A transfer goes to ``<dest>.part``; an interrupted HTTP transfer is resumed with a ``Range``
request (the ``.part`` file stays for the next attempt or the next run). Only a complete file
whose md5 matches (when one is given) is renamed onto ``dest``; a mismatch deletes the
``.part`` file and raises, so nothing that looks finished is left behind.

The checksum may be given as 32 hex digits or as the path/URL of a checksum file in
``md5sum`` layout (``<md5>  <filename>`` lines, as RNAcentral's release folders have), in
which case the line whose file name equals the downloaded file's name is used.
"""
from __future__ import annotations

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
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


class DownloadError(InputError):
    """A download that could not complete or whose checksum does not match."""


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
    for number, line in enumerate(text.splitlines(), 1):
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
        if not path.exists():
            raise InputError(checksum, "checksum file not found")
        text = path.read_text(encoding="utf-8", errors="replace")
    return parse_checksum_file(text, filename, checksum)


def _copy_local(source: str, part: Path, show_progress: bool) -> None:
    path = _local_path(source)
    if not path.exists():
        raise InputError(source, "no such file")
    total = path.stat().st_size
    with open(path, "rb") as src, open(part, "wb") as dst, \
            progress(total=total, desc=f"copy {path.name}", unit="B", disable=not show_progress) as bar:
        for block in iter(lambda: src.read(CHUNK), b""):
            dst.write(block)
            bar.update(len(block))


def _http_attempt(url: str, part: Path, timeout: float, bar) -> bool:
    """One request continuing ``part``; True when the server says the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "rnaret-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # requested range not satisfiable: nothing left to fetch
            return True
        raise
    with response:
        status = response.status
        if status == 206:
            start = int(re.match(r"bytes (\d+)-", response.headers.get("Content-Range", "bytes 0-")).group(1))
            if start != have:
                raise urllib.error.URLError(f"server resumed at byte {start}, expected {have}")
            mode = "ab"
        else:  # 200: the server ignores Range; start over
            have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        if bar.total is None and expected is not None:
            bar.total = expected
        bar.n = have
        bar.refresh()
        with open(part, mode) as out:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if expected is not None and size < expected:
        raise urllib.error.URLError(f"connection closed after {size} of {expected} bytes")
    return True


def fetch(source: str, dest, md5: str | None = None, *, retries: int = 5, timeout: float = 60.0,
          backoff: float = 1.0, show_progress: bool = True) -> str:
    """Download ``source`` (http(s)://, file:// or local path) to ``dest``; return its md5 (hex).

    HTTP transfers resume from ``dest + '.part'`` with Range requests, up to ``retries``
    interrupted attempts within one call (and across calls, since the ``.part`` file stays).
    ``md5`` (hex) is checked before ``dest`` appears; a mismatch deletes the ``.part`` file and
    raises ``DownloadError``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if is_url(source) and not source.startswith("file:"):
        last_error: Exception | None = None
        with progress(total=None, desc=f"download {source_name(source)}", unit="B",
                      disable=not show_progress) as bar:
            for attempt in range(retries + 1):
                try:
                    _http_attempt(source, part, timeout, bar)
                    last_error = None
                    break
                except urllib.error.HTTPError as exc:
                    if exc.code < 500:  # 404, 403: retrying will not help
                        raise DownloadError(source, f"HTTP {exc.code} {exc.reason}") from exc
                    last_error = exc
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                    last_error = exc
                done = part.stat().st_size if part.exists() else 0
                print(f"download: attempt {attempt + 1} interrupted at byte {done} ({last_error}); "
                      f"resuming", flush=True)
                time.sleep(backoff * (attempt + 1))
            if last_error is not None:
                raise DownloadError(source, f"transfer failed after {retries + 1} attempts "
                                            f"({last_error}); partial file kept at {part} for resume")
    else:
        _copy_local(source, part, show_progress)
    got = md5_of(part)
    if md5 is not None and got != md5.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(source, f"md5 mismatch: expected {md5.lower()}, got {got}; the partial "
                                    f"file was deleted")
    os.replace(part, dest)
    return got

