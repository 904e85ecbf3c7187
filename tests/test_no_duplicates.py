"""The package and the workflow hold no pair of places that share six or more lines of the same
shape (the `duplicates` command's rows): where the logic is the same, one piece of code serves.

`duplicates` is a developer tool that CI machines may lack: without it the test is skipped,
saying so."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import ROOT

FOLDERS = ("rnaret", "workflow")


@pytest.mark.skipif(shutil.which("duplicates") is None,
                    reason="the `duplicates` command is not installed on this machine (it is not on PATH)")
@pytest.mark.parametrize("folder", FOLDERS)
def test_no_pair_of_repeated_lines(folder):
    result = subprocess.run(["duplicates", "--repo", str(ROOT / folder), "--most", "200", "--seconds", "120"],
                            capture_output=True, text=True, timeout=300, check=False)
    report = result.stdout.strip()
    lines = report.splitlines()
    assert result.returncode == 0 and lines, f"duplicates gave no report for {folder}/: {result.stderr}"
    # the first line counts the files read: a folder the tool read nothing of proves nothing
    assert " files read)" in lines[0] and "(0 files read)" not in lines[0], report
    incomplete = [line for line in lines if line.startswith("incomplete:")]
    assert not incomplete, f"duplicates did not read all of {folder}/:\n{report}"
    assert lines[0].startswith("no duplicates"), (
        f"{folder}/ repeats itself; put the shared logic in one place (a helper, a table):\n{report}")
