"""`rnaret ddp-check`: all-reduce across torchrun workers and write the result (a cluster smoke test).

Run through the launcher to test multi-process start-up on a node:
``rnaret launch --nproc 2 -- ddp-check --output ddp.json``. Implementation in
``rnaret.train.ddp_check`` (also runnable as ``python -m rnaret.train.ddp_check``).
"""
from __future__ import annotations

from rnaret.train.ddp_check import HELP, add_arguments, run

__all__ = ["HELP", "add_arguments", "run"]
