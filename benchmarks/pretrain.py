"""One MLM training step, ours against the published way: tokens/s and peak memory, one run.

Both train the same encoder (paper size by default; AdamW, the published span masking, the
loss on the masked tokens) on the SAME sequences, a seeded random draw from the bundled
RNAcentral sample (its real length mix: median ~130 nt, a few over 2,000):

* published: every sequence cut to its first 2,000 nt and padded to 2,000, batches of
  ``--batch`` rows, parallel retention, no padding mask (PAD acts as tokens, as published);
* ours: the same sequences, uncut, in length-grouped token-budget batches of at most
  ``--batch`` x 2,000 padded tokens (the published batch's size), padding mask, the form the
  encoder picks by length (chunkwise above ``parallel_max_len``). One step = every batch
  needed for these sequences (gradient accumulation), so both do one optimizer update on the
  same data.

tokens/s counts real (non-PAD) tokens: ours trains on more of them (no cut). Peak memory is
measured in a fresh process per way: on CPU the peak RSS during the step over the RSS before
it (VmHWM, reset through /proc/self/clear_refs); on CUDA the peak allocated (bf16 autocast).
The machine may be shared: the ratio, measured in one run, is the figure to read.

Usage: python benchmarks/pretrain.py [--preset paper] [--k 1] [--batch 8] [--device cpu|cuda]
       [--threads 2] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "rnacentral" / "rnacentral_sample.fa.gz"
PUBLISHED_LEN = 2000
GIB = 2**30


def proc_memory(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since start or last reset) of this process, GiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**20
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS (Linux: '5' to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def draw_sequences(n: int, seed: int) -> list[str]:
    """n sequences drawn at random (seeded) from the bundled sample."""
    from rnaret.io.fasta import read_fasta

    records = [r.sequence for r in read_fasta(SAMPLE)]
    return random.Random(seed).sample(records, n)


def batches_for(way: str, sequences: list[str], k: int, batch: int):
    """(list of (B, L) token tensors, padding masks or None, real tokens) for one step."""
    import numpy as np
    import torch

    from rnaret.data.batching import TokenBudgetBatchSampler, collate
    from rnaret.tokenizer import encode

    if way == "published":
        rows = [encode(s, k, crop=PUBLISHED_LEN) for s in sequences]
        out = []
        for start in range(0, len(rows), batch):
            tokens = torch.zeros(batch, PUBLISHED_LEN, dtype=torch.long)  # padded to 2,000 always
            for i, r in enumerate(rows[start:start + batch]):
                tokens[i, : len(r)] = torch.from_numpy(r)
            out.append(tokens)
        masks = [torch.ones_like(t, dtype=torch.bool) for t in out]  # no mask: PAD is a token
        return out, masks, sum(len(r) for r in rows)
    rows = [encode(s, k) for s in sequences]
    sampler = TokenBudgetBatchSampler(np.array([len(r) for r in rows]), batch * PUBLISHED_LEN,
                                      shuffle=False)
    out = [collate([rows[i] for i in b]) for b in sampler]
    return out, [None] * len(out), sum(len(r) for r in rows)


def measure(way: str, args) -> dict:
    """One training step the ``way`` way, in this process; returns seconds, tokens, memory."""
    import torch

    from rnaret.masking import mask_tokens, masked_lm_loss
    from rnaret.train.config import preset
    from rnaret.train.pretrain import build_model

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = preset(args.preset, args.k)
    model = build_model(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sequences = draw_sequences(args.sequences, args.seed)
    token_batches, masks, real_tokens = batches_for(way, sequences, args.k, args.batch)
    gen = torch.Generator().manual_seed(0)
    masked = [mask_tokens(t, args.k, gen) for t in token_batches]
    n_chosen = sum(m.n_chosen for m in masked)
    form = "parallel" if way == "published" else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        for m, mask in zip(masked, masks):
            with autocast:
                logits = model(m.inputs.to(device), form=form,
                               padding_mask=None if mask is None else mask.to(device)).logits
            loss_sum, _ = masked_lm_loss(logits, m.labels.to(device))
            (loss_sum / n_chosen).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    if args.warmup:
        step()
    reset_peak_rss()
    before = proc_memory("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    result = {"way": way, "seconds": seconds, "real_tokens": real_tokens,
              "padded_tokens": sum(t.numel() for t in token_batches), "batches": len(token_batches),
              "extra_gib": proc_memory("VmHWM") - before}
    if device.type == "cuda":
        result["cuda_extra_gib"] = (torch.cuda.max_memory_allocated() - base) / GIB
    return result


def run_way(way: str, args) -> dict:
    """``measure`` in a fresh process, so each way's peak memory is its own."""
    command = [sys.executable, __file__, "--measure", way, "--preset", args.preset, "--k", str(args.k),
               "--batch", str(args.batch), "--sequences", str(args.sequences), "--seed", str(args.seed),
               "--device", args.device, "--threads", str(args.threads), "--warmup", str(args.warmup)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="paper", help="encoder size: paper (default), laptop, tiny")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None,
                        help="published batch rows (default 8 on CPU, 100 on CUDA as published)")
    parser.add_argument("--sequences", type=int, default=None, help="sequences in the step (default = batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 0 on CPU, 1 on CUDA)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.batch = args.batch or (100 if args.device == "cuda" else 8)
    args.sequences = args.sequences or args.batch
    args.warmup = (1 if args.device == "cuda" else 0) if args.warmup is None else args.warmup
    if args.measure:
        print(json.dumps(measure(args.measure, args)))
        return 0

    precision = "bf16 autocast" if args.device == "cuda" else "float32"
    print(f"MLM training step, {args.preset} size, k={args.k}, {args.device} ({precision}, "
          f"{args.threads} threads), {args.sequences} sequences drawn from {SAMPLE.name} (seed {args.seed})")
    lengths = sorted(len(s) for s in draw_sequences(args.sequences, args.seed))
    print(f"  lengths: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]} nt")
    results = {way: run_way(way, args) for way in ("published", "ours")}
    for way, r in results.items():
        memory = r.get("cuda_extra_gib", r["extra_gib"])
        print(f"  {way:>9}: {r['seconds']:8.2f} s, {r['real_tokens']:>8,} real tokens "
              f"({r['padded_tokens']:,} with padding, {r['batches']} batch(es)) = "
              f"{r['real_tokens'] / r['seconds']:9.0f} tokens/s, peak memory +{memory:.2f} GiB")
    pub, ours = results["published"], results["ours"]
    speed = (ours["real_tokens"] / ours["seconds"]) / (pub["real_tokens"] / pub["seconds"])
    mem_key = "cuda_extra_gib" if args.device == "cuda" else "extra_gib"
    memory_ratio = pub[mem_key] / max(ours[mem_key], 1e-6)
    print(f"  ratio (ours / published): {speed:.1f}x tokens/s, {pub['seconds'] / ours['seconds']:.1f}x less "
          f"time per step, {memory_ratio:.1f}x less peak memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
