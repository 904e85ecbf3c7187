"""Progress bars that suit both a terminal and a Snakemake log file."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "rec", **kwargs):
    """A tqdm bar on stderr; when stderr is a file (a rule's log) it updates every 30 s only.

    In: any iterable (or None with ``total`` for manual ``update``). Out: the tqdm wrapper.
    """
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
                mininterval=0.5 if interactive else 30.0, dynamic_ncols=interactive,
                ascii=not interactive, **kwargs)
