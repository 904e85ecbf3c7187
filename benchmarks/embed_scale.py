"""Embedding many records: peak memory against the number of records, and a killed run resumed.

    python benchmarks/embed_scale.py                      # 100,000 records against 1,000
    python benchmarks/embed_scale.py --records 10000      # a shorter run
    python benchmarks/embed_scale.py --max-nt 48          # each record cut to its first 48 nt

The records are the bundled RNAcentral sample (resources/rnacentral, 16,201 records) repeated
(ids suffixed ``_r<n>``) up to ``--records``, each cut to its first ``--max-nt`` nucleotides when
that is given (the record count, not the nucleotides, is what the streaming must hold flat; the
cut makes 100,000 records fit where the CPU is slow or shared); the model is the laptop encoder (k = 1, random
weights: the cost does not depend on the weights). Each run is a separate `rnaret embed`
process, so its peak resident memory (``ru_maxrss`` from ``os.wait4``) is its own:

1. ``--out X.h5 --pool mean`` (streamed into HDF5, rnaret.embed_hdf5) on ``--small`` and on
   ``--records`` records: the peak should stay flat;
2. the same records to ``.safetensors --no-per-nucleotide`` (the whole output built in memory,
   rnaret.embed): the program the streaming path is set against;
3. the HDF5 run on ``--records`` killed (SIGKILL) 2 s after the file has grown past the bytes of
   its first chunk of records (2,048 pooled rows), then rerun: its summary line says how many records it found done and how many it
   embedded.

Prints every figure measured in this one run, with the machine's CPU and memory; each run's
wall time and CPU time (user + system, from ``os.wait4``), the CPU time being the figure to read
on a shared machine.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "resources" / "rnacentral" / "rnacentral_sample.fa.gz"


def write_fasta(path: Path, n: int, max_nt: int | None = None) -> int:
    """``n`` records of the bundled corpus, repeated, each cut to its first ``max_nt`` nt when
    given; returns their nucleotides."""
    sys.path.insert(0, str(ROOT))
    from rnaret.io.fasta import read_fasta

    records = [(r.id, r.sequence) for r in read_fasta(CORPUS)]
    total = 0
    with open(path, "w") as handle:
        for i in range(n):
            rid, seq = records[i % len(records)]
            seq = seq[:max_nt] if max_nt else seq
            handle.write(f">{rid}_r{i // len(records)}\n{seq}\n")
            total += len(seq)
    return total


def run(args: list[str], kill_when: tuple[Path, int] | None = None) -> dict:
    """One `rnaret embed` process: wall and CPU seconds, peak RSS (MiB), return code, stderr. With
    ``kill_when`` (a file and a size in bytes), the process is killed (SIGKILL) 2 s after that
    file first grows past that size, or at its end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "rnaret", "embed", *args], stderr=err, env=env, cwd=ROOT)
        if kill_when is not None:
            path, size = kill_when
            while proc.poll() is None and not (path.exists() and path.stat().st_size > size):
                time.sleep(0.2)
            time.sleep(2)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return {"seconds": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024, "rc": proc.returncode, "stderr": text}


def machine() -> tuple[str, float]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return cpu, mem / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="the large run's records (default 100,000)")
    parser.add_argument("--small", type=int, default=1_000, help="the small run's records (default 1,000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run (default 1)")
    parser.add_argument("--max-nt", type=int, default=None,
                        help="cut each record to its first N nucleotides (default: whole records)")
    parser.add_argument("--work", default=None, help="folder for the FASTA and outputs (default: a temporary one)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import torch

    from rnaret.checkpoint import save_encoder
    from rnaret.model import build_encoder
    from rnaret.train.config import preset

    work = Path(args.work or tempfile.mkdtemp(prefix="embed_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_encoder(build_encoder(preset("laptop", 1).encoder_config()), work / "laptop")
    common = ["--checkpoint", str(work / "laptop"), "--quiet", "--threads", str(args.threads), "--precision", "fp32"]
    cpu, mem_mib = machine()
    if args.max_nt is not None and args.max_nt < 1:
        raise SystemExit(f"--max-nt must be >= 1, got {args.max_nt}")
    print(f"machine: {cpu}; {mem_mib:,.0f} MiB memory; {args.threads} torch thread(s) per run; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    print(f"records: the bundled corpus repeated, "
          + (f"each cut to its first {args.max_nt} nt (--max-nt)" if args.max_nt else "whole records"),
          flush=True)
    header = (f"{'records':>9} {'nt':>12} {'output':<24} {'wall s':>8} {'cpu s':>8} {'nt/s cpu':>10} "
              f"{'peak MiB':>9} {'of memory':>9}")
    print(header, flush=True)
    rows = []
    for n in (args.small, args.records):
        fasta = work / f"r{n}.fa"
        nt = write_fasta(fasta, n, args.max_nt)
        h5 = run([str(fasta), "--out", str(work / f"r{n}.h5"), "--pool", "mean", *common])
        st = run([str(fasta), "--out", str(work / f"r{n}.safetensors"), "--no-per-nucleotide", *common])
        for name, result in (("hdf5 (streamed)", h5), ("safetensors (in memory)", st)):
            assert result["rc"] == 0, result["stderr"][-2000:]
            rows.append((n, nt, name, result))
            print(f"{n:>9,} {nt:>12,} {name:<24} {result['seconds']:>8.1f} {result['cpu']:>8.1f} "
                  f"{nt / result['cpu']:>10,.0f} {result['peak_mib']:>9,.0f} {result['peak_mib'] / mem_mib:>9.2%}",
                  flush=True)
    peak = {(n, name): r["peak_mib"] for n, _, name, r in rows}
    print(f"peak memory, {args.records:,} / {args.small:,} records: hdf5 "
          f"{peak[(args.records, 'hdf5 (streamed)')] / peak[(args.small, 'hdf5 (streamed)')]:.2f}x, safetensors "
          f"{peak[(args.records, 'safetensors (in memory)')] / peak[(args.small, 'safetensors (in memory)')]:.2f}x; "
          f"hdf5 / safetensors at {args.records:,}: "
          f"{peak[(args.records, 'hdf5 (streamed)')] / peak[(args.records, 'safetensors (in memory)')]:.2f}x")

    # a killed run, resumed
    big = work / f"r{args.records}.fa"
    out = work / "killed.h5"
    full = next(r for n, _, name, r in rows if n == args.records and name.startswith("hdf5"))
    partial = out.with_name(out.name + ".partial")
    # killed once the first chunk's rows are in the file (HDF5 writes them at the chunk's flush,
    # after which the run marks those records done): its size passes their bytes
    from rnaret.embed_hdf5 import CHUNK_RECORDS

    d = preset("laptop", 1).encoder_config().retnet_embed_dim
    killed = run([str(big), "--out", str(out), "--pool", "mean", *common],
                 kill_when=(partial, CHUNK_RECORDS * d * 4))
    print(f"killed after {killed['seconds']:.1f} s wall, {killed['cpu']:.1f} s CPU (return code {killed['rc']}): "
          f"{partial.name} "
          f"{'exists' if partial.exists() else 'missing'}, {out.name} {'exists' if out.exists() else 'absent'}")
    resumed = run([str(big), "--out", str(out), "--pool", "mean", *common])
    assert resumed["rc"] == 0, resumed["stderr"][-2000:]
    found = re.search(r"\(([\d,]+) found done, ([\d,]+) embedded now\)", resumed["stderr"])
    if found:
        done, now = (int(x.replace(",", "")) for x in found.groups())
        print(f"resumed: {done:,} records found done, {now:,} embedded now ({done + now:,} of {args.records:,}; "
              f"none recomputed: {done + now == args.records}); {resumed['cpu']:.1f} s CPU against "
              f"{full['cpu']:.1f} s for the whole run ({resumed['cpu'] / full['cpu']:.2f}x); peak "
              f"{resumed['peak_mib']:,.0f} MiB")
    else:
        print("resumed: the killed run had finished no chunk (nothing to resume); " + resumed["stderr"].strip()[-300:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
