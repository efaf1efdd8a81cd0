"""Rebuild calibration/face_calibration.npz: the INT8 calibration faces.

A class-stratified sample of FER2013 *Training* faces (never PublicTest or
PrivateTest), an equal number per class with a fixed seed, so the activation
ranges see every expression, 'disgust' included, rather than mostly 'happy'.

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-class", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = np.load(DATA / "fer2013" / "fer2013_Training.npz")
    idx = stratified_indices(data["labels"], args.per_class, args.seed)
    np.savez_compressed(
        OUT,
        images=data["images"][idx],
        labels=data["labels"][idx],
        ids=data["ids"][idx],
        classes=data["classes"],
    )
    print(f"{OUT}: {len(idx)} faces, sha256 {sha256_file(OUT)}")


if __name__ == "__main__":
    main()
