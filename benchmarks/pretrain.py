"""One MLM training step, ours against the published code: tokens/s and peak memory, one run.

Each way trains the same encoder (paper size by default; same initial weights; AdamW, the
published span masking, the loss on the masked tokens) on the SAME sequences, a seeded random
draw from the bundled RNAcentral sample (its real length mix: median ~130 nt, a few over 2,000),
in each precision of ``--precisions`` (fp32, bf16 autocast: ``rnaret.precision``, the same for
every way):

* published code (with ``--published-repo``): the published ``retnet.py`` itself
  (``published_code.py``), every sequence cut to its first 2,000 nt and padded to 2,000,
  batches of ``--batch`` rows, no padding mask (PAD acts as tokens), as the published
  pretraining script runs it;
* published way: our model run that way (parallel form, no mask, cut and padded), the stand-in
  when no checkout is given;
* ours: the same sequences, uncut, in length-grouped token-budget batches of at most
  ``--batch`` x 2,000 padded tokens (the published batch's size), padding mask, the form the
  encoder picks by length, and the training loop's loss (``rnaret.train.pretrain.mlm_loss``:
  the MLM head at the chosen positions only) and optimizer (fused AdamW). One step = every batch needed for these sequences (gradient
  accumulation), so every way does one optimizer update on the same data.

tokens/s counts real (non-PAD) tokens: ours trains on more of them (no cut). Each way and
precision runs in a fresh process: on CPU the peak RSS during the step over the RSS before it
(VmHWM, reset through /proc/self/clear_refs); on CUDA the peak allocated. Times are wall and
(CPU) process CPU seconds, which move less than wall time on a shared machine. The machine may
be shared: the ratios, measured in one run, are the figures to read.

Usage: python benchmarks/pretrain.py [--preset paper] [--k 1] [--batch 8] [--device cpu|cuda]
       [--threads 2] [--seed 0] [--precisions fp32,bf16] [--published-repo /path/to/RNAret]
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # rnaret from this checkout; published_code beside this file

from published_code import add_published_arguments, copy_weights, import_published, published_encoder  # noqa: E402

WAYS = ("published-code", "published-way", "ours")
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

    if way != "ours":
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


def measure(way: str, precision: str, args) -> dict:
    """One training step the ``way`` way in ``precision``, in this process; returns seconds
    (wall, cpu), tokens, memory."""
    import torch

    from rnaret.masking import IGNORE_INDEX, mask_tokens, masked_lm_loss
    from rnaret.precision import autocast
    from rnaret.train.config import preset
    from rnaret.train.data import LocalBatch
    from rnaret.train.guard import make_adamw
    from rnaret.train.pretrain import build_model, mlm_loss

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = preset(args.preset, args.k)
    model = build_model(config).to(device).train()
    if way == "published-code":
        theirs = published_encoder(import_published(args.published_repo, args.published_deps),
                                   model.config)
        copy_weights(model, theirs)  # the same initial weights
        model = theirs.to(device).train()
    if way == "ours":  # the training loop's own optimizer (fused AdamW)
        optimizer = make_adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sequences = draw_sequences(args.sequences, args.seed)
    token_batches, masks, real_tokens = batches_for(way, sequences, args.k, args.batch)
    gen = torch.Generator().manual_seed(0)
    masked = [mask_tokens(t, args.k, gen) for t in token_batches]
    n_chosen = sum(m.n_chosen for m in masked)

    def loss_of(m, mask):
        """Summed MLM loss of one micro-batch: the published ways project every position to the
        vocabulary, as published; ours is the training loop's (the head at the chosen positions)."""
        inputs, labels = m.inputs.to(device), m.labels.to(device)
        if way == "ours":
            flat = labels.flatten()
            positions = (flat != IGNORE_INDEX).nonzero().squeeze(-1)
            batch = LocalBatch(inputs, positions, flat[positions], torch.zeros(len(inputs), dtype=torch.long))
            return mlm_loss(model, batch)[0]
        if way == "published-code":
            logits = model(inputs)[0]
        else:
            logits = model(inputs, form="parallel", padding_mask=mask.to(device)).logits
        return masked_lm_loss(logits.float(), labels)[0]

    def step():
        for m, mask in zip(masked, masks):
            with autocast(device, precision):
                loss_sum = loss_of(m, mask)
            (loss_sum / n_chosen).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    reset_peak_rss()
    before = proc_memory("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {"way": way, "precision": precision, "wall": wall, "cpu": cpu, "real_tokens": real_tokens,
              "padded_tokens": sum(t.numel() for t in token_batches), "batches": len(token_batches),
              "extra_gib": proc_memory("VmHWM") - before}
    if device.type == "cuda":
        result["cuda_extra_gib"] = (torch.cuda.max_memory_allocated() - base) / GIB
    return result


def run_way(way: str, precision: str, args) -> dict:
    """``measure`` in a fresh process, so each way's peak memory is its own."""
    command = [sys.executable, __file__, "--measure", f"{way}:{precision}", "--preset", args.preset,
               "--k", str(args.k), "--batch", str(args.batch), "--sequences", str(args.sequences),
               "--seed", str(args.seed), "--device", args.device, "--threads", str(args.threads),
               "--warmup", str(args.warmup), "--published-deps", args.published_deps]
    if args.published_repo:
        command += ["--published-repo", args.published_repo]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:  # e.g. out of memory: reported, the other ways still run
        lines = done.stderr.strip().splitlines()
        return {"way": way, "precision": precision, "error": lines[-1] if lines else f"exit {done.returncode}"}
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
    parser.add_argument("--precisions", type=lambda s: s.split(","), default=None,
                        help="comma-separated fp32,bf16 (default both)")
    parser.add_argument("--ways", type=lambda s: s.split(","), default=None,
                        help=f"which of {','.join(WAYS)} (default: all; published-code needs --published-repo)")
    add_published_arguments(parser)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.batch = args.batch or (100 if args.device == "cuda" else 8)
    args.sequences = args.sequences or args.batch
    args.warmup = (1 if args.device == "cuda" else 0) if args.warmup is None else args.warmup
    if args.device == "cuda":
        from rnaret.precision import configure_precision

        configure_precision("cuda", "fp32")  # TF32 for the fp32 path, as the commands set it
    if args.measure:
        way, precision = args.measure.split(":")
        print(json.dumps(measure(way, precision, args)))
        return 0
    precisions = args.precisions or ["fp32", "bf16"]
    ways = args.ways or [w for w in WAYS if w != "published-code" or args.published_repo]
    if "published-code" in ways and not args.published_repo:
        raise SystemExit("--ways published-code needs --published-repo")

    print(f"MLM training step, {args.preset} size, k={args.k}, {args.device} ({args.threads} threads), "
          f"{args.sequences} sequences drawn from {SAMPLE.name} (seed {args.seed}), precisions "
          f"{','.join(precisions)}" + (f", published code {args.published_repo}" if args.published_repo else ""))
    lengths = sorted(len(s) for s in draw_sequences(args.sequences, args.seed))
    print(f"  lengths: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]} nt")
    clocks = ("wall", "cpu") if args.device == "cpu" else ("wall",)
    mem_key = "cuda_extra_gib" if args.device == "cuda" else "extra_gib"
    for precision in precisions:
        results = {way: run_way(way, precision, args) for way in ways}
        failed = {way: r for way, r in results.items() if "error" in r}
        for way, r in failed.items():
            print(f"  {precision} {way:>14}: failed: {r['error']}")
        results = {way: r for way, r in results.items() if way not in failed}
        for way, r in results.items():
            print(f"  {precision} {way:>14}: {r['wall']:8.2f} s wall, {r['cpu']:8.2f} s cpu, "
                  f"{r['real_tokens']:>7,} real tokens ({r['padded_tokens']:,} with padding, {r['batches']} "
                  f"batch(es)) = {r['real_tokens'] / r['wall']:8.0f} tokens/s, peak memory +{r[mem_key]:.2f} GiB")
        ours = results.get("ours")
        for way in results:
            if way == "ours" or ours is None:
                continue
            pub = results[way]
            speed = ", ".join(f"{c} {(ours['real_tokens'] / ours[c]) / (pub['real_tokens'] / pub[c]):.1f}x"
                              for c in clocks)
            print(f"  {precision} ours / {way}: tokens/s {speed}; {pub['wall'] / ours['wall']:.1f}x less time per "
                  f"step; {pub[mem_key] / max(ours[mem_key], 1e-6):.1f}x less peak memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
