"""The download stage against a real HTTP server on 127.0.0.1 serving the bundled corpus sample:
resume after an interrupted transfer, md5 checks (checksum file and literal), failures."""
from __future__ import annotations

import argparse
import hashlib
import json

import pytest
from loopback import Server

from rnaret.data.download import DownloadError, fetch, parse_checksum_file, resolve_md5
from rnaret.io.errors import InputError

NAME = "rnacentral_sample.fa.gz"


@pytest.fixture()
def sample(resources) -> bytes:
    return (resources / "rnacentral" / NAME).read_bytes()


@pytest.fixture()
def server(sample):
    md5 = hashlib.md5(sample).hexdigest()
    checksums = f"{'0' * 32}  other.fa.gz\n{md5}  {NAME}\n".encode()
    wrong = f"{'f' * 32}  {NAME}\n".encode()
    with Server({NAME: sample, "md5.txt": checksums, "wrong_md5.txt": wrong}, payload=NAME) as srv:
        yield srv


def test_plain_download_with_checksum_file_url(tmp_path, server, sample):
    dest = tmp_path / "out" / NAME
    md5 = resolve_md5(server.url("md5.txt"), NAME, workdir=tmp_path)
    assert md5 == hashlib.md5(sample).hexdigest()
    assert fetch(server.url(NAME), dest, md5=md5, show_progress=False) == md5
    assert dest.read_bytes() == sample
    assert not dest.with_name(NAME + ".part").exists()


def test_interrupted_transfer_resumes_with_range(tmp_path, server, sample, capsys):
    server.cut_after, server.cuts = 700_000, 3  # three broken connections, then a good one
    dest = tmp_path / NAME
    md5 = hashlib.md5(sample).hexdigest()
    assert fetch(server.url(NAME), dest, md5=md5, backoff=0.01, show_progress=False) == md5
    assert dest.read_bytes() == sample
    assert server.payload_ranges() == [None, "bytes=700000-", "bytes=1400000-", "bytes=2100000-"]
    assert "resuming" in capsys.readouterr().out


def test_partial_file_from_an_earlier_run_is_continued(tmp_path, server, sample):
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(sample[:1_000_000])
    fetch(server.url(NAME), dest, md5=hashlib.md5(sample).hexdigest(), show_progress=False)
    assert dest.read_bytes() == sample
    assert server.requests == [(f"/{NAME}", "bytes=1000000-")]


def test_server_without_range_support_restarts_cleanly(tmp_path, server, sample):
    server.ignore_range = True
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(b"stale bytes that must not survive")
    fetch(server.url(NAME), dest, md5=hashlib.md5(sample).hexdigest(), show_progress=False)
    assert dest.read_bytes() == sample


def test_wrong_checksum_fails_and_leaves_nothing(tmp_path, server):
    dest = tmp_path / NAME
    md5 = resolve_md5(server.url("wrong_md5.txt"), NAME, workdir=tmp_path)
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch(server.url(NAME), dest, md5=md5, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_transfer_that_never_completes_keeps_part_for_resume(tmp_path, server, sample):
    server.cut_after, server.cuts = 100_000, 100
    dest = tmp_path / NAME
    with pytest.raises(DownloadError, match="partial file kept"):
        fetch(server.url(NAME), dest, retries=2, backoff=0.01, show_progress=False)
    assert not dest.exists()
    part = dest.with_name(NAME + ".part")
    assert part.read_bytes() == sample[:300_000]
    server.cuts = 0  # the next run finishes the job
    fetch(server.url(NAME), dest, md5=hashlib.md5(sample).hexdigest(), show_progress=False)
    assert dest.read_bytes() == sample and not part.exists()


def test_missing_file_on_the_server(tmp_path, server):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url("absent.fa.gz"), tmp_path / "absent.fa.gz", show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_local_path_and_file_url_are_copied_and_checked(tmp_path, resources, sample):
    source = resources / "rnacentral" / NAME
    md5 = resolve_md5(str(resources / "rnacentral" / "md5.txt"), NAME)
    assert md5 == hashlib.md5(sample).hexdigest()
    assert fetch(str(source), tmp_path / "a.fa.gz", md5=md5, show_progress=False) == md5
    assert fetch(source.as_uri(), tmp_path / "b.fa.gz", md5=md5, show_progress=False) == md5
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch(str(source), tmp_path / "c.fa.gz", md5="0" * 32, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fa.gz", "b.fa.gz"]


def test_checksum_file_parsing():
    text = "d41d8cd98f00b204e9800998ecf8427e  a.fa.gz\n" \
           "0123456789ABCDEF0123456789abcdef *sub/rnacentral_active.fasta.gz\n" \
           "not a checksum line\n"
    assert parse_checksum_file(text, "rnacentral_active.fasta.gz", "md5.txt") == \
        "0123456789abcdef0123456789abcdef"
    with pytest.raises(InputError, match="no md5 line for 'x.fa'"):
        parse_checksum_file(text, "x.fa", "md5.txt")
    assert resolve_md5("", "x") is None
    assert resolve_md5("D41D8CD98F00B204E9800998ECF8427E", "x") == "d41d8cd98f00b204e9800998ecf8427e"


def test_download_command_writes_the_record(tmp_path, server, sample):
    from rnaret.commands import download

    parser = argparse.ArgumentParser()
    download.add_arguments(parser)
    out, info = tmp_path / NAME, tmp_path / "download.json"
    args = parser.parse_args([server.url(NAME), "--output", str(out), "--md5", server.url("md5.txt"),
                              "--release", "test", "--info", str(info)])
    assert download.run(args) == 0
    record = json.loads(info.read_text())
    assert record["md5"] == hashlib.md5(sample).hexdigest() and record["md5_checked"] is True
    assert record["bytes"] == len(sample) and record["release"] == "test"


# ---------------------------------------------------------------- what servers do wrong


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_server_errors_are_retried_then_the_download_completes(tmp_path, server, sample, capsys):
    server.statuses = [503, 500, 502]
    dest = tmp_path / NAME
    assert fetch(server.url(NAME), dest, md5=_md5(sample), backoff=0, show_progress=False) == _md5(sample)
    assert dest.read_bytes() == sample
    assert server.payload_ranges() == [None] * 4
    out = capsys.readouterr().out
    assert out.count("interrupted") == 3 and "HTTP 503" in out and "HTTP 502" in out


def test_server_errors_that_never_end_give_a_clear_error(tmp_path, server):
    server.statuses = [503] * 10
    dest = tmp_path / NAME
    with pytest.raises(DownloadError, match=r"transfer failed after 3 attempts \(HTTP 503 Service Unavailable\)"):
        fetch(server.url(NAME), dest, retries=2, backoff=0, show_progress=False)
    assert len(server.payload_ranges()) == 3
    assert list(tmp_path.iterdir()) == []


def test_too_many_requests_honours_retry_after(tmp_path, server, sample):
    server.statuses, server.retry_after = [429], "0"
    dest = tmp_path / NAME
    fetch(server.url(NAME), dest, md5=_md5(sample), backoff=0, show_progress=False)
    assert dest.read_bytes() == sample and len(server.payload_ranges()) == 2


def test_client_errors_are_not_retried(tmp_path, server):
    server.statuses = [403]
    with pytest.raises(DownloadError, match="HTTP 403 Forbidden"):
        fetch(server.url(NAME), tmp_path / NAME, backoff=0, show_progress=False)
    assert len(server.payload_ranges()) == 1
    assert list(tmp_path.iterdir()) == []


def test_redirects_are_followed_up_to_the_bound(tmp_path, server, sample):
    dest = tmp_path / NAME
    fetch(server.url(f"hop/4/{NAME}"), dest, md5=_md5(sample), show_progress=False)  # 5 redirects
    assert dest.read_bytes() == sample
    with pytest.raises(DownloadError, match="more than 5 redirects"):
        fetch(server.url(f"hop/5/{NAME}"), tmp_path / "six.fa.gz", show_progress=False)
    with pytest.raises(DownloadError, match="redirect loop back to"):
        fetch(server.url(f"loop/{NAME}"), tmp_path / "loop.fa.gz", show_progress=False)
    with pytest.raises(DownloadError, match="not an http\\(s\\) URL"):
        fetch(server.url(f"elsewhere/{NAME}"), tmp_path / "elsewhere.fa.gz", show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_a_resumed_transfer_after_redirects_keeps_its_range(tmp_path, server, sample):
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(sample[:500_000])
    fetch(server.url(f"hop/2/{NAME}"), dest, md5=_md5(sample), show_progress=False)
    assert dest.read_bytes() == sample
    assert server.requests[-1] == (f"/{NAME}", "bytes=500000-")
    assert [r for _, r in server.requests] == ["bytes=500000-"] * 4


def test_stalled_connection_times_out_and_resumes(tmp_path, server, sample, capsys):
    """The server sends 300,000 bytes and goes silent; after the read timeout the next attempt
    asks for the rest. Under load a healthy transfer might also time out: that only adds a
    resume, so the assertions ask for the stall's resume, not for an exact request list."""
    server.stall_after, server.stalls = 300_000, 1
    dest = tmp_path / NAME
    assert fetch(server.url(NAME), dest, md5=_md5(sample), timeout=2, backoff=0,
                 show_progress=False) == _md5(sample)
    assert dest.read_bytes() == sample
    ranges = server.payload_ranges()
    assert ranges[0] is None and "bytes=300000-" in ranges
    assert "no data for 2 s" in capsys.readouterr().out


def test_wrong_content_range_is_refused_and_the_transfer_restarts_from_zero(tmp_path, server, sample, capsys):
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(sample[:800_000])
    server.wrong_ranges = 1  # answers "bytes 799000-..." to "bytes=800000-"
    assert fetch(server.url(NAME), dest, md5=_md5(sample), backoff=0, show_progress=False) == _md5(sample)
    assert dest.read_bytes() == sample
    assert server.payload_ranges() == ["bytes=800000-", None]
    assert "resumed at byte 799000, not at byte 800000" in capsys.readouterr().out


def test_partial_file_longer_than_the_file_restarts(tmp_path, server, sample):
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(sample + b"stale tail")
    fetch(server.url(NAME), dest, md5=_md5(sample), backoff=0, show_progress=False)
    assert dest.read_bytes() == sample
    assert server.payload_ranges() == [f"bytes={len(sample) + 10}-", None]


def test_complete_partial_file_is_finished_without_transfer(tmp_path, server, sample):
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(sample)
    fetch(server.url(NAME), dest, md5=_md5(sample), show_progress=False)
    assert dest.read_bytes() == sample
    assert server.payload_ranges() == [f"bytes={len(sample)}-"]


def test_local_sources_that_are_not_files(tmp_path):
    with pytest.raises(DownloadError, match="no such file"):
        fetch(str(tmp_path / "absent.fa"), tmp_path / "out" / "a.fa", show_progress=False)
    with pytest.raises(DownloadError, match="not a regular file"):
        fetch(str(tmp_path), tmp_path / "out" / "b.fa", show_progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_download_command_reports_a_failure_as_an_error_line(tmp_path, server):
    from rnaret.cli import main

    server.statuses = [404]
    rc = main(["download", server.url(NAME), "--output", str(tmp_path / NAME), "--retries", "0"])
    assert rc == 1
    assert list(tmp_path.iterdir()) == []
