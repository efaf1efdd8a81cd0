"""Metrics: sentiment regression exactly as MMSA defines it, and emotion classification.

Mirrors ``MetricsTop.__eval_mosei_regression`` in thuiar/MMSA (which the MOSI
variant calls) so that numbers are comparable with published tables, but with
numpy only: sklearn is not a runtime dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_msa.data.voice_corpus import VALENCE_GROUPS, valence_group
from edge_msa.types import VOICE_EMOTIONS

ArrayLike = Sequence[float] | np.ndarray


def _multiclass_acc(pred: np.ndarray, truth: np.ndarray) -> float:
    # np.round rounds halves to even; MMSA relies on the same behaviour.
    return float(np.sum(np.round(pred) == np.round(truth)) / float(len(truth)))


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's ``f1_score(truth, pred, average="weighted")`` for labels.

    Classes are those present in either array; weights are the support of
    each class in ``truth``; an undefined F1 (no predicted and no true
    members) counts as 0, as sklearn does.
    """
    classes = np.union1d(truth, pred)
    total = 0.0
    for c in classes:
        tp = float(np.sum((pred == c) & (truth == c)))
        n_pred = float(np.sum(pred == c))
        n_true = float(np.sum(truth == c))
        denom = n_pred + n_true
        f1 = 2.0 * tp / denom if denom > 0 else 0.0
        total += f1 * n_true
    return total / float(len(truth)) if len(truth) else 0.0


def _pearson(pred: np.ndarray, truth: np.ndarray) -> float:
    # A constant prediction has no defined correlation; report 0, not NaN,
    # so tables and JSON stay printable.
    if len(pred) < 2 or np.std(pred) == 0 or np.std(truth) == 0:
        return 0.0
    return float(np.corrcoef(pred, truth)[0][1])


def regression_metrics(pred: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    """MAE, Pearson r, Acc-2 (non-zero and has-zero), F1, Acc-5, Acc-7.

    ``acc2`` and ``f1`` drop samples whose label is exactly 0 and compare
    ``> 0``; ``acc2_has0`` keeps them and compares ``>= 0``.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.shape[0]} values but truth has {t.shape[0]}")
    if p.size == 0:
        raise ValueError("no samples to evaluate")
    non_zero = t != 0
    nz_truth = t[non_zero] > 0
    nz_pred = p[non_zero] > 0
    return {
        "n": float(p.size),
        "mae": float(np.mean(np.abs(p - t))),
        "corr": _pearson(p, t),
        "acc2": float(np.mean(nz_pred == nz_truth)) if nz_truth.size else 0.0,
        "acc2_has0": float(np.mean((p >= 0) == (t >= 0))),
        "f1": weighted_f1(nz_truth, nz_pred),
        "acc5": _multiclass_acc(np.clip(p, -2.0, 2.0), np.clip(t, -2.0, 2.0)),
        "acc7": _multiclass_acc(np.clip(p, -3.0, 3.0), np.clip(t, -3.0, 3.0)),
    }


def classification_metrics(
    truth: list[str], probs: np.ndarray, labels: tuple[str, ...] = VOICE_EMOTIONS
) -> dict:
    """UAR, accuracy, per-class recall, confusion (rows true, columns predicted)
    and 3-class valence accuracy (the group with the most probability mass)."""
    probs = np.asarray(probs, dtype=np.float64)
    t = np.array([labels.index(e) for e in truth])
    p = probs.argmax(axis=1)
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(confusion, (t, p), 1)
    support = confusion.sum(axis=1)
    recall = {
        labels[i]: float(confusion[i, i] / support[i]) for i in range(len(labels)) if support[i]
    }
    groups = list(VALENCE_GROUPS)
    group_of = np.array([groups.index(valence_group(e)) for e in labels])
    mass = np.stack([probs[:, group_of == g].sum(axis=1) for g in range(len(groups))], axis=1)
    return {
        "n": int(len(t)),
        "uar": float(np.mean(list(recall.values()))) if recall else 0.0,
        "accuracy": float(np.mean(p == t)) if len(t) else 0.0,
        "valence_accuracy": float(np.mean(mass.argmax(axis=1) == group_of[t])) if len(t) else 0.0,
        "per_class_recall": recall,
        "confusion": confusion.tolist(),
        "labels": list(labels),
    }
