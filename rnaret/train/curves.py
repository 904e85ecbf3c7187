"""The training metrics logs (TSV) and the pretraining loss-curve figure.

metrics.tsv columns: step, train_loss (mean cross-entropy per masked token since the previous
row, nats, over the steps that were not skipped), valid_loss, masked_accuracy (validation),
perplexity (exp valid_loss), tokens_per_s (real tokens, all ranks), lr, masked_fraction (chosen /
maskable training tokens), grad_norm (mean global gradient norm before clipping, over the steps
since the previous row that were not skipped), skipped_steps (steps since the previous row whose
loss or gradient norm was not finite: no update was made). Empty cells where a row has no such
value (validation runs every ``eval_every`` steps).

Fine-tuning's ``train_log.tsv`` (``write_history``): one row per validation, the columns those
of its records (epoch, step, train_loss, grad_norm, skipped_steps, valid_<metric>..., seconds).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from rnaret.io.atomic import atomic_open, atomic_path

COLUMNS = ("step", "train_loss", "valid_loss", "masked_accuracy", "perplexity", "tokens_per_s",
           "lr", "masked_fraction", "grad_norm", "skipped_steps")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.8g}"
    return str(value)


def write_metrics(path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts keyed by COLUMNS; missing = empty) as a TSV, atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            handle.write("\t".join(_cell(row.get(c)) for c in COLUMNS) + "\n")


def write_history(history: list[dict], path) -> None:
    """Write fine-tuning's per-validation records as a TSV (pandas, 6 significant digits),
    atomically; the columns are the records' keys."""
    import pandas as pd

    with atomic_open(path) as handle:
        pd.DataFrame(history).to_csv(handle, sep="\t", index=False, float_format="%.6g")


def read_metrics(path) -> list[dict]:
    """Rows of a metrics TSV as dicts: step int, other columns float or None."""
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for raw in csv.DictReader(handle, delimiter="\t"):
            row = {}
            for key, value in raw.items():
                if value in ("", None):
                    row[key] = None
                elif key in ("step", "skipped_steps"):
                    row[key] = int(value)
                else:
                    row[key] = float(value)
            rows.append(row)
    return rows


def plot_loss_curve(path, rows: list[dict], *, unigram_entropy: float | None = None,
                    title: str = "MLM pretraining") -> None:
    """Save train and validation loss against step as a PNG (matplotlib Agg), atomically.

    A dashed line marks the unigram entropy of the validation tokens: the loss of a model that
    ignores context.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    valid = [(r["step"], r["valid_loss"]) for r in rows if r.get("valid_loss") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train (masked tokens)", color="tab:blue", linewidth=1.2)
    if valid:
        ax.plot(*zip(*valid), label="validation", color="tab:orange", marker="o", markersize=3)
    if unigram_entropy is not None:
        ax.axhline(unigram_entropy, color="grey", linestyle="--", linewidth=1,
                   label=f"unigram entropy of validation tokens ({unigram_entropy:.3f})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per masked token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
