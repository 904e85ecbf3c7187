"""Unpack a dataset or weights archive (``.tar.gz``/``.tgz``/``.tar``/``.zip``) safely and atomically.

The published data come as archives (``datasets.tar.gz``, ``model.tar.gz``). ``unpack``:

1. gets the archive: a local path (or ``file://``) is read where it is; a URL is fetched by
   ``rnaret.data.download.fetch`` (resume of a ``.part`` file, retries) into a hidden sibling of
   the output folder, ``.<name>-download/``, which stays for the next run until it succeeds;
2. checks the md5 (32 hex digits, or a checksum file in ``md5sum`` layout) when one is given;
3. reads every member's header and refuses the archive, before writing anything, when a member
   has an absolute path or a ``..`` component, is a symbolic or hard link that points outside the
   archive (or a hard link to no earlier file), is a device file or FIFO, appears twice, or lies
   under a member that is not a folder;
4. extracts into a temporary sibling folder (``rnaret.io.atomic.atomic_dir``), writes the
   manifest ``.rnaret-archive.json`` (source, md5, every member with its type and size) into it
   and renames it onto the output folder only when everything is there.

A failure (download, checksum, a refused member, a truncated archive) leaves no output folder;
a downloaded archive that fails its check or holds a refused member is deleted too. A killed
extraction leaves only a temporary ``.<name>.<8 random letters>`` folder, removed by the next run.
"""
from __future__ import annotations

import gzip
import json
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from rnaret.data.download import CHUNK, fetch, is_url, md5_of, resolve_md5, source_name, _local_path
from rnaret.io.atomic import atomic_dir, atomic_open
from rnaret.io.errors import InputError

MANIFEST = ".rnaret-archive.json"
FORMATS = ("tar", "tar.gz", "tar.bz2", "tar.xz", "zip")
_TAR_COMPRESSION = {"gz": "tar.gz", "bz2": "tar.bz2", "xz": "tar.xz"}
# what reading a damaged archive raises (a disk error while writing is not among them)
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError,
            gzip.BadGzipFile, UnicodeDecodeError)


@dataclass(frozen=True)
class Member:
    """One archive member as it will be written: ``path`` relative to the output folder (POSIX
    separators), ``kind`` (file, dir, symlink, hardlink), ``size`` in bytes (files), ``target``
    (links: the symlink's text, or the hard link's member path)."""

    path: str
    kind: str
    size: int = 0
    target: str | None = None


@dataclass(frozen=True)
class Unpacked:
    """What ``unpack`` produced: the output folder, the manifest's content, whether it ran."""

    output_dir: Path
    manifest: dict
    extracted: bool


def _refuse(archive, member: str, what: str) -> InputError:
    return InputError(archive, f"member {member!r}: {what}; the archive was not unpacked")


def member_path(name: str, archive) -> str:
    """The normalised relative path of a member name ('' for the archive's root folder).

    Raises ``InputError`` for an absolute path or a path with a ``..`` component.
    """
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise _refuse(archive, name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(archive, name, "path with a '..' component (outside the output folder)")
    return "/".join(parts)


def _symlink_target(path: str, target: str, archive) -> str:
    """The symlink's text when it stays inside the output folder; InputError otherwise."""
    if not target or target.startswith("/"):
        raise _refuse(archive, path, f"symbolic link to the absolute path {target!r}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise _refuse(archive, path, f"symbolic link to {target!r}, outside the output folder")
    return target


def _check_tree(members: list[Member], archive) -> None:
    """No path twice (folders aside), no member under a file or a link."""
    kinds: dict[str, str] = {}
    for m in members:
        seen = kinds.get(m.path)
        if seen is not None and not (seen == "dir" and m.kind == "dir"):
            raise _refuse(archive, m.path, "appears twice")
        kinds[m.path] = m.kind
    for m in members:
        parent = posixpath.dirname(m.path)
        while parent:
            if kinds.get(parent, "dir") != "dir":
                raise _refuse(archive, m.path, f"lies under {parent!r}, which is a {kinds[parent]}, "
                                               f"not a folder")
            parent = posixpath.dirname(parent)


def _entry_path(name: str, is_dir: bool, archive, members: list[Member]) -> str | None:
    """The member path of the archive entry ``name``, or None for a folder, which is added to
    ``members`` here (the archive's root folder is not a member); a non-folder entry that names
    the root folder is refused."""
    path = member_path(name, archive)
    if is_dir:
        if path:
            members.append(Member(path, "dir"))
        return None
    if not path:
        raise _refuse(archive, name, "a non-folder member named as the root folder")
    return path


def _tar_members(tar: tarfile.TarFile, archive) -> list[Member]:
    members: list[Member] = []
    files: set[str] = set()
    for info in tar.getmembers():
        path = _entry_path(info.name, info.isdir(), archive, members)
        if path is None:
            continue
        if info.isreg():
            members.append(Member(path, "file", size=info.size))
            files.add(path)
        elif info.issym():
            members.append(Member(path, "symlink", target=_symlink_target(path, info.linkname, archive)))
        elif info.islnk():
            target = member_path(info.linkname, archive) if not info.linkname.startswith("/") else None
            if target is None:
                raise _refuse(archive, path, f"hard link to the absolute path {info.linkname!r}")
            if target not in files:
                raise _refuse(archive, path, f"hard link to {info.linkname!r}, which is no earlier file "
                                             f"of the archive")
            members.append(Member(path, "hardlink", size=info.size, target=target))
            files.add(path)
        elif info.ischr() or info.isblk() or info.isfifo():
            raise _refuse(archive, path, "device file or FIFO")
        else:
            raise _refuse(archive, path, f"unsupported member type {info.type!r}")
    return members


def _zip_members(zf: zipfile.ZipFile, archive) -> list[Member]:
    members: list[Member] = []
    for info in zf.infolist():
        path = _entry_path(info.filename, info.is_dir(), archive, members)
        if path is None:
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", errors="replace")
            members.append(Member(path, "symlink", target=_symlink_target(path, target, archive)))
        elif mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise _refuse(archive, path, "device file or FIFO")
        else:
            members.append(Member(path, "file", size=info.file_size))
    return members


def _open(archive: Path, where):
    """(format, opened archive) for a zip or (compressed) tar file; InputError for anything else."""
    if zipfile.is_zipfile(archive):
        try:
            return "zip", zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(where, f"unreadable zip archive: {exc}") from exc
    compression = _compression(archive)
    fmt = _TAR_COMPRESSION.get(compression, "tar")
    try:
        tar = tarfile.open(archive, "r:*")
    except _CORRUPT as exc:
        if compression is None:
            raise InputError(where, "not a tar or zip archive") from exc
        # compressed, but no tar inside that can be read to its end
        raise InputError(where, f"truncated or corrupt {fmt} archive: {exc}") from exc
    return fmt, tar


def _compression(archive: Path) -> str | None:
    """The compression of a tar file from its first bytes: gz, bz2, xz or None."""
    with open(archive, "rb") as fh:
        head = fh.read(6)
    if head[:2] == b"\x1f\x8b":
        return "gz"
    if head[:3] == b"BZh":
        return "bz2"
    if head == b"\xfd7zXZ\x00":
        return "xz"
    return None


def read_members(archive, where=None) -> tuple[str, list[Member]]:
    """The format (tar, tar.gz, ..., zip) and checked members of an archive file.

    where: the name errors give (default: the archive path). Reads every header (for a
    compressed tar the whole stream), writes nothing; raises ``InputError`` for a refused member
    (module docstring) or a file that is not a readable archive.
    """
    archive = Path(archive)
    where = where if where is not None else archive
    fmt, handle = _open(archive, where)
    try:
        with handle:
            members = _zip_members(handle, where) if fmt == "zip" else _tar_members(handle, where)
    except _CORRUPT as exc:
        raise InputError(where, f"truncated or corrupt {fmt} archive: {exc}") from exc
    _check_tree(members, where)
    return fmt, members


def _write_file(stream, target: Path, size: int, where, name: str) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    written = 0
    with os.fdopen(fd, "wb") as out:
        for block in iter(lambda: stream.read(CHUNK), b""):
            out.write(block)
            written += len(block)
    if written != size:
        raise InputError(where, f"member {name!r}: {written} bytes extracted, the header says {size}")


def _extract(archive: Path, fmt: str, members: list[Member], root: Path, where) -> None:
    """Write ``members`` (already checked) of ``archive`` under ``root``."""
    wanted = {m.path: m for m in members}
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    m = wanted.get(member_path(info.filename, where))
                    if m is None or m.kind == "dir":
                        continue
                    _place(m, root, lambda: zf.open(info), where)
        else:
            with tarfile.open(archive, "r:*") as tar:
                for info in tar:  # streaming: a compressed tar is read once more, front to back
                    m = wanted.get(member_path(info.name, where))
                    if m is None or m.kind == "dir":
                        continue
                    _place(m, root, lambda: tar.extractfile(info), where, mtime=info.mtime)
    except _CORRUPT as exc:
        raise InputError(where, f"truncated or corrupt {fmt} archive while extracting: {exc}") from exc
    for m in members:
        if m.kind == "dir":
            (root / m.path).mkdir(parents=True, exist_ok=True)


def _place(m: Member, root: Path, opener, where, mtime: float | None = None) -> None:
    target = root / m.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if m.kind == "file":
        with opener() as stream:
            _write_file(stream, target, m.size, where, m.path)
        if mtime is not None:
            os.utime(target, (mtime, mtime))
    elif m.kind == "hardlink":
        shutil.copyfile(root / m.target, target, follow_symlinks=False)
    elif m.kind == "symlink":
        os.symlink(m.target, target)


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Temporary folders a killed run left beside the output (``atomic_dir``'s ``.<name>.<8 random letters>``)."""
    pattern = re.compile(rf"^\.{re.escape(output_dir.name)}\.[a-z0-9_]{{8}}$")
    if output_dir.parent.is_dir():
        for path in output_dir.parent.iterdir():
            if pattern.match(path.name) and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def read_manifest(output_dir) -> dict | None:
    """The manifest of an unpacked archive folder, or None when there is none (or it is unreadable)."""
    path = Path(output_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def unpack(source: str, output_dir, md5: str | None = None, *, retries: int = 5, timeout: float = 60.0,
           backoff: float = 1.0, keep_download: bool = False, show_progress: bool = True) -> Unpacked:
    """Get, check and unpack the archive ``source`` (URL or local path) into ``output_dir``.

    md5: 32 hex digits, a checksum file (path or URL, ``md5sum`` layout), or None (unchecked);
    retries/timeout/backoff: as for ``fetch``; keep_download: keep a downloaded archive after
    unpacking (default: delete it). When ``output_dir`` already holds the manifest of the same
    source with the same md5, nothing is done (``extracted`` False). Raises ``InputError``
    (``DownloadError`` for transfers) and then leaves no ``output_dir`` (module docstring).
    """
    output_dir = Path(output_dir)
    name = output_dir.name
    download_dir = output_dir.parent / f".{name}-download"
    expected = resolve_md5(md5, source_name(source), workdir=output_dir.parent) if md5 else None
    previous = read_manifest(output_dir)
    if previous and expected and previous.get("md5") == expected and previous.get("source") == source:
        return Unpacked(output_dir, previous, extracted=False)
    _remove_stale_temporaries(output_dir)

    downloaded = None
    if is_url(source) and not source.startswith("file:"):
        downloaded = download_dir / source_name(source)
        if not (downloaded.is_file() and expected and md5_of(downloaded) == expected):
            try:
                fetch(source, downloaded, md5=expected, retries=retries, timeout=timeout,
                      backoff=backoff, show_progress=show_progress)
            finally:
                # a failed transfer keeps its .part file for resume; a failed check leaves none
                if download_dir.is_dir() and not any(download_dir.iterdir()):
                    download_dir.rmdir()
        archive = downloaded
    else:
        archive = _local_path(source)
        if not archive.is_file():
            raise InputError(source, "archive not found" if not archive.exists() else "not a regular file")
    try:
        got = md5_of(archive)
        if expected and got != expected:
            raise InputError(source, f"md5 mismatch: expected {expected}, got {got}")
        fmt, members = read_members(archive, where=source)
        manifest = {
            "source": source, "archive": archive.name, "format": fmt, "md5": got,
            "md5_checked": bool(expected), "checksum_source": md5 or None,
            "files": sum(m.kind in ("file", "hardlink") for m in members),
            "bytes": sum(m.size for m in members if m.kind in ("file", "hardlink")),
            "members": [{k: v for k, v in asdict(m).items() if v is not None} for m in members],
        }
        with atomic_dir(output_dir) as tmp:
            _extract(archive, fmt, members, tmp, source)
            with atomic_open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=1)
                fh.write("\n")
    except (KeyboardInterrupt, SystemExit):
        raise  # stopped, not refused: a verified download stays for the next run
    except BaseException:
        # a downloaded archive that failed its checks is not kept (a transfer interrupted
        # before this point keeps its .part file for resume: fetch)
        if downloaded is not None:
            _discard(download_dir)
        raise
    if downloaded is not None and not keep_download:
        _discard(download_dir)
    return Unpacked(output_dir, manifest, extracted=True)


def _discard(download_dir: Path) -> None:
    shutil.rmtree(download_dir, ignore_errors=True)
