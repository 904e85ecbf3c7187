"""The archives in the pipeline (rule unpack_archive): a structure dataset given as members of a
stand-in published datasets.tar.gz served from 127.0.0.1 is downloaded, checked, unpacked and
evaluated (ViennaRNA); a wrong checksum or a `../` member fails the run cleanly, with nothing left
that looks done."""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from loopback import Server
from published_archives import make_datasets_tree, pack
from slurm_cluster.cluster import copy_repository

pytestmark = pytest.mark.slow
TARGET = "results/structure/ts0/vienna/metrics.tsv"


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    """A good stand-in datasets.tar.gz and one with a member escaping through '..'."""
    folder = tmp_path_factory.mktemp("archives")
    good = pack(make_datasets_tree(folder / "tree", rows_per_file=20), folder / "datasets.tar.gz", "data")
    evil = folder / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for path in sorted((folder / "tree" / "data" / "bpRNA" / "TS0").glob("*.bpseq")):
            tar.add(path, arcname=f"data/bpRNA/TS0/{path.name}")
        info = tarfile.TarInfo("data/../../outside.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    return {"datasets.tar.gz": good.read_bytes(), "evil.tar.gz": evil.read_bytes()}


@pytest.fixture()
def repo(root, tmp_path) -> Path:
    return copy_repository(root, tmp_path / "repo")


def _run(repo: Path, url: str, md5: str) -> subprocess.CompletedProcess:
    """`snakemake TARGET` with the archive as the only structure dataset (test split TS0)."""
    config = {
        "archives": {"paper_data": {"url": url, "md5": md5}},
        "datasets": {"structure": {"bprna": None, "ts0": {"test": {"archive": "paper_data", "path": "data/bpRNA/TS0"}}}},
        "baselines": {"vienna": {"threads": 1, "method": "mfe"}},
    }
    (repo / "archive_test.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(["timeout", "-s", "KILL", "600", sys.executable, "-m", "snakemake", TARGET, "--cores", "1",
                           "--configfile", "archive_test.yaml"], cwd=repo, capture_output=True, text=True)


def _leftovers(repo: Path) -> list[str]:
    """Everything under results/ (the failed runs must leave nothing there)."""
    results = repo / "results"
    return sorted(str(p.relative_to(repo)) for p in results.rglob("*")) if results.exists() else []


def test_an_archive_is_downloaded_checked_unpacked_and_evaluated(repo, archives):
    data = archives["datasets.tar.gz"]
    with Server(archives) as server:
        proc = _run(repo, server.url("datasets.tar.gz"), hashlib.md5(data).hexdigest())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = (repo / TARGET).read_text().splitlines()
    assert metrics[0] == "metric\tvalue" and any(line.startswith("n\t4") for line in metrics), metrics
    assert (repo / "results" / "archives" / "paper_data" / ".rnaret-archive.json").is_file()
    # the downloaded archive is not kept beside the unpacked folder
    assert sorted(p.name for p in (repo / "results" / "archives").iterdir()) == ["paper_data"]


def test_a_wrong_checksum_fails_cleanly(repo, archives):
    with Server(archives) as server:
        proc = _run(repo, server.url("datasets.tar.gz"), "0" * 32)
    assert proc.returncode != 0
    log = (repo / "logs" / "archives" / "paper_data.log").read_text()
    assert "md5 mismatch: expected 00000000000000000000000000000000" in log
    assert _leftovers(repo) in ([], ["results/archives"])


def test_a_member_outside_the_archive_fails_cleanly(repo, archives):
    evil = archives["evil.tar.gz"]
    with Server(archives) as server:
        proc = _run(repo, server.url("evil.tar.gz"), hashlib.md5(evil).hexdigest())
    assert proc.returncode != 0
    log = (repo / "logs" / "archives" / "paper_data.log").read_text()
    assert "member 'data/../../outside.txt': path with a '..' component" in log
    assert _leftovers(repo) in ([], ["results/archives"])
    assert not (repo / "outside.txt").exists() and not (repo / "results" / "outside.txt").exists()
