"""Encoder speed and memory, ours against the published code, measured in one run.

Paper-size RetNet (k = 1 by default), eval mode, the same weights in both models, on the machine
it runs on, in each precision of ``--precisions`` (fp32, and bf16 autocast: ``rnaret.precision``):

(a) the real length mix of the bundled RNAcentral sample (a seeded subsample of ``--sample``
    records): ours (``rnaret.embed.length_batches`` token-budget batches, padding mask, the form
    chosen by length) against the published way (every sequence cut to 2,000 nt and padded to
    2,000, batches of 8, as the published scripts batch). With ``--published-repo`` the
    published batches run through the published ``retnet.py`` itself (``published_code.py``),
    else through our model run the published way (parallel form, no mask). Each published
    batch costs the same (8 x 2,000 always), so it is timed on ``--published-batches`` batches
    and scaled to the sample. The outputs are checked to agree (ours with every position real,
    as the published code treats PAD, against the published model on the same batch).
    Printed: the ratios, and the bound on them if ours ran all its matmul FLOPs (counted with
    torch's FlopCounterMode on the same batches) at the machine's measured matmul rate.
(b) one sequence of each of ``--lengths`` nt, each case in a fresh process: ours (chunkwise) in
    every precision, the published code (or the stand-in) in fp32 where it fits; time and
    memory (CPU: peak RSS over the RSS after model and warm-up, and the peak RSS in all; CUDA:
    peak allocated), the ratios at 8,000 nt and the 100,000-nt peak.
(c) the machine's matmul rate in fp32 and bf16 (2048^2 on CPU, 4096^2 on CUDA) and the share of
    it the encoder reaches at 32k (FLOPs of the chunkwise form's matmuls counted on 1/10 of the
    length and scaled: every part of it is linear in length).

On the CPU every time is given as wall time and as the process's CPU time: with one thread the
CPU time is the work done, and moves much less than wall time when the machine is shared.
Ratios are taken within one run.

(d) (``--parts d``, not by default) ``torch.compile`` (inductor, dynamic shapes) of our forward
    on the mix against eager: compile time, speed-up, output difference.

The share of the measured matmul rate that our forward reaches on the mix, (a), is the figure
the encoder's speed is judged by (targets: 80% fp32, 70% bf16): the rate is measured again
right before each precision's timing, and the forward's time is split (torch.profiler) into
the matmul kernels and the rest, which says what bounds the share.

Usage: python benchmarks/encoder.py [--threads 1] [--device cpu|cuda] [--sample 300]
       [--published-repo /path/to/RNAret] [--precisions fp32,bf16] [--parts abc]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # rnaret from this checkout; published_code beside this file

from published_code import add_published_arguments, copy_weights, import_published, published_encoder  # noqa: E402

SAMPLE = ROOT / "resources" / "rnacentral" / "rnacentral_sample.fa.gz"
PUBLISHED_LEN, PUBLISHED_BATCH = 2000, 8
SHARE_TARGET = {"fp32": 80, "bf16": 70}  # % of the measured matmul rate on the length mix
GIB = 2 ** 30


# ---------------------------------------------------------------- shared pieces

def build_ours(k: int, device: str):
    """The paper-size RetNet at k, seeded random weights, eval mode."""
    from rnaret.model import EncoderConfig, RetNetEncoder

    torch.manual_seed(0)
    return RetNetEncoder(EncoderConfig.paper(k)).to(device).eval()


def build_theirs(args, ours):
    """The published RetNet with our weights (eval), or None without ``--published-repo``."""
    if not args.published_repo:
        return None
    module = import_published(args.published_repo, args.published_deps)
    theirs = published_encoder(module, ours.config)
    copy_weights(ours, theirs)
    return theirs.to(args.device).eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def precision_context(device: str, precision: str):
    """``rnaret.precision.autocast``: the one switch, for ours and for the published code."""
    from rnaret.precision import autocast

    return autocast(device, precision)


@contextlib.contextmanager
def timed(device: str, into: dict):
    """Wall and process CPU seconds of the block (CUDA synchronised) -> into['wall'], ['cpu']."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    sync(device)
    into["wall"], into["cpu"] = time.perf_counter() - wall, time.process_time() - cpu


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


def published_forward(theirs, ours):
    """tokens (B, L) -> logits, the published way: the published code's forward, or (no
    checkout) ours in the parallel form with every position real (PAD acts as a token)."""
    if theirs is not None:
        return lambda tokens: theirs(tokens)[0]
    return lambda tokens: ours(tokens, form="parallel", padding_mask=torch.ones_like(tokens, dtype=torch.bool)).logits


def count_flops(model, batches, device: str, precision: str) -> float:
    """Matmul FLOPs of ``model`` over ``batches`` (torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), precision_context(device, precision), counter:
        for tokens in batches:
            model(tokens.to(device))
    return float(counter.get_total_flops())


# ---------------------------------------------------------------- (c) matmul rates

def matmul_rate(device: str, precision: str) -> dict:
    """GFLOP/s of an n x n matmul (n = 2048 CPU, 4096 CUDA) in ``precision``, per wall second
    and (CPU) per CPU second of this process."""
    n = 4096 if device == "cuda" else 2048
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    reps, clock = 0, {}
    with timed(device, clock):
        start = time.perf_counter()
        while time.perf_counter() - start < 2.0:
            a @ b
            reps += 1
    flops = 2 * n ** 3 * reps
    return {"wall": flops / clock["wall"] / 1e9, "cpu": flops / max(clock["cpu"], 1e-9) / 1e9}


# ---------------------------------------------------------------- (a) the real length mix

def length_mix(args, ours, theirs, rates) -> None:
    from rnaret.embed import length_batches
    from rnaret.io.fasta import read_fasta
    from rnaret.tokenizer import encode

    records = [r.sequence for r in read_fasta(SAMPLE)]
    total_records = len(records)
    if args.sample and args.sample < len(records):
        records = random.Random(args.seed).sample(records, args.sample)
    lengths = [len(s) for s in records]
    token_lists = [torch.from_numpy(encode(s, args.k)) for s in records]
    ours_batches = []
    for batch in length_batches([len(t) for t in token_lists], args.batch_tokens):
        tokens = torch.zeros(len(batch), max(len(token_lists[i]) for i in batch), dtype=torch.long)
        for row, i in enumerate(batch):
            tokens[row, :len(token_lists[i])] = token_lists[i]
        ours_batches.append(tokens)
    cut = [t[:PUBLISHED_LEN] for t in token_lists]
    published_batches = []
    for start in range(0, len(cut), PUBLISHED_BATCH):
        tokens = torch.zeros(PUBLISHED_BATCH, PUBLISHED_LEN, dtype=torch.long)  # padded to 2,000 always
        for row, t in enumerate(cut[start:start + PUBLISHED_BATCH]):
            tokens[row, :len(t)] = t
        published_batches.append(tokens)
    real_nt, published_nt = sum(lengths), sum(min(n, PUBLISHED_LEN) for n in lengths)
    timed_batches = min(args.published_batches, len(published_batches))
    who = "the published code" if theirs is not None else "our model run the published way (stand-in)"
    print(f"\n(a) real length mix: {len(records)} of {total_records} records of {SAMPLE.relative_to(ROOT)}"
          + (f" (seeded subsample, seed {args.seed})" if args.sample else "")
          + f"; {real_nt:,} nt, lengths {min(lengths)}..{max(lengths)}, median {sorted(lengths)[len(lengths) // 2]}")
    print(f"    ours: {len(ours_batches)} batches of <= {args.batch_tokens} tokens, every nt; published way "
          f"({who}): {len(published_batches)} batches of {PUBLISHED_BATCH} x {PUBLISHED_LEN}, {published_nt:,} nt "
          f"after the cut, timed on {timed_batches} and scaled")
    forward = published_forward(theirs, ours)
    device = args.device

    # the outputs agree: the published batch through both models, every position real
    first = published_batches[0].to(device)
    with torch.no_grad():
        reference = forward(first).float()
        agree = {}
        for precision in args.precisions:
            with precision_context(device, precision):
                mine = ours(first, padding_mask=torch.ones_like(first, dtype=torch.bool)).logits.float()
            agree[precision] = ((mine - reference).abs().max().item(),
                                ((mine - reference).norm() / reference.norm()).item())
    print("    outputs agree (published batch 1, PAD as tokens, ours chunkwise vs published fp32): "
          + "; ".join(f"{p}: max |diff| {a:.2e}, relative {r:.1e}" for p, (a, r) in agree.items()))

    results = {}
    for precision in args.precisions:
        # the rate again right before ours runs: on a shared machine it moves with the load
        rates[precision] = matmul_rate(device, precision)
        with torch.no_grad(), precision_context(device, precision):
            ours(ours_batches[-1].to(device))  # warm-up
            forward(published_batches[0][:1, :256].to(device))
            mine, theirs_time = {}, {}
            with timed(device, mine):
                for tokens in ours_batches:
                    ours(tokens.to(device))
            with timed(device, theirs_time):
                for tokens in published_batches[:timed_batches]:
                    forward(tokens.to(device))
        scale = len(published_batches) / timed_batches
        results[precision] = (mine, {k: v * scale for k, v in theirs_time.items()})
    clocks = ("wall", "cpu") if device == "cpu" else ("wall",)
    print(f"    {'precision':>9} {'clock':>5} {'ours s':>9} {'published s':>12} {'ratio':>7} {'nt/s ratio':>10}")
    for precision, (mine, pub) in results.items():
        for clock in clocks:
            ratio = pub[clock] / mine[clock]
            print(f"    {precision:>9} {clock:>5} {mine[clock]:9.1f} {pub[clock]:12.1f} {ratio:6.1f}x "
                  f"{ratio * real_nt / published_nt:9.1f}x")
    target = {"fp32": 20, "bf16": 50}
    if "fp32" in results:
        base = results["fp32"][1]
        for precision, (mine, _) in results.items():
            line = ", ".join(f"{clock} {base[clock] / mine[clock]:.1f}x" for clock in clocks)
            print(f"    ours {precision} against the published way in fp32: {line} (target >= {target[precision]}x)")
    flop_precision = "bf16" if "bf16" in args.precisions else args.precisions[0]
    flops = count_flops(ours, ours_batches, device, flop_precision)
    print(f"    ours: {flops / 1e12:.2f} TFLOP of matmuls on the mix ({flops / real_nt / 1e6:.1f} MFLOP per nt); "
          "at 100% of the measured matmul rate it would take, and the ratio could not exceed:")
    for precision, (mine, pub) in results.items():
        for clock in clocks:
            ideal = flops / (rates[precision][clock] * 1e9)
            pub32 = results.get("fp32", (None, pub))[1][clock]
            print(f"      {precision} ({clock}): {ideal:.1f} s at {rates[precision][clock]:.0f} GFLOP/s -> bound "
                  f"{pub32 / ideal:.1f}x against the published fp32; ours reaches "
                  f"{100 * ideal / mine[clock]:.0f}% of the rate (target >= {SHARE_TARGET[precision]}%)")
    print("    where the time goes (torch.profiler, self time over the mix):")
    for precision, (mine, _) in results.items():
        split = profile_split(ours, ours_batches, device, precision)
        clock = "cpu" if device == "cpu" else "wall"
        share = flops / (rates[precision][clock] * 1e9) / mine[clock]
        kernel_share = 100 * share / split["matmul_fraction"] if split["matmul_fraction"] else 0.0
        print(f"      {precision}: matmul kernels {100 * split['matmul_fraction']:.0f}% of the time, at "
              f"{kernel_share:.0f}% of the measured rate on their own; elementwise and copies "
              f"{100 * (1 - split['matmul_fraction']):.0f}% (largest: {split['top']})")


MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::baddbmm", "aten::baddbmm_", "aten::addmm", "aten::_weight_int8pack_mm")


def profile_split(model, batches, device: str, precision: str) -> dict:
    """Self CPU time of the forward over ``batches`` split into matmul kernels and the rest
    (``torch.profiler``): {'matmul': s in matmul kernels, 'matmul_fraction', 'top': the three
    largest other ops}. Only the fraction is used (the share the whole forward reaches over the
    matmuls' fraction of its time is the share the matmul kernels reach on their own)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), precision_context(device, precision), profile(activities=[ProfilerActivity.CPU]) as prof:
        for tokens in batches:
            model(tokens.to(device))
    events = [(e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()]
    total = sum(t for _, t in events)
    matmul = sum(t for k, t in events if k in MATMUL_OPS)
    others = sorted(((t, k) for k, t in events if k not in MATMUL_OPS), reverse=True)[:3]
    return {"matmul": matmul, "matmul_fraction": matmul / total if total else 0.0,
            "top": ", ".join(f"{k.removeprefix('aten::')} {100 * t / total:.0f}%" for t, k in others)}


def compiled_mix(args) -> None:
    """(d) ``torch.compile`` (inductor, dynamic shapes) of our forward on the length mix against
    eager, in one run: the compile time (first pass over every batch shape) apart, then the
    best of two timed passes of each, and the largest difference of their outputs."""
    batches = mix_batches(args)
    ours = build_ours(args.k, args.device)
    compiled = torch.compile(ours, dynamic=True)
    print(f"\n(d) torch.compile (inductor, dynamic=True) against eager on the mix ({len(batches)} batches):")
    for precision in args.precisions:
        with torch.no_grad(), precision_context(args.device, precision):
            first = {}
            with timed(args.device, first):
                for tokens in batches:
                    compiled(tokens.to(args.device))
            diff = max((compiled(t.to(args.device)).logits.float() - ours(t.to(args.device)).logits.float())
                       .abs().max().item() for t in batches[:3])
            best = {}
            for name, model in (("eager", ours), ("compiled", compiled)):
                for _ in range(2):
                    clock = {}
                    with timed(args.device, clock):
                        for tokens in batches:
                            model(tokens.to(args.device))
                    best[name] = min(best.get(name, float("inf")), clock["wall"])
        print(f"    {precision}: compile + first pass {first['wall']:.1f} s; eager {best['eager']:.2f} s, compiled "
              f"{best['compiled']:.2f} s = {best['eager'] / best['compiled']:.2f}x; outputs differ by at most "
              f"{diff:.1e}")


def mix_batches(args) -> list:
    """Our token-budget batches of the seeded subsample of the bundled RNAcentral sample."""
    from rnaret.embed import length_batches
    from rnaret.io.fasta import read_fasta
    from rnaret.tokenizer import encode

    records = [r.sequence for r in read_fasta(SAMPLE)]
    if args.sample and args.sample < len(records):
        records = random.Random(args.seed).sample(records, args.sample)
    token_lists = [torch.from_numpy(encode(s, args.k)) for s in records]
    batches = []
    for batch in length_batches([len(t) for t in token_lists], args.batch_tokens):
        tokens = torch.zeros(len(batch), max(len(token_lists[i]) for i in batch), dtype=torch.long)
        for row, i in enumerate(batch):
            tokens[row, :len(token_lists[i])] = token_lists[i]
        batches.append(tokens)
    return batches


# ---------------------------------------------------------------- (b) single long sequences

def measure_one(impl: str, precision: str, length: int, args) -> dict:
    """Time and memory of one forward on one random sequence of ``length`` tokens (this process)."""
    device = args.device
    ours = build_ours(args.k, device)
    if impl == "published":
        forward = published_forward(build_theirs(args, ours), ours)
        del ours
    elif impl == "stand-in":
        forward = published_forward(None, ours)
    else:
        forward = lambda tokens: ours(tokens, form="chunkwise").logits  # noqa: E731
    tokens = torch.randint(6, 6 + 4 ** args.k, (1, length), device=device)
    clock = {}
    with torch.no_grad(), precision_context(device, precision):
        forward(tokens[:, :256])  # warm-up: kernels, allocator
        sync(device)
        reset_peak_rss()
        before = proc_memory("VmRSS")
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        with timed(device, clock):
            forward(tokens)
    peak = proc_memory("VmHWM")  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec
    result = {"impl": impl, "precision": precision, "length": length, **clock, "rss_before_gib": before,
              "peak_gib": peak, "extra_gib": peak - before}
    if device == "cuda":
        result["cuda_extra_gib"] = (torch.cuda.max_memory_allocated() - base) / GIB
        result["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / GIB
    return result


def run_case(impl: str, precision: str, length: int, args) -> dict:
    command = [sys.executable, __file__, "--measure", f"{impl}:{precision}:{length}", "--k", str(args.k),
               "--device", args.device, "--threads", str(args.threads), "--published-deps", args.published_deps]
    if args.published_repo:
        command += ["--published-repo", args.published_repo]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"impl": impl, "precision": precision, "length": length, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def published_fits(length: int, heads: int, device: str) -> tuple[bool, float]:
    """Does the published (parallel) forward fit? It holds about six (heads, L, L) fp32 matrices."""
    need = 6 * heads * length ** 2 * 4 / GIB
    if device == "cuda":
        free = torch.cuda.mem_get_info()[0] / GIB
    else:
        with open("/proc/meminfo") as handle:
            info = dict(line.split(":", 1) for line in handle)
        free = int(info["MemAvailable"].split()[0]) / 2 ** 20
    return need < 0.6 * free, need


def extra(r: dict) -> float:
    return r.get("cuda_extra_gib", r["extra_gib"])


def single_sequences(args) -> dict:
    heads = 4
    other = "published" if args.published_repo else "stand-in"
    print(f"\n(b) one sequence, paper size k={args.k}, {args.device}, each case in a fresh process; memory: "
          + ("peak allocated (extra: over the allocation before the forward)" if args.device == "cuda" else
             "extra = peak RSS minus RSS after model + warm-up; peak = peak RSS in all")
          + f"; {other} in fp32 up to {args.published_max_len:,} nt where it fits")
    print(f"    {'length':>7} {'impl':>9} {'prec':>5} {'wall s':>8} {'cpu s':>8} {'ms/nt':>7} {'extra GiB':>9} {'peak GiB':>8}")
    results = {}
    for length in args.lengths:
        cases = [("ours", p) for p in args.precisions]
        fits, need = published_fits(length, heads, args.device)
        if length <= args.published_max_len and fits:
            cases.append((other, "fp32"))
        for impl, precision in cases:
            r = run_case(impl, precision, length, args)
            results[(impl, precision, length)] = r
            if "error" in r:
                print(f"    {length:>7} {impl:>9} {precision:>5}   failed: {r['error']}")
                continue
            peak = r.get("cuda_peak_gib", r["peak_gib"])
            print(f"    {length:>7} {impl:>9} {precision:>5} {r['wall']:8.2f} {r['cpu']:8.2f} "
                  f"{1e3 * r['wall'] / length:7.3f} {extra(r):9.3f} {peak:8.2f}", flush=True)
        if length > args.published_max_len or not fits:
            print(f"    {length:>7} {other:>9}  fp32 not run: "
                  + (f"needs ~{need:.0f} GiB" if not fits else f"over --published-max-len"))
    mine, pub = results.get(("ours", "fp32", 8000)), results.get((other, "fp32", 8000))
    if mine and pub and "error" not in mine and "error" not in pub:
        times = ", ".join(f"{c} {pub[c] / mine[c]:.1f}x" for c in ("wall", "cpu"))
        print(f"    at 8k, fp32, ours against {other}: {times} faster (target >= 30x), "
              f"{extra(pub) / max(extra(mine), 1e-9):.1f}x less extra memory (target >= 15x)")
    for precision in args.precisions:
        big = results.get(("ours", precision, 100000))
        if big and "error" not in big:
            peak = big.get("cuda_peak_gib", big["peak_gib"])
            small = results.get(("ours", precision, 2000))
            per = (f"; time per nt {(big['wall'] / 100000) / (small['wall'] / 2000):.2f}x that at 2k"
                   if small and "error" not in small else "")
            print(f"    at 100k, ours {precision}: peak {peak:.2f} GiB in all, {extra(big):.2f} GiB for the "
                  f"forward (target <= 2 GiB){per}")
    return results


def matmul_share(args, results: dict, rates: dict) -> None:
    from rnaret.tokenizer import vocab_size

    print(f"\n(c) matmul rate of this machine ({args.device}, {args.threads} thread(s), "
          f"{'2048' if args.device == 'cpu' else '4096'}^2):")
    for precision in args.precisions:
        r = rates[precision]
        print(f"    {precision}: {r['wall']:.0f} GFLOP/s per wall second"
              + (f", {r['cpu']:.0f} per CPU second" if args.device == "cpu" else ""))
    ours = build_ours(args.k, args.device)
    tokens = torch.randint(6, vocab_size(args.k), (1, 3200))
    per_token = count_flops_one(ours, tokens, args.device)
    for precision in args.precisions:
        r = results.get(("ours", precision, 32000))
        if not r or "error" in r:
            print(f"    {precision}: no 32k run to compare")
            continue
        clocks = ("wall", "cpu") if args.device == "cpu" else ("wall",)
        share = ", ".join(f"{100 * per_token * 32000 / r[c] / 1e9 / rates[precision][c]:.0f}% ({c})" for c in clocks)
        print(f"    encoder at 32k, {precision}: {per_token / 1e6:.1f} MFLOP per token (counted at 3,200, "
              f"scaled), {per_token * 32000 / r['wall'] / 1e9:.0f} GFLOP/s wall = {share} of the rate "
              "(target >= 50%)")


def count_flops_one(model, tokens, device: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(tokens.to(device), form="chunkwise")
    return counter.get_total_flops() / tokens.shape[1]


def main() -> None:
    from rnaret.precision import bf16_matmul_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--sample", type=int, default=300, help="records drawn from the sample for (a); 0 = all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-tokens", type=int, default=16384)
    parser.add_argument("--published-batches", type=int, default=2, help="batches timed the published way in (a)")
    parser.add_argument("--published-max-len", type=int, default=8000,
                        help="longest single sequence run the published way in (b) (default 8000)")
    parser.add_argument("--precisions", type=lambda s: s.split(","), default=None,
                        help="comma-separated fp32,bf16 (default both; bf16 runs without bf16 "
                             "matrix units too, the header says whether the device has them)")
    parser.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")],
                        default=[2000, 8000, 32000, 100000])
    parser.add_argument("--parts", default="abc",
                        help="which of a, b, c, d to run (d: torch.compile against eager on the mix; not by default)")
    add_published_arguments(parser)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch finds no CUDA device here")
    if args.device == "cuda":
        from rnaret.precision import configure_precision

        configure_precision("cuda", "fp32")  # TF32 for the fp32 path, as the commands set it
    if args.measure:
        impl, precision, length = args.measure.split(":")
        print(json.dumps(measure_one(impl, precision, int(length), args)))
        return
    if args.precisions is None:
        args.precisions = ["fp32", "bf16"]
    for p in args.precisions:
        if p not in ("fp32", "bf16"):
            raise SystemExit(f"--precisions: {p!r} is not fp32 or bf16")
    print(f"rnaret encoder benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f", precisions {','.join(args.precisions)}, bf16 matrix units: {bf16_matmul_available(args.device)}"
          + (f"; published code: {args.published_repo}" if args.published_repo else
             "; no --published-repo: our model run the published way stands in"))
    rates = {p: matmul_rate(args.device, p) for p in args.precisions}
    ours = build_ours(args.k, args.device)
    if "a" in args.parts:
        length_mix(args, ours, build_theirs(args, ours), rates)
    del ours
    results = single_sequences(args) if ("b" in args.parts or "c" in args.parts) else {}
    if "c" in args.parts:
        matmul_share(args, results, rates)
    if "d" in args.parts:
        compiled_mix(args)


if __name__ == "__main__":
    main()
