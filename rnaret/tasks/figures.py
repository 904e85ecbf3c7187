"""Figures shared by the classification tasks (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rnaret.io.atomic import atomic_path


def plot_roc(labels: Sequence[int], scores: Sequence[float], path, title: str) -> Path:
    """Write the ROC curve of 0/1 ``labels`` (N,) against ``scores`` (N,) as a PNG at ``path``.

    The legend gives the AUC; a single-class split draws the diagonal only and says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    if len(np.unique(labels)) == 2:
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, linewidth=1.6, label=f"AUC = {roc_auc_score(labels, scores):.3f}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "one class only: no ROC", ha="center")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
