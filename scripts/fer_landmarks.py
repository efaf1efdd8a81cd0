"""Where FER2013's faces sit in their 48x48 frames: CenterFace's median landmarks.

The numbers behind the eye template that edge_msa/vision/align.py used up to
commit 47def99 (scripts/face_align_check.py still measures it): a seeded sample of
FER2013 *Training* faces, each pasted into a camera-like frame
(evaluation.face_eval.fer_frame), detected, landmarks mapped back to 48x48.

    .venv/bin/python scripts/fer_landmarks.py [--n 3000]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from edge_msa.evaluation.face_eval import FRAME_BORDER, FRAME_SCALE, fer_frame
from edge_msa.vision.detector import FaceDetector

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATA = Path(os.environ.get("EDGE_MSA_DATA", SHARED))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    data = np.load(DATA / "fer2013" / "fer2013_Training.npz")
    idx = np.random.default_rng(args.seed).choice(len(data["labels"]), args.n, replace=False)
    images = data["images"]  # an npz member is read again on every access: once
    detector = FaceDetector(kind="centerface")
    points = []
    for i in idx:
        found = detector.detect(fer_frame(images[i]))
        if found and found[0].landmarks is not None:
            points.append((np.array(found[0].landmarks) - FRAME_BORDER) / FRAME_SCALE)
    pts = np.array(points)
    names = ["left eye", "right eye", "nose", "mouth left", "mouth right"]
    print(f"found {len(pts)} of {args.n} ({len(pts) / args.n:.1%})")
    for name, (x, y) in zip(names, np.median(pts, axis=0), strict=True):
        print(f"{name:<12} ({x:.1f}, {y:.1f})")
    eye_mid = (pts[:, 0] + pts[:, 1]) / 2
    mouth_mid = (pts[:, 3] + pts[:, 4]) / 2
    print(f"eye midpoint  ({np.median(eye_mid[:, 0]):.1f}, {np.median(eye_mid[:, 1]):.1f})")
    print(f"eye distance  {np.median(np.hypot(*(pts[:, 1] - pts[:, 0]).T)):.2f}")
    print(f"eye to mouth  {np.median(np.hypot(*(mouth_mid - eye_mid).T)):.2f}")


if __name__ == "__main__":
    main()
