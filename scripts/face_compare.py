"""Two expression models on the same FER2013 PublicTest faces, face by face.

Each model is a folder (its expression.int8.onnx) or one .onnx file. Prints
each one's accuracy, their agreement, the accuracy of their mean probabilities
(would the second be a useful second teacher?) and a paired bootstrap (2,000
resamples of the faces) of the second's accuracy minus the first's, and the
median ms per face of each, batch 1 on one thread, the two runs interleaved
(1,000 each) so that a busy machine slows both alike.

    nice .venv/bin/python scripts/face_compare.py models/face/expression.fp32.onnx \\
        build/face-restart/model/expression.fp32.onnx
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from edge_msa.evaluation.face_eval import load_expression

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATA = Path(os.environ.get("EDGE_MSA_DATA", SHARED))


def probabilities(net, faces: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [net.predict_faces(faces[i : i + 256])[0] for i in range(0, len(faces), 256)]
    )


def interleaved_ms(nets: list, face: np.ndarray, runs: int = 1000) -> list[float]:
    times: list[list[float]] = [[] for _ in nets]
    for _ in range(runs):
        for net, spent in zip(nets, times, strict=True):
            start = time.perf_counter()
            net.predict_faces(face)
            spent.append(time.perf_counter() - start)
    return [1000 * float(np.median(t)) for t in times]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    args = p.parse_args()
    data = np.load(DATA / "fer2013" / "fer2013_PublicTest.npz")
    faces, truth = data["images"], data["labels"].astype(np.int64)
    nets = [load_expression(path, "cpu") for path in (args.first, args.second)]
    a, b = (probabilities(net, faces) for net in nets)
    right_a, right_b = a.argmax(1) == truth, b.argmax(1) == truth
    print(f"first  accuracy {right_a.mean():.4f}")
    print(f"second accuracy {right_b.mean():.4f}")
    print(f"agreement {np.mean(a.argmax(1) == b.argmax(1)):.4f}")
    print(f"mean probabilities accuracy {np.mean((a + b).argmax(1) == truth):.4f}")
    print(
        f"right only by first {np.sum(right_a & ~right_b)}, "
        f"only by second {np.sum(right_b & ~right_a)}"
    )
    diff = right_b.astype(float) - right_a.astype(float)
    rng = np.random.default_rng(0)
    boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"second - first accuracy {diff.mean():+.4f}, 95 % interval [{lo:+.4f}, {hi:+.4f}]")
    ms_a, ms_b = interleaved_ms(nets, faces[:1])
    print(f"ms per face: first {ms_a:.3f}, second {ms_b:.3f}, ratio {ms_b / ms_a:.2f}")


if __name__ == "__main__":
    main()
