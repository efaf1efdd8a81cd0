"""Expression-model evaluation: FER2013-style npz crops, or faces found in frames.

Crops (npz: images (N, 48, 48) uint8, labels (N,) in FER2013 order): the
faces go straight to ``ExpressionModel.predict_faces``, the call the face
stage makes after cropping, so the shipped ONNX file (INT8 by default) is
what gets measured. ``ms_per_face`` is the median of single-face runs
(batch 1) on one thread: the runtime analyses one face per frame.

Frames (``evaluate_frames``): each image goes the runtime's way: the face
detector, the primary face as the tracker picks it, ``align_face`` (aligned
on the landmarks, or the square crop with ``align=False``), the model. The
images are a folder with ``labels.csv`` (``path,emotion``, FER2013 names) or
an npz's 48x48 faces each upscaled x4 and pasted into a larger frame
(``fer_frame``), as a camera would see them. Accuracy, UAR and recall are
over the faces found; ``detection_rate`` says how many that was, and
``ms_per_face`` is detect + crop + model per image. A folder of images that
are face crops already (``folder_crops``) is measured like the npz crops.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_msa.backends import Backend
from edge_msa.types import FACE_EMOTIONS
from edge_msa.vision.align import FACE_SIZE

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
    return evaluate_crops(data["images"], data["labels"].astype(np.int64), model_dir, backend)


def evaluate_crops(
    faces: np.ndarray, truth: np.ndarray, model_dir: str | Path, backend: Backend = "cpu"
) -> dict:
    """(N, 48, 48) grey face crops straight to the model."""
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


FRAME_SCALE = 4
FRAME_BORDER = 96


def fer_frame(face: np.ndarray) -> np.ndarray:
    """A 48x48 FER2013 face as a camera frame: x4 (192 px) in a 384x384 frame.

    The border is the face's mean grey: repeated edge pixels make streaks
    that CenterFace misses faces in (78 % found against 92 %).
    """
    size = face.shape[0] * FRAME_SCALE
    big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    b = FRAME_BORDER
    return cv2.copyMakeBorder(big, b, b, b, b, cv2.BORDER_CONSTANT, value=int(face.mean()))


def read_face_folder(folder: str | Path) -> tuple[list[Path], np.ndarray]:
    """Image paths and labels from ``folder/labels.csv`` (``path,emotion``)."""
    folder = Path(folder)
    paths, labels = [], []
    with open(folder / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["emotion"].strip().lower()
            if name not in FACE_EMOTIONS:
                raise ValueError(f"labels.csv: unknown emotion {row['emotion']!r} ({row['path']})")
            paths.append(folder / row["path"])
            labels.append(FACE_EMOTIONS.index(name))
    if not paths:
        raise ValueError(f"{folder / 'labels.csv'}: no rows")
    return paths, np.array(labels, np.int64)


def folder_images(paths: list[Path]) -> Iterator[np.ndarray]:
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise ValueError(f"{path}: not an image")
        yield image


def folder_crops(paths: list[Path]) -> np.ndarray:
    """Images that are face crops already (CK+-style), as (N, 48, 48) grey."""
    crops = []
    for image in folder_images(paths):
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        shrink = min(grey.shape) > FACE_SIZE
        resample = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        crops.append(cv2.resize(grey, (FACE_SIZE, FACE_SIZE), interpolation=resample))
    return np.stack(crops)


def npz_frames(faces: np.ndarray) -> Iterator[np.ndarray]:
    return (fer_frame(face) for face in faces)


def evaluate_frames(
    images: Iterable[np.ndarray],
    truth: np.ndarray,
    model,
    detector,
    aligns: tuple[bool, ...] = (True,),
) -> dict[str, dict]:
    """Faces found and cropped as at run time; one result per crop in ``aligns``.

    The keys are "aligned" and "square". Each image is detected once; the
    crops differ only in ``align_face``'s ``align``.
    """
    from edge_msa.vision.align import align_face
    from edge_msa.vision.tracker import PrimaryFaceTracker

    found: list[int] = []
    preds: dict[bool, list[int]] = {a: [] for a in aligns}
    times: dict[bool, list[float]] = {a: [] for a in aligns}
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        t = time.perf_counter()
        primary = PrimaryFaceTracker().update(detector.detect(image), w, h)
        detect_s = time.perf_counter() - t
        if primary is None:
            continue
        found.append(i)
        for a in aligns:
            t = time.perf_counter()
            face = align_face(image, primary, detector.crop_margin, a)
            probs, _ = model.predict_faces(face[None])
            times[a].append(detect_s + time.perf_counter() - t)
            preds[a].append(int(probs[0].argmax()))
    n = len(truth)
    out = {}
    for a in aligns:
        m = classification_metrics(truth[found], np.array(preds[a], np.int64))
        m.update(
            accuracy=round(m["accuracy"], 4),
            uar=round(m["uar"], 4),
            n=n,
            faces_found=len(found),
            detection_rate=round(len(found) / max(1, n), 4),
            ms_per_face=round(float(np.median(times[a])) * 1000, 3) if found else 0.0,
            detector=detector.kind,
        )
        out["aligned" if a else "square"] = m
    return out


def format_face_table(metrics: dict) -> str:
    lines = [f"n            {metrics['n']}"]
    if "detection_rate" in metrics:
        lines.append(
            f"detected     {metrics['faces_found']} ({metrics['detection_rate']:.3f}, "
            f"{metrics['detector']})"
        )
    lines += [
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
