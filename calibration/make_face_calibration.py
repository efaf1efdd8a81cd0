"""Rebuild calibration/face_calibration.npz: the INT8 calibration faces.

A class-stratified sample of FER2013 *Training* faces (never PublicTest or
PrivateTest), an equal number per class with a fixed seed, so the activation
ranges see every expression, 'disgust' included, rather than mostly 'happy'.

The faces are FER2013's own 48x48 crops, as they are: the runtime's aligned
crop (edge_msa.vision.align) puts the eyes where FER2013's faces have them,
so these are the faces the model sees. ``--runtime-crop`` instead passes
each through the runtime's path (x4 in a frame, detector, ``align_face``),
dropping the faces the detector misses; the shipped npz is built without it.

    .venv/bin/python calibration/make_face_calibration.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from edge_msa.hashing import sha256_file

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGE_MSA_DATA", REPO.parent / "shared" / "datasets"))
OUT = REPO / "calibration" / "face_calibration.npz"


def stratified_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picks))


def runtime_crops(idx: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from edge_msa.evaluation.face_eval import fer_frame
    from edge_msa.vision.align import align_face
    from edge_msa.vision.detector import FaceDetector

    detector = FaceDetector(kind="centerface")
    keep, crops = [], []
    for i, face in zip(idx, faces, strict=True):
        frame = fer_frame(face)
        found = detector.detect(frame)
        if found:
            keep.append(i)
            crops.append(align_face(frame, found[0]))
    return np.array(keep), np.stack(crops)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-class", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtime-crop", action="store_true", help="found and aligned as at run time")
    args = p.parse_args()
    data = np.load(DATA / "fer2013" / "fer2013_Training.npz")
    idx = stratified_indices(data["labels"], args.per_class, args.seed)
    images = data["images"][idx]
    if args.runtime_crop:
        idx, images = runtime_crops(idx, images)
    np.savez_compressed(
        OUT,
        images=images,
        labels=data["labels"][idx],
        ids=data["ids"][idx],
        classes=data["classes"],
    )
    print(f"{OUT}: {len(idx)} faces, sha256 {sha256_file(OUT)}")


if __name__ == "__main__":
    main()
