"""Shared fixtures: paths to the bundled data and the reference vectors."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Subprocesses find the interpreter that runs the tests first on PATH (the pipeline's rules call
# `python -m rnaret ...`), also when its virtual environment was not activated.
_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
RESOURCES = ROOT / "resources"
REFERENCE = ROOT / "tests" / "fixtures" / "reference"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def resources() -> Path:
    return RESOURCES


@pytest.fixture(scope="session")
def reference() -> Path:
    return REFERENCE


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads; one avoids OpenMP hand-offs on a busy machine.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch  # here, so that collecting tests that never touch torch does not import it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# the whole pipeline with tiny settings, run once per session and shared by the modules that
# check it (tests/rehearsal.py: the SLURM rehearsal, the conda environments)
from rehearsal import local_rehearsal, rehearsal_archives, rehearsal_server  # noqa: E402,F401
