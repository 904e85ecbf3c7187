"""Make SIGTERM (Snakemake, SLURM and `timeout` stop jobs with it) unwind like an exception,
so ``finally`` blocks and the atomic writers remove their temporary files."""
from __future__ import annotations

import signal
import sys


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` in the main thread (call at a command's start)."""
    def _raise(signum, frame):
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
