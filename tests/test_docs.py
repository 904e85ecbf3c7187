"""The documentation site: `mkdocs build --strict` over docs/ (Material theme) must pass, so a
broken link or anchor, a page missing from the nav's files or a bad mkdocs.yml fails the suite."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[docs]')")


def test_the_site_builds_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    # every page of the nav was rendered, the generated settings reference among them
    for page in ("pipeline", "configuration", "settings-reference", "inputs", "performance", "results"):
        html = (tmp_path / "site" / page / "index.html").read_text(encoding="utf-8")
        assert "<h1" in html, page


def test_a_broken_link_fails_the_build(tmp_path):
    """The check above can fail: a copy of the docs with one link to a page that does not exist."""
    import shutil

    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + "\nSee [a page](no-such-page.md).\n", encoding="utf-8")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode != 0
    assert "no-such-page.md" in run.stdout + run.stderr
