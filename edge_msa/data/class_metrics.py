"""Metrics on class names: balanced accuracy, confusion, 3-class sentiment.

For valence and sentiment classes (``negative``, ``neutral``, ``positive``)
compared with the polarity the runtime publishes
(:func:`edge_msa.publishing.result.polarity`). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_msa.data.metrics import weighted_f1

POLARITIES = ("negative", "neutral", "positive")


def confusion(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> list[list[int]]:
    """Counts, rows the true class and columns the predicted one, in ``classes`` order."""
    out = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(truth, pred, strict=True):
        out[classes.index(t), classes.index(p)] += 1
    return out.tolist()


def balanced_accuracy(truth: Sequence[str], pred: Sequence[str]) -> float:
    """Mean recall over the classes present in ``truth`` (sklearn's
    ``balanced_accuracy_score``); NaN with no samples."""
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} true classes but {len(pred)} predicted")
    t, p = np.asarray(truth), np.asarray(pred)
    recalls = [float(np.mean(p[t == c] == c)) for c in np.unique(t)]
    return float(np.mean(recalls)) if recalls else float("nan")


def three_class(truth: Sequence[str], pred: Sequence[str]) -> dict[str, object]:
    """``acc_3class``, ``f1_3class`` (weighted F1, as MELD reports it),
    ``balanced_acc_3class`` and the confusion over :data:`POLARITIES`."""
    if not truth:
        raise ValueError("no samples to evaluate")
    t, p = np.asarray(truth), np.asarray(pred)
    return {
        "acc_3class": float(np.mean(t == p)),
        "f1_3class": weighted_f1(t, p),
        "balanced_acc_3class": balanced_accuracy(truth, pred),
        "confusion_3class": confusion(truth, pred, POLARITIES),
    }
