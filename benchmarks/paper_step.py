"""What one pretraining step holds at the paper preset, against the published run's step.

The published run (DrBlackZJU/RNAret pretrain.py) draws 100 random sequences per step
(DataLoader, batch_size 100, shuffle), each cut to its first 2,000 tokens and padded to 2,000.
The paper preset takes 100 sequences of similar length (``max_rows``), randomly cropped to 2,000
tokens (``max_train_len``), padded only to the longest of them. This script walks one epoch of
both over the bundled sample's length mix (resources/rnacentral/rnacentral_sample.index.tsv; at
odd k one token per nucleotide) and prints rows, real tokens and padded tokens per step, with the
former 200,000-token budget (no row cap, no crop) for comparison.

    python benchmarks/paper_step.py [--index PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _epoch(batches: list[np.ndarray]) -> dict:
    """Per-step means of rows, real tokens and padded tokens over one epoch's batches of lengths."""
    return {"steps": len(batches),
            "rows": float(np.mean([len(b) for b in batches])),
            "real": float(np.mean([b.sum() for b in batches])),
            "real_min": int(min(b.sum() for b in batches)), "real_max": int(max(b.sum() for b in batches)),
            "padded": float(np.mean([b.max() * len(b) for b in batches]))}


def main(argv: list[str] | None = None) -> int:
    """Print the table; returns 0."""
    from rnaret.train.config import preset
    from rnaret.train.data import BatchStream, effective_lengths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "resources/rnacentral/rnacentral_sample.index.tsv",
                        help="a table with a 'length' column (nucleotides per record)")
    args = parser.parse_args(argv)
    lengths = pd.read_csv(args.index, sep="\t")["length"].to_numpy()
    n = len(lengths)

    order = np.random.default_rng(0).permutation(n)
    published = [np.minimum(lengths[order[i:i + 100]], 2000) for i in range(0, n, 100)]
    published_stats = {**_epoch(published), "padded": 100 * 2000.0}

    cfg = preset("paper", 1)
    stream = BatchStream(effective_lengths(lengths, cfg.max_train_len), cfg.max_tokens, cfg.seed, cfg.max_rows)
    ours = [np.minimum(lengths[stream.next()], cfg.max_train_len) for _ in range(len(stream.sampler))]
    former = BatchStream(lengths, 200_000, cfg.seed)
    before = [lengths[former.next()] for _ in range(len(former.sampler))]

    rows = [("published run (100 random rows, cut and padded to 2,000)", published_stats),
            ("paper preset (max_rows 100, max_train_len 2,000)", _epoch(ours)),
            ("former paper preset (200,000-token budget, no row cap, no crop)", _epoch(before))]
    print(f"bundled sample: {n} records, {lengths.min()}-{lengths.max()} nt, median {int(np.median(lengths))}")
    print("| per step (means over one epoch) | steps per epoch | rows | real tokens (min-max) | padded tokens |")
    print("|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['steps']:,} | {s['rows']:.1f} | {s['real']:,.0f} ({s['real_min']:,}-{s['real_max']:,}) "
              f"| {s['padded']:,.0f} |")
    ratio = _epoch(ours)["real"] / published_stats["real"]
    print(f"real tokens per step, paper preset / published run: {ratio:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
