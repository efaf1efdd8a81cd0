"""Expression models on FER2013 PublicTest as other cameras would show the faces.

Each face (48x48) is changed one way at a time with OpenCV, not with the
training code's torch augmentation (edge_msa/training/face/data.py degrade):
lower resolution, Gaussian blur, sharpening, gamma, sensor noise, and three
changes that training never makes (JPEG at quality 15, motion blur,
histogram equalisation); then other framings, as another cropper would
give (the face 1.15 or 1.3 times as large in the box, or smaller, or off
centre). Prints accuracy and UAR of each model per change and the means over
the camera and the framing changes, all models in one table.

    nice .venv/bin/python scripts/face_camera_check.py models/face \\
        build/face-camera/model [--limit N]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_msa.evaluation.face_eval import classification_metrics, load_expression

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATA = Path(os.environ.get("EDGE_MSA_DATA", SHARED))


def low_res(side: int) -> Callable[[np.ndarray], np.ndarray]:
    def change(face: np.ndarray) -> np.ndarray:
        small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR)

    return change


def gamma(g: float) -> Callable[[np.ndarray], np.ndarray]:
    lut = ((np.arange(256) / 255.0) ** g * 255).astype(np.uint8)
    return lambda face: cv2.LUT(face, lut)


def blur(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda face: cv2.GaussianBlur(face, (0, 0), sigma)


def sharpen(face: np.ndarray) -> np.ndarray:
    f = face.astype(np.float32)
    return np.clip(2 * f - cv2.GaussianBlur(f, (0, 0), 1.0), 0, 255).astype(np.uint8)


def jpeg(face: np.ndarray) -> np.ndarray:
    _, data = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 15])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


def motion_blur(face: np.ndarray) -> np.ndarray:
    kernel = np.zeros((5, 5), np.float32)
    kernel[2, :] = 1 / 5
    return cv2.filter2D(face, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def noise(faces: np.ndarray) -> np.ndarray:
    grain = np.random.default_rng(0).normal(0, 12, faces.shape)
    return np.clip(faces + grain, 0, 255).astype(np.uint8)


def affine(m: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda face: cv2.warpAffine(face, m, (48, 48), borderMode=cv2.BORDER_REPLICATE)


def zoom(z: float) -> Callable[[np.ndarray], np.ndarray]:
    """The face z times as large in the crop (a tighter box), or smaller below 1."""
    return affine(cv2.getRotationMatrix2D((23.5, 23.5), 0, z))


def shift(dx: int, dy: int) -> Callable[[np.ndarray], np.ndarray]:
    return affine(np.float32([[1, 0, dx], [0, 1, dy]]))


def each(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda faces: np.stack([change(face) for face in faces])


CAMERA: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "face 32 px": each(low_res(32)),
    "face 24 px": each(low_res(24)),
    "blur 1 px": each(blur(1.0)),
    "sharpened": each(sharpen),
    "gamma 0.5": each(gamma(0.5)),
    "gamma 2": each(gamma(2.0)),
    "noise 12": noise,
    "jpeg 15 *": each(jpeg),
    "motion blur 5 px *": each(motion_blur),
    "equalised *": each(cv2.equalizeHist),
}
# Other croppers: the face larger or smaller in the box, or off centre.
FRAMING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "zoom 1.3": each(zoom(1.3)),
    "zoom 1.15": each(zoom(1.15)),
    "zoom 0.87": each(zoom(0.87)),
    "zoom 0.77": each(zoom(0.77)),
    "shift 4,4 px": each(shift(4, 4)),
}


def scores(model, faces: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    probs = np.concatenate(
        [model.predict_faces(faces[i : i + 512])[0] for i in range(0, len(faces), 512)]
    )
    m = classification_metrics(truth, probs.argmax(1))
    return m["accuracy"], m["uar"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("models", nargs="+", type=Path, help="model folders or .onnx files")
    p.add_argument("--limit", type=int)
    args = p.parse_args()
    data = np.load(DATA / "fer2013" / "fer2013_PublicTest.npz")
    faces, truth = data["images"], data["labels"].astype(np.int64)
    if args.limit:  # evenly spaced: the npz is sorted by class
        pick = np.linspace(0, len(faces) - 1, args.limit).astype(int)
        faces, truth = faces[pick], truth[pick]
    models = [load_expression(m, "cpu") for m in args.models]
    print("accuracy / UAR per model:", ", ".join(str(m) for m in args.models))
    print("(* a change the training's camera augmentation never makes)")
    rows: dict[str, list[tuple[float, float]]] = {
        "clean": [scores(m, faces, truth) for m in models]
    }
    for name, change in {**CAMERA, **FRAMING}.items():
        views = change(faces)
        rows[name] = [scores(m, views, truth) for m in models]
    rows["mean, camera"] = np.mean([rows[name] for name in CAMERA], axis=0)
    rows["mean, framing"] = np.mean([rows[name] for name in FRAMING], axis=0)
    for name, row in rows.items():
        print(f"{name:<20}" + "".join(f"  {a:.4f} / {u:.4f}" for a, u in row))


if __name__ == "__main__":
    main()
