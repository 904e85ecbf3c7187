"""Metric functions against hand-computed cases and against scikit-learn; metrics.tsv I/O."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score,
                             roc_auc_score)

from rnaret.io.errors import InputError
from rnaret.io.structure import crossing_pairs, read_structures
from rnaret.metrics import (classification_metrics, pair_scores, pk_pair_scores, read_metrics_tsv,
                            structure_scores, write_metrics_tsv)

# ------------------------------------------------------------------ base pairs, by hand


def test_pair_scores_hand_cases():
    true = [(1, 10), (2, 9), (3, 8)]
    s = pair_scores(true, [(1, 10), (2, 9), (4, 7)])
    assert (s.tp, s.n_true, s.n_pred) == (2, 3, 3)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    s = pair_scores(true + [(4, 7)], [(1, 10), (2, 9)])  # all predicted pairs right, half found
    assert (s.precision, s.recall) == (1.0, 0.5) and s.f1 == pytest.approx(2 / 3)
    s = pair_scores(true, [(4, 7), (5, 6)])  # nothing right
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    assert pair_scores(true, [(10, 1), (9, 2), (8, 3)]).f1 == 1.0  # orientation does not matter


def test_empty_sets_follow_the_contract():
    assert pair_scores([], []).f1 == 1.0
    assert (pair_scores([], []).precision, pair_scores([], []).recall) == (1.0, 1.0)
    assert pair_scores([(1, 9)], []).f1 == 0.0
    assert pair_scores([], [(1, 9)]).f1 == 0.0
    assert pair_scores([], [(1, 9)]).precision == 0.0


def _perturb(pairs, rng):
    """Drop about a third of the pairs and add a few made-up ones (keeping them valid)."""
    kept = [p for p in pairs if rng.random() > 0.35]
    used = {b for p in kept for b in p}
    n = max((j for _, j in pairs), default=10)
    for _ in range(5):
        i, j = sorted(rng.sample(range(1, n + 1), 2))
        if i not in used and j not in used:
            kept.append((i, j))
            used |= {i, j}
    return sorted(kept)


def test_pair_scores_equal_sklearn_on_the_contact_map_of_real_structures(resources):
    rng = random.Random(0)
    records = list(read_structures(resources / "structure" / "bprna_valid.csv"))[:40]
    for rec in records:
        pred = _perturb(rec.pairs, rng)
        n = len(rec.sequence)
        iu = np.triu_indices(n, k=1)
        y_true = np.zeros((n, n), int)
        y_pred = np.zeros((n, n), int)
        for i, j in rec.pairs:
            y_true[i - 1, j - 1] = 1
        for i, j in pred:
            y_pred[i - 1, j - 1] = 1
        s = pair_scores(rec.pairs, pred)
        assert s.precision == pytest.approx(precision_score(y_true[iu], y_pred[iu], zero_division=0))
        assert s.recall == pytest.approx(recall_score(y_true[iu], y_pred[iu], zero_division=0))
        assert s.f1 == pytest.approx(f1_score(y_true[iu], y_pred[iu], zero_division=0))


# ------------------------------------------------------------------ pseudoknotted pairs

H_KNOT = [(1, 10), (2, 9), (5, 15), (6, 14), (20, 30)]  # two crossing stems + one nested pair


def test_pk_pairs_are_the_crossing_ones():
    assert crossing_pairs(H_KNOT) == [(1, 10), (2, 9), (5, 15), (6, 14)]


def test_pk_scores_by_hand():
    # a nested prediction finds no pseudoknotted pair: pk F1 0
    nested_pred = [(1, 10), (2, 9), (20, 30)]
    assert pk_pair_scores(H_KNOT, nested_pred).f1 == 0.0
    assert pair_scores(H_KNOT, nested_pred).f1 == pytest.approx(2 * 1 * 0.6 / 1.6)
    # one crossing stem of the two found and one pair of it wrong:
    pred = [(1, 10), (2, 9), (5, 15), (7, 13)]  # pk pairs of pred: all four
    s = pk_pair_scores(H_KNOT, pred)
    assert (s.tp, s.n_true, s.n_pred) == (3, 4, 4) and s.f1 == pytest.approx(0.75)
    assert pk_pair_scores([(1, 10), (2, 9)], pred) is None  # no true pseudoknot: left out


def test_structure_scores_average_and_pk_subset():
    true = [H_KNOT, [(1, 10), (2, 9)], []]
    pred = [[(1, 10), (2, 9), (5, 15), (7, 13)], [(1, 10), (3, 8)], []]
    metrics, rows = structure_scores(true, pred)
    f1s = [pair_scores(t, p).f1 for t, p in zip(true, pred)]
    assert f1s == pytest.approx([2 * 0.75 * 0.6 / 1.35, 0.5, 1.0])
    assert metrics["f1"] == pytest.approx(sum(f1s) / 3)
    assert metrics["precision"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert metrics["recall"] == pytest.approx((0.6 + 0.5 + 1.0) / 3)
    assert (metrics["n"], metrics["n_pk"]) == (3, 1)
    assert metrics["f1_pk"] == pytest.approx(0.75)
    assert math.isnan(rows[1]["f1_pk"]) and math.isnan(rows[2]["f1_pk"])
    with pytest.raises(ValueError):
        structure_scores(true, pred[:2])


def test_pk_means_are_nan_without_pseudoknots():
    metrics, _ = structure_scores([[(1, 10)]], [[(1, 10)]])
    assert metrics["n_pk"] == 0 and math.isnan(metrics["f1_pk"]) and metrics["f1"] == 1.0


# ------------------------------------------------------------------ classification


def test_classification_hand_case():
    m = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    # predictions 0 1 0 1: TP 1, TN 1, FP 1, FN 1; AUC: 3 of 4 positive-negative pairs ordered right
    assert m == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "auc": 0.75, "mcc": 0.0,
                 "n": 4, "n_pos": 2, "n_neg": 2}


def test_classification_equals_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(labels * 0.3 + rng.random(500) * 0.7, 0, 1)
    m = classification_metrics(labels.tolist(), scores.tolist(), threshold=0.5)
    pred = (scores >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert m["precision"] == pytest.approx(precision_score(labels, pred))
    assert m["recall"] == pytest.approx(recall_score(labels, pred))
    assert m["f1"] == pytest.approx(f1_score(labels, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(labels, pred))
    assert m["n"] == 500 and m["n_pos"] == int(labels.sum())


def test_auc_is_nan_with_one_class_and_bad_inputs_are_rejected():
    m = classification_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert math.isnan(m["auc"]) and (m["n_pos"], m["n_neg"]) == (3, 0)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["precision"] == 1.0
    with pytest.raises(ValueError, match="0 or 1"):
        classification_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        classification_metrics([0, 1], [0.1])
    with pytest.raises(ValueError, match="finite"):
        classification_metrics([0, 1], [0.1, float("nan")])


# ------------------------------------------------------------------ metrics.tsv


def test_metrics_tsv_round_trip_and_format(tmp_path):
    metrics = {"f1": 0.1 + 0.2, "precision": 2 / 3, "auc": math.nan, "n": 1266, "n_pk": np.int64(107)}
    path = tmp_path / "out" / "metrics.tsv"
    write_metrics_tsv(metrics, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "metric\tvalue"
    assert lines[1:] == ["f1\t0.30000000000000004", "precision\t0.6666666666666666", "auc\tNA", "n\t1266",
                         "n_pk\t107"]
    back = read_metrics_tsv(path)
    assert list(back) == list(metrics)
    assert back["f1"] == metrics["f1"] and back["precision"] == metrics["precision"]
    assert math.isnan(back["auc"]) and back["n"] == 1266 and isinstance(back["n"], int)


def test_write_metrics_rejects_non_numbers_and_leaves_no_file(tmp_path):
    path = tmp_path / "metrics.tsv"
    with pytest.raises(ValueError, match="not a number"):
        write_metrics_tsv({"f1": 0.5, "model": "vienna"}, path)
    assert not path.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("content,words", [
    ("name\tvalue\nf1\t0.5\n", ["header"]),
    ("metric\tvalue\nf1\t0.5\nf1\t0.6\n", ["'f1'", "named twice", "line 3"]),
    ("metric\tvalue\nf1\thigh\n", ["'f1'", "'high' is not a number"]),
    ("metric\tvalue\nf1\t0.5\textra\n", ["expected 2 columns", "line 2"]),
])
def test_read_metrics_rejects_bad_files(tmp_path, content, words):
    path = tmp_path / "metrics.tsv"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read_metrics_tsv(path)
    for word in words + [str(path)]:
        assert word in str(info.value)
