"""Crops of the runtime's path with the shipped expression model, face by face.

FER2013 PublicTest faces in camera-like frames (evaluation.face_eval.fer_frame),
upright and tilted (a seeded random angle in +-TILT degrees about the face
centre, as a head tilts in front of a camera); each frame detected once, then
three crops: the square of the box, the aligned crop (align_face: that square
turned so the eyes lean at most 5 degrees) and the eye template that
align_face used before (eyes at FER2013's median landmarks, scaled by
sqrt(eye distance x eye-to-mouth distance); kept here for the record).
Prints accuracy and UAR for each, the npz crops themselves on the same faces,
and paired bootstraps (1,000 resamples of the faces found) of aligned minus
the other two.

    nice .venv/bin/python scripts/face_align_check.py [--tilt 20] [--limit N]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import cv2
import numpy as np

from edge_msa.evaluation.face_eval import classification_metrics, fer_frame, load_expression
from edge_msa.models import model_dir
from edge_msa.vision.align import align_face, warp_face
from edge_msa.vision.detector import FaceDetector
from edge_msa.vision.tracker import PrimaryFaceTracker

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATA = Path(os.environ.get("EDGE_MSA_DATA", SHARED))


# The template align_face used up to commit 47def99 (scripts/fer_landmarks.py).
EYE_MID, EYE_DISTANCE, EYE_TO_MOUTH = (24.0, 19.6), 17.5, 16.8


def template_crop(frame: np.ndarray, marks: np.ndarray) -> np.ndarray:
    left, right = marks[0], marks[1]
    eyes, mouth = (left + right) / 2, (marks[3] + marks[4]) / 2
    dx, dy = right - left
    eye_dist = math.hypot(dx, dy)
    scale = math.sqrt(EYE_DISTANCE * EYE_TO_MOUTH / (eye_dist * np.hypot(*(mouth - eyes))))
    cos, sin = dx / eye_dist * scale, dy / eye_dist * scale
    rot = np.array([[cos, sin], [-sin, cos]])
    matrix = np.hstack([rot, (np.array(EYE_MID) - rot @ eyes)[:, None]])
    return warp_face(frame, matrix)


def uar(truth: np.ndarray, pred: np.ndarray) -> float:
    return classification_metrics(truth, pred)["uar"]


def paired(t: np.ndarray, a: np.ndarray, b: np.ndarray, name: str) -> None:
    boot = np.random.default_rng(1)
    d_acc, d_uar = [], []
    for _ in range(1000):
        s = boot.integers(0, len(t), len(t))
        d_acc.append(np.mean(a[s] == t[s]) - np.mean(b[s] == t[s]))
        d_uar.append(uar(t[s], a[s]) - uar(t[s], b[s]))
    for metric, d in (("accuracy", d_acc), ("uar", d_uar)):
        lo, hi = np.percentile(d, [2.5, 97.5])
        print(f"  {name} {metric}: 95 % interval [{lo:+.4f}, {hi:+.4f}]")


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
        found, preds = [], []
        for i, face in enumerate(faces):
            frame = fer_frame(face)
            if view == "tilted":
                c = frame.shape[0] / 2
                m = cv2.getRotationMatrix2D((c, c), rng.uniform(-args.tilt, args.tilt), 1.0)
                size = frame.shape[1::-1]
                frame = cv2.warpAffine(frame, m, size, borderMode=cv2.BORDER_REPLICATE)
            primary = PrimaryFaceTracker().update(detector.detect(frame), *frame.shape[1::-1])
            if primary is None or primary.landmarks is None:
                continue
            found.append(i)
            crops = [align_face(frame, primary, align=a) for a in (False, True)]
            crops.append(template_crop(frame, np.asarray(primary.landmarks, np.float64)))
            preds.append(model.predict_faces(np.stack(crops))[0].argmax(1))
        idx = np.array(found)
        t = truth[idx]
        square, aligned, template = np.array(preds).T
        print(f"{view}: found {len(idx)} of {len(faces)} ({len(idx) / len(faces):.3f})")
        crops_of = {"npz crops": direct[idx], "square": square, "aligned": aligned}
        for name, pred in {**crops_of, "template": template}.items():
            print(f"  {name:<10} accuracy {np.mean(pred == t):.4f}  uar {uar(t, pred):.4f}")
        paired(t, aligned, square, "aligned - square")
        paired(t, aligned, template, "aligned - template")


if __name__ == "__main__":
    main()
