"""What a training run was started from, and whether a rerun may continue it.

Every run folder (pretraining's ``<out>/train``, fine-tuning's ``<out>.train``) holds
``fingerprint.json``::

    {"kind": "pretrain" | "finetune",
     "settings": {...},              the fully resolved settings that decide what a step computes
     "inputs": {"shards": "<digest>", "init": "<digest>", "train": "<digest>", ...}}

A rerun continues the folder only when its fingerprint equals the saved one. Otherwise the
folder is moved aside to ``<run folder>.replaced`` (replacing an older one there), a fresh run
starts in its place, and ``open_run_dir`` reports what changed, key by key, so that the log says
why. A rerun therefore never continues, nor returns as its result, weights that came from other
settings or other data; a run stopped by accident is still continued exactly.

Digests are blake2b (16 bytes, hex) of file contents: a folder's digest covers the relative
paths and contents of every file under it, so renaming or moving an input does not change it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from rnaret.io.atomic import atomic_open
from rnaret.io.errors import InputError

FINGERPRINT_FILE = "fingerprint.json"
REPLACED_SUFFIX = ".replaced"
_CHUNK = 1 << 20


def _hasher():
    return hashlib.blake2b(digest_size=16)


def _feed_file(hasher, path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)


def file_digest(path) -> str:
    """Digest of a file's bytes, or of a folder's files (relative paths and bytes, sorted).

    Raises ``InputError`` naming the path when it does not exist or cannot be read.
    """
    path = Path(path)
    hasher = _hasher()
    try:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                hasher.update(child.relative_to(path).as_posix().encode() + b"\0")
                _feed_file(hasher, child)
                hasher.update(b"\0")
        else:
            _feed_file(hasher, path)
    except FileNotFoundError as exc:
        raise InputError(path, "input file does not exist") from exc
    except OSError as exc:
        raise InputError(path, f"input file cannot be read ({exc.strerror or exc})") from exc
    return hasher.hexdigest()


def shard_digest(shards) -> str:
    """Digest of a shard folder's index: its manifest (minus the writer's version and the source
    path, which do not change the tokens) and every split's ``index.npy`` (which record lies
    where, and how long it is). Rebuilt shards of other records, another k, split or policy get
    another digest; the token files themselves are covered by the manifest's source checksum."""
    shards = Path(shards)
    manifest_path = shards / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(manifest_path, "shard manifest does not exist") from exc
    except (OSError, ValueError) as exc:
        raise InputError(manifest_path, f"shard manifest cannot be read ({exc})") from exc
    manifest = dict(manifest)
    manifest.pop("created_by", None)
    if isinstance(manifest.get("source"), dict):
        manifest["source"] = {k: v for k, v in manifest["source"].items() if k != "path"}
    hasher = _hasher()
    hasher.update(json.dumps(manifest, sort_keys=True).encode())
    for split in sorted(manifest.get("splits", {})):
        hasher.update(f"\0{split}\0".encode())
        _feed_file(hasher, shards / split / "index.npy")
    return hasher.hexdigest()


def value_digest(value) -> str:
    """Digest of a JSON-serialisable value (e.g. the list of validation batches)."""
    return hashlib.blake2b(json.dumps(value, sort_keys=True).encode(), digest_size=16).hexdigest()


def canonical(fingerprint: dict) -> dict:
    """``fingerprint`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(fingerprint, sort_keys=True))


def differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two fingerprints (or nested dicts), sorted."""
    out = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{name}.")
        elif a != b:
            out.append(name)
    return out


@dataclass
class RunStart:
    """How ``open_run_dir`` found the run folder.

    resume: True when the saved fingerprint matches (continue from its newest checkpoint);
    changed: what differed from the saved fingerprint (dotted keys), empty when resuming or new;
    replaced: where the previous run folder was moved, or None.
    """

    resume: bool
    changed: list[str]
    replaced: Path | None = None

    def describe(self, run_dir) -> str | None:
        """A log line saying why a fresh run starts in ``run_dir``, or None when nothing changed."""
        if not self.changed:
            return None
        shown = ", ".join(self.changed[:8]) + (f" and {len(self.changed) - 8} more" if len(self.changed) > 8 else "")
        return (f"the run in {run_dir} was started from other settings or inputs ({shown} changed): "
                f"starting a fresh run; the previous run folder is kept as {self.replaced}")


def read_fingerprint(run_dir) -> dict | None:
    """The saved fingerprint of ``run_dir``, or None when it has none; InputError when unreadable."""
    path = Path(run_dir) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the run's fingerprint ({exc}); delete the run folder "
                               "or pass --restart") from exc
    if not isinstance(data, dict):
        raise InputError(path, "the run's fingerprint is not a JSON object")
    return data


def open_run_dir(run_dir, fingerprint: dict, *, restart: bool = False) -> RunStart:
    """Prepare ``run_dir`` for a run started from ``fingerprint`` (call on one process only).

    restart: delete the folder and start fresh. Otherwise a folder whose saved fingerprint
    equals ``fingerprint`` is kept (resume); one holding anything else (another fingerprint, or
    files without one) is moved to ``<run_dir>.replaced`` and a fresh folder made. The
    fingerprint is written (atomically) into the folder either way.
    """
    run_dir = Path(run_dir)
    current = canonical(fingerprint)
    replaced_to = run_dir.with_name(run_dir.name + REPLACED_SUFFIX)
    start = RunStart(resume=False, changed=[])
    if restart and run_dir.exists():
        shutil.rmtree(run_dir)
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        saved = read_fingerprint(run_dir)
        if saved is None:
            start.changed = [f"{FINGERPRINT_FILE} (none recorded)"]
        else:
            start.changed = differences(saved, current)
        if not start.changed:
            start.resume = True
        else:
            if replaced_to.exists():
                shutil.rmtree(replaced_to)
            run_dir.rename(replaced_to)
            start.replaced = replaced_to
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(run_dir / FINGERPRINT_FILE, "w", encoding="utf-8") as handle:
        json.dump(current, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return start
