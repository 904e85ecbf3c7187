"""Shared matplotlib helpers for the report figures (Agg backend, files written atomically).

- ``pyplot()``: matplotlib.pyplot on the Agg backend (no display needed, safe in workers);
- ``save_figure(fig, path)``: write a figure atomically (format from the suffix) and close it;
- ``plot_f1_distribution``: per-sequence base-pair F1 of one model (histogram + violin);
- ``plot_contact_maps``: predicted against true pair maps of a few sequences;
- ``pick_examples``: which sequences those are (evenly spaced length quantiles).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from rnaret.io.atomic import atomic_path


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend selected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Save ``fig`` at ``path`` (format from the suffix, e.g. .png/.svg) atomically; close it."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix or ".png") as tmp:
        fig.savefig(tmp, format=(path.suffix.lstrip(".") or "png"), dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path


def pick_examples(records, count: int) -> list:
    """``count`` StructureRecords at evenly spaced length quantiles among those with a true pair
    (all records when none has one); deterministic, ties broken by id."""
    pool = sorted((r for r in records if r.pairs), key=lambda r: (len(r.sequence), r.id)) or \
        sorted(records, key=lambda r: (len(r.sequence), r.id))
    if count >= len(pool):
        return pool
    step = len(pool) / count
    return [pool[int(step * (i + 0.5))] for i in range(count)]


def plot_f1_distribution(f1_by_variant: Mapping[str, Sequence[float]], path, title: str) -> Path:
    """Histogram and violin of per-sequence F1 values.

    ``f1_by_variant``: label (e.g. "MFE", "MEA" or the model name) -> per-sequence F1 values
    (shape (n,), in [0, 1]); one histogram and one violin per label. Writes a PNG at ``path``.
    """
    plt = pyplot()
    labels = list(f1_by_variant)
    if not labels:
        raise ValueError("no F1 values to plot")
    values = [np.asarray(f1_by_variant[k], dtype=np.float64) for k in labels]
    if any(len(v) == 0 for v in values):
        raise ValueError("every label needs at least one F1 value")
    fig, (hist_ax, violin_ax) = plt.subplots(1, 2, figsize=(8.4, 3.6), dpi=120,
                                             gridspec_kw={"width_ratios": [3, 2]})
    bins = np.linspace(0, 1, 21)
    for label, v in zip(labels, values):
        hist_ax.hist(v, bins=bins, alpha=0.55 if len(labels) > 1 else 0.9, edgecolor="white",
                     label=f"{label}: mean {v.mean():.3f}, median {np.median(v):.3f} (n={len(v)})")
    hist_ax.set(xlabel="per-sequence F1", ylabel="sequences", xlim=(0, 1))
    hist_ax.legend(loc="upper left", fontsize=7, frameon=False)
    parts = violin_ax.violinplot(values, showmeans=True, showmedians=False, showextrema=True)
    for i, body in enumerate(parts.get("bodies", [])):
        body.set_facecolor(f"C{i}")  # the histogram's colour of the same label
        body.set_alpha(0.6)
    violin_ax.set_xticks(range(1, len(labels) + 1), labels)
    violin_ax.set(ylabel="per-sequence F1", ylim=(-0.02, 1.02))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_contact_maps(examples: Sequence[tuple[str, int, Sequence[Sequence[int]], Sequence[Sequence[int]]]],
                      path, title: str) -> Path:
    """Predicted vs true base-pair maps of a few sequences, one panel each.

    ``examples``: ``(id, length n, true pairs, predicted pairs)`` with 1-based ``(i, j)``. Each
    panel is the n x n map: true pairs in the lower triangle (grey), predictions in the upper
    triangle (green when the pair is true, red when not); the panel title gives the sequence's F1.
    """
    from rnaret.metrics import pair_scores

    plt = pyplot()
    if not examples:
        raise ValueError("no sequences to draw")
    cols = min(len(examples), 4)
    rows = (len(examples) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.3 * rows), dpi=120, squeeze=False)
    for ax in axes.ravel()[len(examples):]:
        ax.axis("off")
    for ax, (name, n, true, pred) in zip(axes.ravel(), examples):
        true = {(min(a, b), max(a, b)) for a, b in true}
        pred = {(min(a, b), max(a, b)) for a, b in pred}
        size = max(2.0, 600.0 / max(n, 1))  # marker size shrinks with the map
        if true:
            t = np.array(sorted(true))
            ax.scatter(t[:, 0], t[:, 1], s=size, c="0.45", marker="s", linewidths=0, label="true")
        hit = np.array(sorted(pred & true)).reshape(-1, 2)
        miss = np.array(sorted(pred - true)).reshape(-1, 2)
        if len(hit):
            ax.scatter(hit[:, 1], hit[:, 0], s=size, c="tab:green", marker="s", linewidths=0,
                       label="predicted, true")
        if len(miss):
            ax.scatter(miss[:, 1], miss[:, 0], s=size, c="tab:red", marker="s", linewidths=0,
                       label="predicted, false")
        ax.plot([1, n], [1, n], color="0.8", linewidth=0.6)
        ax.set(xlim=(0.5, n + 0.5), ylim=(n + 0.5, 0.5), aspect="equal")
        ax.tick_params(labelsize=6)
        f1 = pair_scores(true, pred).f1
        ax.set_title(f"{name}\n{n} nt, F1 {f1:.2f}", fontsize=7)
    handles, labels = [], []
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False,
                   markerscale=3)
    fig.suptitle(f"{title}\nupper triangle: predicted, lower triangle: true", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, path)
