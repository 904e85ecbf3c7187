"""Peak memory and time of tokenize + shard for 1x, 10x and 50x the bundled corpus sample.

The sample (16,201 RNAcentral records, 8.7 M nt) is repeated with ids made unique
(``<id>_r<n>``). Each size runs ``rnaret.data.shards.write_shards`` in a fresh subprocess, which
reports its own peak resident memory (``ru_maxrss``), and with ``--tracemalloc`` also
tracemalloc's peak of Python/numpy allocations (which slows the run). Flat memory and linear
time are shown as ratios to the 1x run.

    python benchmarks/shards.py [--k 3] [--scales 1 10 50] [--out benchmarks/out] [--tracemalloc]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "rnacentral" / "rnacentral_sample.fa.gz"

CHILD = r"""
import json, resource, sys, time, tracemalloc
from rnaret.data.shards import write_shards
fasta, out, k, tokens_per_shard, run_tokens, trace = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
if trace:
    tracemalloc.start()
start = time.perf_counter()
manifest = write_shards(fasta, out, k, tokens_per_shard=tokens_per_shard, run_tokens=run_tokens,
                        valid_fraction=0.01, seed=0, show_progress=False)
seconds = time.perf_counter() - start
traced_peak = tracemalloc.get_traced_memory()[1] if trace else float("nan")
print(json.dumps({"seconds": seconds, "traced_peak_mib": traced_peak / 2**20,
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "records": sum(s["records"] for s in manifest["splits"].values()),
                  "tokens": sum(s["tokens"] for s in manifest["splits"].values()),
                  "shards": sum(len(s["files"]) for s in manifest["splits"].values())}))
"""


def make_corpus(scale: int, path: Path) -> int:
    """Write the sample ``scale`` times (ids suffixed _r<n>) as plain FASTA; return its records."""
    from rnaret.io.fasta import read_fasta

    records = [(r.id, r.description[len(r.id):], r.sequence) for r in read_fasta(SAMPLE)]
    with open(path, "w") as out:
        for copy in range(scale):
            for rid, rest, seq in records:
                out.write(f">{rid}_r{copy}{rest}\n{seq}\n")
    return len(records) * scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 50])
    # small enough that even the 1x sample fills several runs and shards: the buffers are then
    # at their bounded size at every scale, and any growth would come from the corpus size
    parser.add_argument("--tokens-per-shard", type=int, default=4_000_000)
    parser.add_argument("--run-tokens", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also report tracemalloc's peak (slows allocation-heavy code ~2x)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in args.scales:
        fasta = args.out / f"corpus_x{scale}.fa"
        make_corpus(scale, fasta)
        shard_dir = args.out / f"shards_x{scale}"
        shutil.rmtree(shard_dir, ignore_errors=True)
        wall = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", CHILD, str(fasta), str(shard_dir), str(args.k),
                                 str(args.tokens_per_shard), str(args.run_tokens),
                                 "1" if args.tracemalloc else "0"],
                                capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["scale"] = scale
        row["wall_s"] = time.perf_counter() - wall
        rows.append(row)
        shutil.rmtree(shard_dir, ignore_errors=True)
        fasta.unlink()
    base = rows[0]
    print(f"tokenize + shard, k={args.k}, tokens_per_shard={args.tokens_per_shard:,}, "
          f"run_tokens={args.run_tokens:,}")
    traced = f" {'traced peak MiB':>15}" if args.tracemalloc else ""
    print(f"{'scale':>5} {'records':>10} {'tokens':>13} {'shards':>6} {'time s':>8} {'time/1x':>8} "
          f"{'peak RSS MiB':>12} {'RSS/1x':>7}{traced}")
    for row in rows:
        traced = f" {row['traced_peak_mib']:>15.0f}" if args.tracemalloc else ""
        print(f"{row['scale']:>5} {row['records']:>10,} {row['tokens']:>13,} {row['shards']:>6} "
              f"{row['seconds']:>8.1f} {row['seconds'] / base['seconds']:>8.1f} "
              f"{row['maxrss_mib']:>12.0f} {row['maxrss_mib'] / base['maxrss_mib']:>7.2f}{traced}")
    last = rows[-1]
    print(f"{last['scale']}x the records: time x{last['seconds'] / base['seconds']:.1f} "
          f"(linear would be x{last['scale'] / base['scale']:.0f}), peak RSS "
          f"x{last['maxrss_mib'] / base['maxrss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
