"""The site-packages a user without rnaret has, for the fresh interpreters of the tests/hf clients."""
from __future__ import annotations

import site
from pathlib import Path


def site_without_rnaret(folder: Path) -> Path:
    """Fill ``folder`` with links to every entry of this environment's site-packages except
    rnaret's own (its package, its metadata, its editable-install hooks) -> ``folder``."""
    for base in site.getsitepackages():
        for entry in Path(base).iterdir():
            if "rnaret" in entry.name.lower() or entry.suffix == ".pth" or (folder / entry.name).exists():
                continue
            (folder / entry.name).symlink_to(entry)
    return folder
