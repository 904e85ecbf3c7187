"""The leakage stage in the report: a figure of the hits, the closest pairs, the homology table.

- ``plot_leakage``: left, every significant alignment of a split sequence in a corpus record
  (identity against test coverage, counts on a log colour scale) with the thresholds' box;
  right, corpus records removed per split, identical and similar;
- ``closest_pairs``: the removed (non-identical) pairs with the highest identity and coverage;
- ``combine_tables``: the per-dataset homology tables as one; ``write_tsv``: any such table.

Nothing here reads sequences (the report's environment has no Biopython).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from rnaret.figures import pyplot, save_figure

CLOSEST_COLUMNS = ("corpus_record", "test_record", "splits", "identity", "test_coverage",
                   "aligned_length", "test_length", "corpus_length", "mismatches", "gap_opens",
                   "corpus_start", "corpus_end", "evalue")


def read_tsv(path) -> list[dict]:
    """Rows of a TSV (plain or gzip) as dicts of strings."""
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def closest_pairs(hits: list[dict], count: int = 10) -> list[dict]:
    """The ``count`` removed pairs closest to identical: highest identity, then test coverage,
    then aligned length (ties by record names). ``hits``: rows of the leakage hits table."""
    removed = [h for h in hits if h["removed"] == "yes"]
    removed.sort(key=lambda h: (-float(h["identity"]), -float(h["test_coverage"]),
                                -int(h["aligned_length"]), h["corpus_record"], h["test_record"]))
    return [{c: h[c] for c in CLOSEST_COLUMNS} for h in removed[:count]]


def plot_leakage(hits: list[dict], table: list[dict], thresholds: dict, path, title: str = "") -> Path:
    """The two-panel leakage figure (PNG at ``path``). ``hits``: rows of the hits table;
    ``table``: rows of the per-split table (the ``all`` row is skipped); ``thresholds``: the
    stage JSON's ``thresholds`` (min_identity, min_test_coverage, max_evalue)."""
    plt = pyplot()
    splits = [r for r in table if r["task"] != "all"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.5, 0.45 * len(splits) + 2)),
                                      gridspec_kw={"width_ratios": [1.1, 1]})
    identity = np.array([float(h["identity"]) for h in hits], dtype=float)
    coverage = np.array([float(h["test_coverage"]) for h in hits], dtype=float)
    if len(hits):
        counts, xedges, yedges = np.histogram2d(identity, coverage, bins=40,
                                                range=[[min(0.5, identity.min()), 1.0],
                                                       [min(0.0, coverage.min()), 1.0]])
        masked = np.ma.masked_equal(counts.T, 0)
        from matplotlib.colors import LogNorm

        image = left.pcolormesh(xedges, yedges, masked, cmap="viridis",
                                norm=LogNorm(vmin=1, vmax=max(counts.max(), 1)))
        fig.colorbar(image, ax=left, label="alignments")
    else:
        left.text(0.5, 0.5, "no significant alignment", ha="center", va="center",
                  transform=left.transAxes)
    min_id, min_cov = thresholds["min_identity"], thresholds["min_test_coverage"]
    left.axvline(min_id, color="crimson", lw=1.2)
    left.axhline(min_cov, color="crimson", lw=1.2)
    left.fill_between([min_id, 1.0], min_cov, 1.0, color="crimson", alpha=0.08)
    left.set_xlabel("identity (identical / aligned columns)")
    left.set_ylabel("test coverage (aligned / test length)")
    removed = int(sum(h["removed"] == "yes" for h in hits))
    left.set_title(f"{len(hits)} alignments with E <= {thresholds['max_evalue']:g}; "
                   f"{removed} pass (red box)", fontsize=10)
    labels = [f"{r['task']}/{r['dataset']}/{r['split']}" for r in splits]
    identical = np.array([int(r["corpus_records_identical"]) for r in splits])
    similar = np.array([int(r["corpus_records_similar"]) for r in splits])
    y = np.arange(len(splits))
    right.barh(y, identical, color="#4c72b0", label="identical (first pass)")
    right.barh(y, similar, left=identical, color="#dd8452", label="similar (MMseqs2)")
    for i, (a, b) in enumerate(zip(identical, similar)):
        right.text(a + b, i, f" {a} + {b}", va="center", fontsize=8)
    right.set_yticks(y, labels, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("corpus records removed")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    right.set_xlim(0, max(1, (identical + similar).max() if len(splits) else 1) * 1.25)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def write_tsv(path, rows: list[dict], columns) -> None:
    """A TSV with ``columns`` as header and one line per row, written atomically."""
    from rnaret.io.atomic import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in rows:
            handle.write("\t".join(str(row[c]) for c in columns) + "\n")


def combine_tables(paths, output) -> list[dict]:
    """Concatenate TSVs with the same header (e.g. one homology table per dataset) into
    ``output``, atomically; returns the rows."""
    rows, header = [], None
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if header is None:
                header = reader.fieldnames
            elif reader.fieldnames != header:
                from rnaret.io.errors import InputError

                raise InputError(path, f"columns {reader.fieldnames} differ from {header}")
            rows += list(reader)
    write_tsv(output, rows, header or [])
    return rows
