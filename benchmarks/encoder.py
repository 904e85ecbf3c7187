"""Encoder speed and memory, ours against the published way, measured in one run.

Prints, on the machine it runs on (paper-size RetNet, k = 1 by default, eval mode):

(a) throughput on the real length mix of the bundled RNAcentral sample: ours (length-bucketed
    token-budget batches, padding mask, chunkwise above ``parallel_max_len``) against the
    published way (every sequence cut to 2,000 nt and padded to 2,000, batches of 8, parallel
    form, no mask). The published way's cost does not depend on the sequences (every batch is
    8 x 2,000), so it is timed on a few batches and scaled to the sample; ours runs the whole
    sample. With ``--sample N`` a seeded random subsample of N records is used (2 CPU cores:
    the whole sample would take hours the published way). Also printed: the bound on the ratio
    if ours ran all its matmul FLOPs at the machine's fp32 matmul rate.
(b) one sequence of each of ``--lengths`` nt: chunkwise, and parallel where it fits in memory;
    time and peak memory (each case in a fresh subprocess: peak RSS on CPU, peak allocated on
    CUDA), with the ratios at 8k and the 100k checks (memory, time per nt against 2k).
(c) the machine's own fp32 matmul rate, and the share of it the encoder reaches at 32k
    (FLOPs of the matmuls the chunkwise form runs, counted with torch's FlopCounterMode on
    1/10 of the length and scaled: every part of the chunkwise form is linear in length).

Usage: python benchmarks/encoder.py [--threads N] [--device cpu|cuda] [--sample 300]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "rnacentral" / "rnacentral_sample.fa.gz"
PUBLISHED_LEN, PUBLISHED_BATCH = 2000, 8
GIB = 2 ** 30


def build(k: int, device: str):
    from rnaret.model import EncoderConfig, RetNetEncoder

    torch.manual_seed(0)
    return RetNetEncoder(EncoderConfig.paper(k)).to(device).eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")


def proc_memory(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since start or the last reset) of this process, GiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2 ** 20  # kB -> GiB
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS (Linux: '5' to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


# ---------------------------------------------------------------- (b) one case, in a subprocess

def measure_one(form: str, length: int, k: int, device: str) -> dict:
    """Time and peak memory of one forward pass on one random sequence of ``length`` tokens."""
    model = build(k, device)
    tokens = torch.randint(6, 6 + 4 ** k, (1, length), device=device)
    with torch.no_grad(), autocast(device):
        model(tokens[:, :256], form=form)  # warm-up: kernels, allocator
        sync(device)
        reset_peak_rss()
        before = proc_memory("VmRSS")
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        model(tokens, form=form)
        sync(device)
        seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent process
    peak = proc_memory("VmHWM")
    result = {"form": form, "length": length, "seconds": seconds, "rss_before_gib": before,
              "peak_gib": peak, "extra_gib": peak - before}
    if device == "cuda":
        result["cuda_extra_gib"] = (torch.cuda.max_memory_allocated() - base) / GIB
    return result


def run_case(form: str, length: int, args) -> dict:
    command = [sys.executable, __file__, "--measure", f"{form}:{length}", "--k", str(args.k),
               "--device", args.device, "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"form": form, "length": length, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def parallel_fits(length: int, heads: int, device: str) -> tuple[bool, float]:
    """Does the parallel form fit? It holds about three (heads, L, L) float32 matrices."""
    need = 3 * heads * length ** 2 * 4 / GIB
    if device == "cuda":
        free = torch.cuda.mem_get_info()[0] / GIB
    else:
        with open("/proc/meminfo") as handle:
            info = dict(line.split(":", 1) for line in handle)
        free = int(info["MemAvailable"].split()[0]) / 2 ** 20
    return need < 0.6 * free, need


# ---------------------------------------------------------------- (a) the real length mix

def length_mix(args, rate: float, per_token: float) -> None:
    from rnaret.embed import length_batches
    from rnaret.io.fasta import read_fasta
    from rnaret.tokenizer import encode

    records = [r.sequence for r in read_fasta(SAMPLE)]
    total_records = len(records)
    if args.sample and args.sample < len(records):
        records = random.Random(args.seed).sample(records, args.sample)
    lengths = [len(s) for s in records]
    model = build(args.k, args.device)
    print(f"\n(a) throughput on the real length mix: {len(records)} of {total_records} records of "
          f"{SAMPLE.relative_to(ROOT)}" + (f" (seeded subsample, seed {args.seed})" if args.sample else "")
          + f"; {sum(lengths):,} nt, lengths {min(lengths)}..{max(lengths)}, "
          f"median {sorted(lengths)[len(lengths) // 2]}")

    token_lists = [torch.from_numpy(encode(s, args.k)) for s in records]
    batches = length_batches([len(t) for t in token_lists], args.batch_tokens)
    with torch.no_grad(), autocast(args.device):
        model(token_lists[0][None].to(args.device))  # warm-up
        sync(args.device)
        start = time.perf_counter()
        for batch in batches:
            longest = max(len(token_lists[i]) for i in batch)
            tokens = torch.zeros(len(batch), longest, dtype=torch.long)
            for row, i in enumerate(batch):
                tokens[row, :len(token_lists[i])] = token_lists[i]
            model(tokens.to(args.device))
        sync(args.device)
        ours = time.perf_counter() - start

        # the published way: cut to 2,000, pad to 2,000, batches of 8, parallel, no mask
        cut = [t[:PUBLISHED_LEN] for t in token_lists]
        n_batches = -(-len(cut) // PUBLISHED_BATCH)
        timed = min(args.published_batches, n_batches)
        start = time.perf_counter()
        for b in range(timed):
            rows = cut[b * PUBLISHED_BATCH:(b + 1) * PUBLISHED_BATCH]
            tokens = torch.zeros(PUBLISHED_BATCH, PUBLISHED_LEN, dtype=torch.long)
            for row, t in enumerate(rows):
                tokens[row, :len(t)] = t
            tokens = tokens.to(args.device)
            model(tokens, form="parallel", padding_mask=torch.ones_like(tokens, dtype=torch.bool))
        sync(args.device)
        per_batch = (time.perf_counter() - start) / timed
    published = per_batch * n_batches
    published_nt = sum(min(n, PUBLISHED_LEN) for n in lengths)
    print(f"    ours:      {ours:9.1f} s for {sum(lengths):,} nt (every nt, no cut) "
          f"= {sum(lengths) / ours:9.0f} nt/s, {len(batches)} batches of <= {args.batch_tokens} tokens")
    print(f"    published: {published:9.1f} s ({per_batch:.2f} s per {PUBLISHED_BATCH} x {PUBLISHED_LEN} batch, "
          f"timed on {timed} of {n_batches} batches) for {published_nt:,} nt after the cut "
          f"= {published_nt / published:9.0f} nt/s")
    print(f"    ratio: ours is {published / ours:.1f}x faster in wall time and "
          f"{(sum(lengths) / ours) / (published_nt / published):.1f}x in nt/s   (target >= 20x)")
    # ours can at best run its matmul FLOPs at the machine's matmul rate
    ideal = sum(len(t) for t in token_lists) * per_token / rate
    print(f"    bound: ours at 100% of the fp32 matmul rate would take {ideal:.1f} s, so on this machine "
          f"the wall-time ratio cannot exceed {published / ideal:.1f}x")


# ---------------------------------------------------------------- (b) single long sequences

def single_sequences(args) -> dict:
    heads = build(args.k, "cpu").config.retnet_retention_heads
    print(f"\n(b) one sequence, paper size k={args.k}, {args.device}; each case in a fresh process "
          "(memory: peak RSS minus RSS after model + warm-up; CUDA: peak allocated)")
    print(f"    {'length':>7} {'form':>9} {'seconds':>9} {'ms/nt':>7} {'extra GiB':>9} {'peak GiB':>8}")
    results = {}
    for length in args.lengths:
        forms = ["chunkwise"]
        fits, need = parallel_fits(length, heads, args.device)
        if fits:
            forms.append("parallel")
        for form in forms:
            r = run_case(form, length, args)
            results[(form, length)] = r
            if "error" in r:
                print(f"    {length:>7} {form:>9}   failed: {r['error']}")
                continue
            extra = r.get("cuda_extra_gib", r["extra_gib"])
            print(f"    {length:>7} {form:>9} {r['seconds']:9.2f} {1e3 * r['seconds'] / length:7.3f} "
                  f"{extra:9.3f} {r['peak_gib']:8.2f}", flush=True)
        if not fits:
            print(f"    {length:>7}  parallel   skipped: needs ~{need:.0f} GiB")
    def extra(r):
        return r.get("cuda_extra_gib", r["extra_gib"])
    if ("parallel", 8000) in results and ("chunkwise", 8000) in results \
            and "error" not in results[("parallel", 8000)] and "error" not in results[("chunkwise", 8000)]:
        p, c = results[("parallel", 8000)], results[("chunkwise", 8000)]
        print(f"    at 8k: chunkwise {p['seconds'] / c['seconds']:.1f}x faster (target >= 8x), "
              f"{extra(p) / max(extra(c), 1e-9):.1f}x less extra memory (target >= 4x)")
    if ("chunkwise", 100000) in results and ("chunkwise", 2000) in results \
            and "error" not in results[("chunkwise", 100000)]:
        big, small = results[("chunkwise", 100000)], results[("chunkwise", 2000)]
        per = (big["seconds"] / 100000) / (small["seconds"] / 2000)
        print(f"    at 100k: peak {big['peak_gib']:.2f} GiB in all ({extra(big):.2f} GiB for the forward; "
              f"target <= 4 GiB); time per nt {per:.2f}x that at 2k (target <= 1.5x)")
    return results


# ---------------------------------------------------------------- (c) share of the matmul rate

def matmul_rate(device: str) -> float:
    n = 4096 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        a @ b
        reps += 1
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def flops_per_token(args, length: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = build(args.k, args.device)
    tokens = torch.randint(6, 10, (1, length), device=args.device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(tokens, form="chunkwise")
    return counter.get_total_flops() / length


def matmul_share(args, results: dict, rate: float, per_token: float) -> None:
    print(f"\n(c) fp32 matmul rate of this machine ({args.device}, {args.threads} threads): {rate / 1e9:.1f} GFLOP/s")
    r = results.get(("chunkwise", 32000))
    if not r or "error" in r:
        print("    (no 32k chunkwise run to compare)")
        return
    achieved = per_token * 32000 / r["seconds"]
    print(f"    encoder at 32k: {per_token / 1e6:.1f} MFLOP per token (matmuls, counted at 3,200 and scaled), "
          f"{achieved / 1e9:.1f} GFLOP/s = {100 * achieved / rate:.0f}% of the matmul rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--sample", type=int, default=300,
                        help="records drawn from the sample for (a); 0 = all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-tokens", type=int, default=16384)
    parser.add_argument("--published-batches", type=int, default=2,
                        help="batches timed the published way in (a)")
    parser.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")],
                        default=[2000, 8000, 32000, 100000])
    parser.add_argument("--parts", default="abc", help="which of a, b, c to run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        form, length = args.measure.split(":")
        print(json.dumps(measure_one(form, int(length), args.k, args.device)))
        return
    print(f"rnaret encoder benchmark: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    rate = matmul_rate(args.device)
    per_token = flops_per_token(args, 3200)
    if "a" in args.parts:
        length_mix(args, rate, per_token)
    results = single_sequences(args) if "b" in args.parts or "c" in args.parts else {}
    if "c" in args.parts:
        matmul_share(args, results, rate, per_token)


if __name__ == "__main__":
    main()
