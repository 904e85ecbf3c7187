"""The download stage against a real HTTP server on 127.0.0.1 serving the bundled corpus sample:
resume after an interrupted transfer, md5 checks (checksum file and literal), failures."""
from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import re
import threading

import pytest

from rnaret.data.download import DownloadError, fetch, parse_checksum_file, resolve_md5
from rnaret.io.errors import InputError

NAME = "rnacentral_sample.fa.gz"


class Server:
    """A threaded HTTP server with Range support; ``cut_after`` makes the first ``cuts`` GETs of
    the payload close the connection after that many bytes (Content-Length still says all)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.cut_after: int | None = None
        self.cuts = 0
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                range_header = self.headers.get("Range")
                outer.requests.append((name, range_header))
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                start = 0
                match = re.match(r"bytes=(\d+)-", range_header or "")
                if match and not outer.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                body = data[start:]
                if outer.cut_after is not None and outer.cuts > 0 and name == NAME:
                    outer.cuts -= 1
                    self.wfile.write(body[: outer.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def sample(resources) -> bytes:
    return (resources / "rnacentral" / NAME).read_bytes()


@pytest.fixture()
def server(sample):
    md5 = hashlib.md5(sample).hexdigest()
    checksums = f"{'0' * 32}  other.fa.gz\n{md5}  {NAME}\n".encode()
    wrong = f"{'f' * 32}  {NAME}\n".encode()
    with Server({NAME: sample, "md5.txt": checksums, "wrong_md5.txt": wrong}) as srv:
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
    ranges = [r for name, r in server.requests if name == NAME]
    assert ranges == [None, "bytes=700000-", "bytes=1400000-", "bytes=2100000-"]
    assert "resuming" in capsys.readouterr().out


def test_partial_file_from_an_earlier_run_is_continued(tmp_path, server, sample):
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(sample[:1_000_000])
    fetch(server.url(NAME), dest, md5=hashlib.md5(sample).hexdigest(), show_progress=False)
    assert dest.read_bytes() == sample
    assert server.requests == [(NAME, "bytes=1000000-")]


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
