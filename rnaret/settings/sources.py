"""Where a file named in the config is, and what a job that reads it depends on.

A config value that names a file is one of:
- a local path (relative to the working directory): read as is, and the job's input;
- a URL (``http(s)://``, ``file://``; dataset splits and the corpus only): a download rule writes
  it under ``results/``; the job reads and depends on that download;
- ``{archive: NAME, path: MEMBER}``: a member of an archive of the ``archives:`` block, unpacked by
  the ``unpack_archive`` rule to ``results/archives/NAME/``; the job reads
  ``results/archives/NAME/MEMBER`` and depends on the unpacked folder (a ``directory()`` output).
"""
from __future__ import annotations

import posixpath
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from rnaret.settings.errors import SettingsError

ARCHIVES_DIR = "results/archives"
URL_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class FileRef:
    """A resolved file: ``path`` is what the command reads, ``depends`` what the job's input is
    (the same file, a download's output, or an unpacked archive's folder); ``url``/``md5`` are
    set for a file a download rule fetches (``depends`` is then its output)."""

    path: str
    depends: str
    url: str | None = None
    md5: str = ""


def is_url(source) -> bool:
    """True for ``http(s)://`` and ``file://`` sources (fetched by a download rule)."""
    return urllib.parse.urlparse(str(source)).scheme in URL_SCHEMES


def url_name(source) -> str:
    """The file name a URL or path ends with (``.../x.fa.gz?dl=1`` -> ``x.fa.gz``)."""
    return Path(urllib.parse.unquote(urllib.parse.urlparse(str(source)).path)).name


def archive_dir(name: str) -> str:
    """The folder an archive of ``archives:`` is unpacked to."""
    return f"{ARCHIVES_DIR}/{name}"


def archive_member(name: str, member: str, archives, key: str) -> FileRef:
    """The ``FileRef`` of ``member`` of archive ``name``; ``SettingsError`` naming ``key`` when the
    archive is not in ``archives`` or the member path leaves the archive's folder."""
    if name not in (archives or {}):
        known = ", ".join(sorted(archives or {})) or "none"
        raise SettingsError(key, f"archive {name!r} is not in the archives: block (known: {known})")
    clean = posixpath.normpath(str(member).replace("\\", "/"))
    if posixpath.isabs(clean) or clean == ".." or clean.startswith("../") or clean == ".":
        raise SettingsError(key, f"archive member {member!r} must be a relative path inside the archive")
    return FileRef(path=f"{archive_dir(name)}/{clean}", depends=archive_dir(name))


def resolve_file(value, key: str, archives, *, download_to: str | None = None, md5: str = "") -> FileRef:
    """Resolve a config value naming a file (see the module docstring).

    ``download_to``: where the download rule writes a URL (None: URLs are refused, naming ``key``).
    """
    if isinstance(value, dict):
        if "archive" in value:
            return archive_member(value["archive"], value["path"], archives, key)
        value = value["path"]
    value = str(value)
    if is_url(value):
        if download_to is None:
            raise SettingsError(key, f"{value!r}: a URL is not accepted here; give a local path, or pack the "
                                     "file into an archive of the archives: block and name {archive, path}")
        return FileRef(path=download_to, depends=download_to, url=value, md5=md5)
    return FileRef(path=value, depends=value)
