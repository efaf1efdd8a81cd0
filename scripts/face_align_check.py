"""Aligned vs square crops with the shipped expression model, face by face.

FER2013 PublicTest faces in camera-like frames (evaluation.face_eval.fer_frame),
upright and tilted (a seeded random angle in +-TILT degrees about the face
centre, as a head tilts in front of a camera); each frame detected once, then
the square crop and the aligned crop. Prints accuracy and UAR for each, the
npz crops themselves on the same faces, and a paired bootstrap (1,000
resamples of the faces found) of aligned minus square.

    nice .venv/bin/python scripts/face_align_check.py [--tilt 20] [--limit N]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from edge_msa.evaluation.face_eval import classification_metrics, fer_frame, load_expression
from edge_msa.models import model_dir
from edge_msa.vision.align import align_face
from edge_msa.vision.detector import FaceDetector
from edge_msa.vision.tracker import PrimaryFaceTracker

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATA = Path(os.environ.get("EDGE_MSA_DATA", SHARED))


def uar(truth: np.ndarray, pred: np.ndarray) -> float:
    return classification_metrics(truth, pred)["uar"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tilt", type=float, default=20.0)
    p.add_argument("--limit", type=int)
    args = p.parse_args()
    data = np.load(DATA / "fer2013" / "fer2013_PublicTest.npz")
    faces, truth = data["images"], data["labels"].astype(np.int64)
    if args.limit:  # evenly spaced: the npz is sorted by class
        pick = np.linspace(0, len(faces) - 1, args.limit).astype(int)
        faces, truth = faces[pick], truth[pick]
    model = load_expression(model_dir("face"), "cpu")
    detector = FaceDetector(kind="centerface")
    rng = np.random.default_rng(0)
    direct = np.concatenate(
        [model.predict_faces(faces[i : i + 256])[0].argmax(1) for i in range(0, len(faces), 256)]
    )
    for view in ("upright", "tilted"):
        found, square, aligned = [], [], []
        for i, face in enumerate(faces):
            frame = fer_frame(face)
            if view == "tilted":
                c = frame.shape[0] / 2
                m = cv2.getRotationMatrix2D((c, c), rng.uniform(-args.tilt, args.tilt), 1.0)
                size = frame.shape[1::-1]
                frame = cv2.warpAffine(frame, m, size, borderMode=cv2.BORDER_REPLICATE)
            primary = PrimaryFaceTracker().update(detector.detect(frame), *frame.shape[1::-1])
            if primary is None:
                continue
            found.append(i)
            crops = [align_face(frame, primary, align=a) for a in (False, True)]
            preds = model.predict_faces(np.stack(crops))[0].argmax(1)
            square.append(preds[0])
            aligned.append(preds[1])
        idx = np.array(found)
        t, sq, al = truth[idx], np.array(square), np.array(aligned)
        print(f"{view}: found {len(idx)} of {len(faces)} ({len(idx) / len(faces):.3f})")
        for name, pred in (("npz crops", direct[idx]), ("square", sq), ("aligned", al)):
            print(f"  {name:<10} accuracy {np.mean(pred == t):.4f}  uar {uar(t, pred):.4f}")
        boot = np.random.default_rng(1)
        d_acc, d_uar = [], []
        for _ in range(1000):
            s = boot.integers(0, len(t), len(t))
            d_acc.append(np.mean(al[s] == t[s]) - np.mean(sq[s] == t[s]))
            d_uar.append(uar(t[s], al[s]) - uar(t[s], sq[s]))
        for name, d in (("accuracy", d_acc), ("uar", d_uar)):
            lo, hi = np.percentile(d, [2.5, 97.5])
            print(f"  aligned - square {name}: 95 % interval [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
