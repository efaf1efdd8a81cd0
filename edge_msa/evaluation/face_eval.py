"""Expression-model evaluation on a FER2013 split (npz: images (N, 48, 48)
uint8, labels (N,) in FER2013 order).

The faces go through ``ExpressionModel.predict_faces``, the same call the
face stage makes after cropping, so the shipped ONNX file (INT8 by default)
is what gets measured. ``ms_per_face`` is the median of single-face runs
(batch 1) on one thread: the runtime analyses one face per frame.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_msa.backends import Backend
from edge_msa.types import FACE_EMOTIONS

TIMED_FACES = 200
EVAL_BATCH = 256


def load_expression(model: str | Path, backend: Backend, threads: int = 1):
    """A folder (its expression.int8.onnx) or one .onnx file."""
    from edge_msa.vision.expression import ExpressionModel

    path = Path(model)
    if path.suffix == ".onnx":
        return ExpressionModel(path.parent, backend, threads, file=path.name)
    return ExpressionModel(path, backend, threads)


def classification_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy, unweighted average recall, per-class recall, confusion (rows true)."""
    k = len(FACE_EMOTIONS)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, pred), 1)
    support = confusion.sum(axis=1)
    recall = np.divide(np.diag(confusion), support, out=np.zeros(k), where=support > 0)
    return {
        "accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
        "uar": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        "per_class_recall": {
            name: round(float(r), 4) for name, r in zip(FACE_EMOTIONS, recall, strict=True)
        },
        "confusion": confusion.tolist(),
    }


def time_per_face(model, faces: np.ndarray) -> float:
    times = []
    for face in faces[:TIMED_FACES]:
        t = time.perf_counter()
        model.predict_faces(face[None])
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def evaluate_face(npz_path: str | Path, model_dir: str | Path, backend: Backend = "cpu") -> dict:
    data = np.load(npz_path)
    faces, truth = data["images"], data["labels"].astype(np.int64)
    model = load_expression(model_dir, backend)
    probs = np.concatenate(
        [
            model.predict_faces(faces[i : i + EVAL_BATCH])[0]
            for i in range(0, len(faces), EVAL_BATCH)
        ]
    )
    metrics = classification_metrics(truth, probs.argmax(axis=1))
    metrics["ms_per_face"] = round(time_per_face(model, faces), 4)
    metrics["n"] = int(len(faces))
    metrics["accuracy"] = round(metrics["accuracy"], 4)
    metrics["uar"] = round(metrics["uar"], 4)
    return metrics


def format_face_table(metrics: dict) -> str:
    lines = [
        f"n            {metrics['n']}",
        f"accuracy     {metrics['accuracy']:.4f}",
        f"uar          {metrics['uar']:.4f}",
        f"ms_per_face  {metrics['ms_per_face']:.3f}",
        "",
        "recall by class",
    ]
    lines += [f"  {name:<9}  {r:.3f}" for name, r in metrics["per_class_recall"].items()]
    lines += [
        "",
        "confusion (rows true, columns predicted)",
        "  " + " ".join(f"{n[:5]:>6}" for n in FACE_EMOTIONS),
    ]
    lines += [
        f"  {' '.join(f'{v:>6d}' for v in row)}  {name}"
        for name, row in zip(FACE_EMOTIONS, metrics["confusion"], strict=True)
    ]
    return "\n".join(lines)
