"""Latency and throughput of `rnaret serve`, measured against a real local server.

Starts ``python -m rnaret serve`` on 127.0.0.1 (a socket bound here and handed over with
``--fd``, so no port can be taken in between) with the given checkpoints — by
default the pipeline's (``results/structure/bprna/rnaret-k1/checkpoint``,
``results/coding/mouse/rnaret-k5/checkpoint``) when both exist, else small untrained demo
checkpoints (``tests/serve_checkpoints.py``; their speed is not the paper-size models') — waits until it
answers, then for a 100-nt and a 2,000-nt real sequence (a bundled bpRNA record and a bundled
mouse transcript, cut to length) sends ``POST /api/predict`` requests, ``--concurrency`` at a
time, and prints the latency percentiles (p50/p90/p99; with few requests p99 is about the
slowest one), requests/s and the mean seconds per stage the server reports.

Bounded: one warm-up request, then at most ``--requests`` (``--long-requests`` for 2,000 nt)
per length; no new request is sent after ``--max-seconds`` per length; the server is stopped at
the end, also on an error or Ctrl-C.

Usage: python benchmarks/serve.py [--requests 32] [--long-requests 4] [--concurrency 4]
       [--max-seconds 120] [--workers 2] [--no-vienna] [--structure-checkpoint DIR]
       [--coding-checkpoint DIR] [--embed-checkpoint PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = {"structure": ROOT / "results/structure/bprna/rnaret-k1/checkpoint",
            "coding": ROOT / "results/coding/mouse/rnaret-k5/checkpoint"}


def sequences() -> dict[int, tuple[str, str]]:
    """{100: (id, seq), 2000: (id, seq)} from the bundled data."""
    from rnaret.io.fasta import read_fasta
    from rnaret.io.structure import read_structures

    short = next(r for r in read_structures(ROOT / "resources/structure/bprna_test.csv") if len(r.sequence) >= 100)
    long = next(r for r in read_fasta(ROOT / "resources/mrna_lncrna/mouse_test.fa.gz") if len(r.sequence) >= 2000)
    return {100: (short.id, short.sequence[:100]), 2000: (long.id.split("|")[0], long.sequence[:2000])}


def start_server(args, workdir: Path) -> tuple[subprocess.Popen, str, str]:
    """Start the server; returns (process, base URL, what checkpoints it serves)."""
    chosen = {"structure": args.structure_checkpoint, "coding": args.coding_checkpoint, "embed": args.embed_checkpoint}
    if chosen["structure"] is None and chosen["coding"] is None:
        if all(p.is_dir() for p in PIPELINE.values()):
            chosen.update({k: str(v) for k, v in PIPELINE.items()})
            what = "the pipeline's fine-tuned checkpoints"
        else:
            sys.path.insert(0, str(ROOT / "tests"))  # the tests' helper writes them
            from serve_checkpoints import tiny_checkpoints

            demo = tiny_checkpoints(workdir / "checkpoints")
            chosen = {k: str(v) for k, v in demo.items()}
            what = "small untrained demo checkpoints (tests/serve_checkpoints.py: d=16, 1 layer)"
    else:
        what = "the given checkpoints"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    command = [sys.executable, "-m", "rnaret", "serve", "--fd", str(sock.fileno()), "--workers", str(args.workers),
               "--tmp-dir", str(workdir), "--log-level", "warning", "--max-jobs", str(max(20, 2 * args.concurrency))]
    for role, path in chosen.items():
        if path:
            command += [f"--{role}-checkpoint", path]
    log = open(workdir / "serve.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, pass_fds=[sock.fileno()])
    sock.close()  # the server holds the only copy: if it dies, the request below fails at once
    base = f"http://127.0.0.1:{port}"
    try:  # waits in the socket's backlog until the server has loaded its models and accepts
        with urllib.request.urlopen(f"{base}/api/health", timeout=600):
            return process, base, what
    except OSError:
        process.kill()
        raise SystemExit(f"the server did not start; its log:\n{(workdir / 'serve.log').read_text()[-3000:]}")


def predict(base: str, body: bytes) -> tuple[float, dict | None, str | None]:
    """One POST /api/predict -> (seconds, job or None, error or None)."""
    started = time.monotonic()
    request = urllib.request.Request(f"{base}/api/predict", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=900) as answer:
            job = json.load(answer)
    except urllib.error.HTTPError as exc:
        return time.monotonic() - started, None, f"{exc.code}: {exc.read()[:200]!r}"
    except OSError as exc:
        return time.monotonic() - started, None, str(exc)
    seconds = time.monotonic() - started
    delete = urllib.request.Request(f"{base}{job['url']}", method="DELETE")
    with urllib.request.urlopen(delete, timeout=30):
        pass
    return seconds, job, None


def run_length(base: str, seq_id: str, sequence: str, n_requests: int, concurrency: int, max_seconds: float,
               vienna: bool) -> dict:
    body = json.dumps({"fasta": f">{seq_id}\n{sequence}\n", "vienna": vienna}).encode()
    warm_seconds, _, error = predict(base, body)  # first-call costs (imports in the workers) not counted
    if error:
        raise SystemExit(f"warm-up request failed: {error}")
    results = []
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = []
        for _ in range(n_requests):
            if time.monotonic() - started > max_seconds:
                break
            futures.append(pool.submit(predict, base, body))
            if len(futures) >= concurrency:  # keep at most `concurrency` in flight, checking the clock
                futures[len(futures) - concurrency].result()
        results = [f.result() for f in futures]
    wall = time.monotonic() - started
    latencies = np.array([s for s, job, err in results if err is None])
    stages: dict[str, list[float]] = {}
    for _, job, err in results:
        if err is None:
            for stage, seconds in job["results"][0]["seconds"].items():
                stages.setdefault(stage, []).append(seconds)
    return {"length": len(sequence), "sent": len(results), "ok": int(len(latencies)),
            "errors": [err for _, _, err in results if err][:3], "warm_up_s": warm_seconds,
            "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "p90": float(np.percentile(latencies, 90)) if len(latencies) else float("nan"),
            "p99": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
            "rps": len(latencies) / wall if wall else float("nan"), "wall": wall,
            "stages": {k: float(np.mean(v)) for k, v in stages.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests for the 100-nt sequence (default 32)")
    parser.add_argument("--long-requests", type=int, default=4, help="requests for the 2,000-nt sequence (default 4)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="stop sending new requests of a length after this long (default 120)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--no-vienna", action="store_true", help="model stages only (no ViennaRNA MFE)")
    parser.add_argument("--structure-checkpoint")
    parser.add_argument("--coding-checkpoint")
    parser.add_argument("--embed-checkpoint")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rnaret-serve-bench-") as tmp:
        startup = time.monotonic()
        process, base, what = start_server(args, Path(tmp))
        try:
            print(f"rnaret serve benchmark: {args.workers} workers on {os.cpu_count()} CPUs, {what}; "
                  f"server up in {time.monotonic() - startup:.1f} s; ViennaRNA {'off' if args.no_vienna else 'on'}, "
                  f"embeddings on")
            print(f"{'length':>7} {'sent':>5} {'ok':>4} {'conc':>5} {'p50 s':>8} {'p90 s':>8} {'p99 s':>8} "
                  f"{'req/s':>7}  mean s per stage (server side)")
            for length, (seq_id, sequence) in sequences().items():
                n = args.requests if length == 100 else args.long_requests
                row = run_length(base, seq_id, sequence, n, args.concurrency, args.max_seconds, not args.no_vienna)
                stages = ", ".join(f"{k} {v:.2f}" for k, v in row["stages"].items())
                print(f"{row['length']:>7} {row['sent']:>5} {row['ok']:>4} {args.concurrency:>5} {row['p50']:>8.3f} "
                      f"{row['p90']:>8.3f} {row['p99']:>8.3f} {row['rps']:>7.2f}  {stages}", flush=True)
                for error in row["errors"]:
                    print(f"        error: {error}")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
