"""Metrics for the downstream tasks, and the ``metrics.tsv`` files that hold them.

Base-pair scores (secondary structure; docs/tasks.md):
  per sequence, exact matches between the predicted and the true pair sets (pseudoknotted pairs
  included); precision = TP / |pred|, recall = TP / |true|, F1 = 2PR / (P + R). When both sets
  are empty, precision = recall = F1 = 1; when only one is empty they are all 0. The dataset
  value of each is the mean over sequences (``f1``, ``precision``, ``recall``; ``n`` sequences).

Pseudoknot-only scores (``f1_pk``, ``precision_pk``, ``recall_pk``, ``n_pk``):
  a pair is pseudoknotted when it crosses another pair of the SAME structure (``i < k < j < l``);
  this is taken separately in the true and in the predicted structure (both stems of an H-type
  knot count, whatever brackets were used to write it). The same per-sequence scores are then
  computed on these two sets, and averaged over the sequences whose TRUE structure has
  pseudoknotted pairs only (``n_pk`` of them), so every model is averaged over the same
  sequences; a prediction without pseudoknots scores 0 there. Sequences without true
  pseudoknots are left out of the pk averages (their per-sequence value is NaN), which means a
  spurious pseudoknot predicted there is not counted. With ``n_pk = 0`` the pk means are NaN.

Classification (interaction, coding): accuracy, precision, recall, f1, auc, mcc, n from labels
and scores through scikit-learn. AUC is undefined when the labels hold one class only: it is
then NaN (written ``NA``) and ``n_pos`` / ``n_neg`` show why.

``metrics.tsv`` (contract): a header ``metric<TAB>value``, then one row per metric. Integers are
written as integers, floats with full precision (``repr``), NaN as ``NA``. The ``protocol`` row
(``TEXT_METRICS``) holds a word, ``rnaret`` or ``published`` (``rnaret.tasks.protocol``).
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from rnaret.io.atomic import atomic_open
from rnaret.io.errors import InputError
from rnaret.io.structure import crossing_pairs

NA = "NA"
# rows of metrics.tsv whose value is a word, not a number: the protocol the figures were
# computed under (rnaret.tasks.protocol: "rnaret" or "published")
TEXT_METRICS = ("protocol",)


@dataclass(frozen=True)
class PairScores:
    """Per-sequence base-pair scores; ``n_true`` / ``n_pred`` pairs, ``tp`` exact matches."""

    precision: float
    recall: float
    f1: float
    tp: int
    n_true: int
    n_pred: int


def pair_scores(true_pairs: Iterable[Sequence[int]], pred_pairs: Iterable[Sequence[int]]) -> PairScores:
    """Precision, recall and F1 of one predicted pair set against the true one.

    Input: iterables of ``(i, j)`` (orientation ignored: ``(j, i)`` is the same pair). Both
    empty -> all 1; exactly one empty -> all 0 (see the module doc).
    """
    true = {(min(a, b), max(a, b)) for a, b in true_pairs}
    pred = {(min(a, b), max(a, b)) for a, b in pred_pairs}
    tp = len(true & pred)
    if not true and not pred:
        return PairScores(1.0, 1.0, 1.0, 0, 0, 0)
    if not true or not pred:
        return PairScores(0.0, 0.0, 0.0, 0, len(true), len(pred))
    precision, recall = tp / len(pred), tp / len(true)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return PairScores(precision, recall, f1, tp, len(true), len(pred))


def pk_pair_scores(true_pairs: Sequence[Sequence[int]], pred_pairs: Sequence[Sequence[int]]
                   ) -> PairScores | None:
    """Scores restricted to pseudoknotted pairs (crossing pairs of each structure).

    Returns ``None`` when the true structure has no pseudoknotted pair (the sequence is left out
    of the pk averages, see the module doc). Pairs must have ``i < j``.
    """
    true_pk = crossing_pairs(sorted((min(a, b), max(a, b)) for a, b in true_pairs))
    if not true_pk:
        return None
    pred_pk = crossing_pairs(sorted((min(a, b), max(a, b)) for a, b in pred_pairs))
    return pair_scores(true_pk, pred_pk)


def structure_scores(true: Sequence[Sequence[Sequence[int]]], pred: Sequence[Sequence[Sequence[int]]]
                     ) -> tuple[dict, list[dict]]:
    """Dataset-level and per-sequence base-pair metrics.

    Input: ``true[s]`` and ``pred[s]`` pair lists of sequence s (same order, same length).
    Output: ``(metrics, per_sequence)`` where ``metrics`` has ``f1, precision, recall, f1_pk,
    precision_pk, recall_pk, n, n_pk`` (means over sequences as in the module doc) and
    ``per_sequence[s]`` has ``precision, recall, f1, tp, n_true, n_pred, f1_pk, precision_pk,
    recall_pk`` (pk values NaN where the true structure has no pseudoknot).
    """
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true structures but {len(pred)} predictions")
    rows = []
    for t, p in zip(true, pred):
        s = pair_scores(t, p)
        pk = pk_pair_scores(t, p)
        rows.append({"precision": s.precision, "recall": s.recall, "f1": s.f1, "tp": s.tp,
                     "n_true": s.n_true, "n_pred": s.n_pred,
                     "f1_pk": pk.f1 if pk else math.nan,
                     "precision_pk": pk.precision if pk else math.nan,
                     "recall_pk": pk.recall if pk else math.nan})
    pk_rows = [r for r in rows if not math.isnan(r["f1_pk"])]

    def mean(values):
        values = list(values)
        return float(np.mean(values)) if values else math.nan

    metrics = {
        "f1": mean(r["f1"] for r in rows),
        "precision": mean(r["precision"] for r in rows),
        "recall": mean(r["recall"] for r in rows),
        "f1_pk": mean(r["f1_pk"] for r in pk_rows),
        "precision_pk": mean(r["precision_pk"] for r in pk_rows),
        "recall_pk": mean(r["recall_pk"] for r in pk_rows),
        "n": len(rows),
        "n_pk": len(pk_rows),
    }
    return metrics, rows


def published_pair_scores(true_map, pred_map) -> PairScores:
    """Scores of one sequence as the published ``ssp.py`` (``compute_metrics``) counts them: over
    every cell of the L x L maps, so each pair counts twice (both orientations) and a map need
    not be symmetric. ``true_map``/``pred_map``: (L, L) arrays, nonzero = paired. Precision,
    recall and F1 are 0 when their denominator is 0 (also when both maps are empty). ``tp``,
    ``n_true``, ``n_pred`` count cells."""
    true = np.asarray(true_map) != 0
    pred = np.asarray(pred_map) != 0
    if true.shape != pred.shape or true.ndim != 2:
        raise ValueError(f"expected two (L, L) maps of one shape, got {true.shape} and {pred.shape}")
    tp = int(np.sum(true & pred))
    fp = int(np.sum(~true & pred))
    fn = int(np.sum(true & ~pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairScores(precision, recall, f1, tp, tp + fn, tp + fp)


def classification_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5,
                           predictions: Sequence[int] | None = None) -> dict:
    """Binary classification metrics from 0/1 ``labels`` (shape (N,)) and ``scores`` (shape (N,),
    probability of class 1, or any score that ranks class 1 higher). A score ``>= threshold``
    predicts 1, unless ``predictions`` (N,) 0/1 are given (e.g. the argmax of two logits).

    Output: ``accuracy, precision, recall, f1, auc, mcc, n, n_pos, n_neg`` (scikit-learn;
    precision/recall/F1 are 0 when they divide by zero; ``auc`` is NaN with a single class).
    """
    from sklearn.metrics import (accuracy_score, f1_score, matthews_corrcoef, precision_score,
                                 recall_score, roc_auc_score)

    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-D of the same length")
    if len(y) == 0:
        raise ValueError("no labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    y = y.astype(np.int64)
    if predictions is None:
        pred = (s >= threshold).astype(np.int64)
    else:
        pred = np.asarray(predictions, dtype=np.int64)
        if pred.shape != y.shape:
            raise ValueError(f"predictions {pred.shape} and labels {y.shape} must have the same shape")
    n_pos = int(y.sum())
    single_class = n_pos in (0, len(y))
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "auc": math.nan if single_class else float(roc_auc_score(y, s)),
        "mcc": float(matthews_corrcoef(y, pred)),
        "n": int(len(y)),
        "n_pos": n_pos,
        "n_neg": int(len(y) - n_pos),
    }


def multiclass_metrics(labels: Sequence[int], probabilities) -> dict[str, float]:
    """Metrics of the generic classification tasks from class indices (N,) and class
    probabilities (N, C) (rows summing to 1), through scikit-learn.

    ``accuracy``, ``f1_macro`` (unweighted mean over the classes of the labels and predictions),
    ``mcc`` (multi-class Matthews correlation), ``auc``: with two classes the ROC AUC of
    column 1; with more, one-vs-rest, the mean of each class's ROC AUC over the classes that
    occur with both outcomes (NaN when none does); ``n``, ``n_classes`` (present in the labels).
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64).reshape(len(y), -1)
    if len(y) == 0:
        return {"accuracy": math.nan, "f1_macro": math.nan, "mcc": math.nan, "auc": math.nan, "n": 0,
                "n_classes": 0}
    predicted = p.argmax(axis=1)
    aucs = []
    columns = [1] if p.shape[1] == 2 else range(p.shape[1])
    for c in columns:
        positive = y == c
        if positive.any() and not positive.all():
            aucs.append(float(roc_auc_score(positive, p[:, c])))
    return {"accuracy": float(accuracy_score(y, predicted)),
            "f1_macro": float(f1_score(y, predicted, average="macro", zero_division=0)),
            "mcc": float(matthews_corrcoef(y, predicted)),
            "auc": float(np.mean(aucs)) if aucs else math.nan,
            "n": int(len(y)), "n_classes": int(len(np.unique(y)))}


def regression_metrics(values: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    """Metrics of the generic regression tasks from true values and predictions (N,):
    ``pearson``, ``spearman`` (scipy; NaN when either side is constant), ``rmse``, ``r2``
    (scikit-learn's coefficient of determination), ``n``."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_squared_error, r2_score

    y = np.asarray(values, dtype=np.float64)
    f = np.asarray(predictions, dtype=np.float64)
    if len(y) < 2:
        return {"pearson": math.nan, "spearman": math.nan,
                "rmse": float(np.sqrt(np.mean((y - f) ** 2))) if len(y) else math.nan, "r2": math.nan, "n": int(len(y))}
    constant = np.ptp(y) == 0 or np.ptp(f) == 0
    return {"pearson": math.nan if constant else float(pearsonr(y, f)[0]),
            "spearman": math.nan if constant else float(spearmanr(y, f)[0]),
            "rmse": float(np.sqrt(mean_squared_error(y, f))),
            "r2": math.nan if np.ptp(y) == 0 else float(r2_score(y, f)),
            "n": int(len(y))}


def _format_value(name: str, value) -> str:
    if name in TEXT_METRICS:
        if not isinstance(value, str) or not value or any(c in value for c in "\t\n\r"):
            raise ValueError(f"metric {name!r}: value {value!r} is not a one-line text")
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return NA if math.isnan(value) else repr(float(value))
    raise ValueError(f"metric {name!r}: value {value!r} is not a number")


def write_metrics_tsv(metrics: Mapping[str, float | int], path) -> None:
    """Write ``{metric: value}`` as the contract ``metrics.tsv`` (header ``metric``, ``value``),
    in the mapping's order, atomically. NaN is written ``NA``."""
    for name in metrics:
        if not name or any(c in name for c in "\t\n\r"):
            raise ValueError(f"bad metric name {name!r}")
    rows = [(name, _format_value(name, value)) for name, value in metrics.items()]
    with atomic_open(path) as handle:
        handle.write("metric\tvalue\n")
        for name, value in rows:
            handle.write(f"{name}\t{value}\n")


def read_metrics_tsv(path) -> dict[str, float | int | str]:
    """Read a ``metrics.tsv`` back: ``{metric: int | float}`` in file order (``NA`` -> NaN); the
    rows of ``TEXT_METRICS`` (``protocol``) keep their text.

    Raises ``InputError`` for a missing file, a wrong header, a row that is not two columns, a
    value that is not a number and a metric named twice.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    out: dict[str, float | int] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header != ["metric", "value"]:
            raise InputError(path, f"the header must be 'metric<TAB>value', got {header!r}", line=1)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise InputError(path, f"expected 2 columns, got {len(row)}", line=line)
            name, text = row
            if name in out:
                raise InputError(path, "metric named twice", record=name, line=line)
            if name in TEXT_METRICS:
                out[name] = text
                continue
            if text in (NA, "nan", "NaN"):
                out[name] = math.nan
                continue
            try:
                out[name] = int(text)
            except ValueError:
                try:
                    out[name] = float(text)
                except ValueError:
                    raise InputError(path, f"value {text!r} is not a number", record=name,
                                     line=line) from None
    return out
