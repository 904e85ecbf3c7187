"""A soak of `rnaret serve`: 200 mixed good and bad requests from 8 clients against the real
command (`python -m rnaret serve` on a bound loopback socket, two worker processes, small real
checkpoints, bundled sequences).

Every good request gets its answer (and its job is deleted); every bad one its 4xx with a
message; afterwards the server's memory (resident set of the server and its worker processes,
once idle) is within 10 % of what it was after a warm-up (one request of each kind, then one
round of each kind from every client at once: the allocator's and the libraries' caches reach
their working size there), and no temporary file or folder is left (the jobs' folder and the
server's TMPDIR are empty once it stopped). The figures are printed (`-s` not needed), the
memory right after the first requests too.

Bounded: 25 requests per client, each with a timeout; waits for a job are bounded polls of its
status; the server is stopped at the end, also on a failure.
"""
from __future__ import annotations

import gzip
import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
psutil = pytest.importorskip("psutil")
import httpx  # noqa: E402

from rnaret.io.fasta import read_fasta  # noqa: E402
from rnaret.io.structure import read_structures  # noqa: E402
from serve_checkpoints import tiny_checkpoints  # noqa: E402
from serve_server import REQUEST_TIMEOUT_S, start_command, wait_until_up  # noqa: E402

pytestmark = pytest.mark.slow

CLIENTS = 8
REQUESTS_PER_CLIENT = 25
MAX_REQUEST_BYTES = 20_000
MEMORY_TOLERANCE = 0.10
POLLS, POLL_S = 3000, 0.1  # hang guard of one job's wait


@pytest.fixture(scope="module")
def sequences(resources):
    """Real sequences: bundled bpRNA test records (60-200 nt) and one mouse transcript."""
    structures = [r.sequence for r in read_structures(resources / "structure" / "bprna_test.csv")
                  if 60 <= len(r.sequence) <= 200][:20]
    transcript = next(r.sequence for r in read_fasta(resources / "mrna_lncrna" / "mouse_test.fa.gz")
                      if 400 <= len(r.sequence) <= 600)
    return structures, transcript


def _wait_done(http: httpx.Client, url: str) -> dict:
    for _ in range(POLLS):
        job = http.get(url).json()
        if job["status"] == "done":
            return job
        time.sleep(POLL_S)
    raise AssertionError(f"job {url} not done: {job['progress']}")


def _chunks(n):
    yield b'{"fasta": ">big\\n'
    for _ in range(n):
        yield b"ACGU" * 250
    yield b'"}'


def request_kinds(structures, transcript):
    """name -> (send(http, i) -> (primary response, follow-up requests made), expected status)."""

    def predict(http, i):
        seq = structures[i % len(structures)]
        answer = http.post("/api/predict", json={"fasta": f">s{i}\n{seq}\n"})
        extra = 0
        if answer.status_code == 200:
            result = answer.json()["results"][0]
            assert result["structure"] and result["vienna"] and result["coding"] and result["embeddings"]
            assert http.get(result["downloads"][0]["url"]).status_code == 200
            assert http.delete(answer.json()["url"]).status_code == 204
            extra = 2
        return answer, extra

    def job_json(http, i):
        seqs = [{"id": f"a{i}", "sequence": structures[(i + 1) % len(structures)]},
                {"id": f"b{i}", "sequence": transcript}]
        answer = http.post("/api/jobs", json={"sequences": seqs, "vienna": False, "embeddings": False})
        if answer.status_code != 202:
            return answer, 0
        job = _wait_done(http, answer.json()["url"])
        assert [r["id"] for r in job["results"]] == [f"a{i}", f"b{i}"]
        assert http.delete(job["url"]).status_code == 204
        return answer, 2

    def upload_gz(http, i):
        data = gzip.compress(f">u{i}\n{structures[(i + 2) % len(structures)]}\n".encode())
        answer = http.post("/api/jobs/upload", files={"file": ("u.fa.gz", data, "application/gzip")},
                           data={"embeddings": "false"})
        if answer.status_code != 202:
            return answer, 0
        job = _wait_done(http, answer.json()["url"])
        assert job["results"][0]["structure"] is not None
        assert http.delete(job["url"]).status_code == 204
        return answer, 2

    def post_json(body: bytes):
        return lambda http, i: (http.post("/api/jobs", content=body, headers={"content-type": "application/json"}), 0)

    def post_fasta(text: str):
        return lambda http, i: (http.post("/api/jobs", json={"fasta": text}), 0)

    return {
        "predict": (predict, 200),
        "job_json": (job_json, 202),
        "upload_gz": (upload_gz, 202),
        "malformed_json": (post_json(b'{"fasta": ">a\\nGGG"'), 422),
        "wrong_types": (post_json(b'{"sequences": [{"id": 1, "sequence": 2}], "vienna": "maybe"}'), 422),
        "not_an_object": (post_json(b"[1, 2, 3]"), 422),
        "bad_letter": (post_fasta(">ok\nGGGAAACCC\n>bad\nGGGJAAACCC\n"), 422),
        "gap": (post_fasta(">g\nGG-GAAACCC\n"), 422),
        "too_many": (post_fasta("".join(f">m{k}\nGGGAAACCC\n" for k in range(5))), 413),
        "declared_413": (post_fasta(">big\n" + "ACGU" * 6_000), 413),
        "chunked_413": (lambda http, i: (http.post("/api/jobs", content=_chunks(30),
                                                   headers={"content-type": "application/json"}), 0), 413),
        "gzip_bomb": (lambda http, i: (http.post("/api/jobs/upload", files={"file": (
            "z.fa.gz", gzip.compress(b">z\n" + b"A" * 2_000_000), "application/gzip")}), 0), 413),
        "no_file": (lambda http, i: (http.post("/api/jobs/upload", data={"vienna": "false"},
                                               files={"other": ("a.txt", b"x")}), 0), 422),
        "binary_upload": (lambda http, i: (http.post("/api/jobs/upload", files={"file": (
            "p.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff", "image/png")}), 0), 422),
        "unknown_job": (lambda http, i: (http.get(f"/api/jobs/{i:016x}"), 0), 404),
        "unknown_file": (lambda http, i: (http.get(f"/api/jobs/{i:016x}/files/0/model.dbn"), 0), 404),
    }


def server_rss(process) -> tuple[int, int]:
    """Resident set of the server's own process and of its descendants (the worker processes
    and multiprocessing's resource tracker), bytes."""
    root = psutil.Process(process.pid)
    children = 0
    for proc in root.children(recursive=True):
        try:
            children += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return root.memory_info().rss, children


def idle(http) -> dict:
    for _ in range(POLLS):
        health = http.get("/api/health").json()
        if health["jobs"] == 0 and health["stages_running"] == 0:
            return health
        time.sleep(POLL_S)
    raise AssertionError(f"the server did not become idle: {health}")


def test_soak_200_mixed_requests_from_8_clients(tmp_path, sequences, capsys):
    structures, transcript = sequences
    checkpoints = tiny_checkpoints(tmp_path / "checkpoints")
    jobs, server_tmp = tmp_path / "jobs", tmp_path / "server-tmp"
    jobs.mkdir()
    server_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(server_tmp)}
    log = open(tmp_path / "serve.log", "w+")
    process, base = start_command(
        ["--checkpoint", checkpoints["structure"], "--checkpoint", checkpoints["coding"],
         "--embed-checkpoint", checkpoints["embed"], "--workers", "2", "--threads-per-worker", "1",
         "--tmp-dir", jobs, "--max-request-bytes", MAX_REQUEST_BYTES, "--max-sequences", "4",
         "--max-jobs", "20", "--log-level", "warning"], stdout=log, env=env)
    kinds = request_kinds(structures, transcript)
    names = list(kinds)
    try:
        wait_until_up(base)
        with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as http:
            for name in names:  # one of each kind (first-call imports in every process)
                send, expected = kinds[name]
                assert send(http, 0)[0].status_code == expected, name
            idle(http)
            first = server_rss(process)

        def client(number: int, count: int, offset: int) -> list[tuple[str, int, int, str]]:
            done = []
            with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as http:
                for k in range(count):
                    index = offset + number * count + k
                    name = names[index % len(names)]
                    send, expected = kinds[name]
                    answer, extra = send(http, index + 1)
                    detail = answer.json().get("detail", "") if answer.status_code >= 400 else ""
                    done.append((name, answer.status_code, extra, detail))
            return done

        with ThreadPoolExecutor(CLIENTS) as pool:
            warm = [row for rows in pool.map(client, range(CLIENTS), [len(names)] * CLIENTS, [10**6] * CLIENTS)
                    for row in rows]
            assert all(code == kinds[name][1] for name, code, _, _ in warm)
            with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as http:
                idle(http)
            before = server_rss(process)
            outcomes = [row for rows in pool.map(client, range(CLIENTS), [REQUESTS_PER_CLIENT] * CLIENTS,
                                                 [0] * CLIENTS) for row in rows]
        with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as http:
            health = idle(http)
            after = server_rss(process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(REQUEST_TIMEOUT_S)
        log.seek(0)
        server_log = log.read()
        log.close()

    codes = Counter(code for _, code, _, _ in outcomes)
    follow_ups = sum(extra for _, _, extra, _ in outcomes)
    change = sum(after) / sum(before) - 1
    mib = [round(x / 2**20, 1) for x in before + after]
    since_first = sum(after) / sum(first) - 1
    with capsys.disabled():
        print(f"\nserve soak: {len(outcomes)} requests from {CLIENTS} clients (+{follow_ups} follow-up GET/DELETE); "
              f"answers by code: " + ", ".join(f"{code} x{n}" for code, n in sorted(codes.items())) +
              f"; resident memory of the server + its workers after the warm-up ({len(warm)} requests) "
              f"{mib[0] + mib[1]:.1f} MiB ({mib[0]} + {mib[1]}), after the soak {mib[2] + mib[3]:.1f} MiB "
              f"({mib[2]} + {mib[3]}): {change:+.1%} ({since_first:+.1%} since the first {len(names)} requests)")

    assert len(outcomes) == CLIENTS * REQUESTS_PER_CLIENT == 200
    wrong = [(name, code) for name, code, _, _ in outcomes if code != kinds[name][1]]
    assert not wrong, f"unexpected answers: {wrong[:10]}"
    bad = [(name, code, detail) for name, code, _, detail in outcomes if code >= 400]
    assert len(bad) > 100 and all(400 <= code < 500 for _, code, _ in bad)
    assert all(isinstance(detail, str) and len(detail) > 10 and "Traceback" not in detail for _, _, detail in bad)
    assert health == {"status": "ok", "jobs": 0, "active": 0, "stages_running": 0}
    assert change <= MEMORY_TOLERANCE, f"memory grew {change:+.1%}"
    assert list(jobs.iterdir()) == [] and list(server_tmp.iterdir()) == []
    assert "Traceback" not in server_log, server_log[-3000:]
