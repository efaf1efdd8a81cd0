"""One face, one 48x48 grey crop: ``align_face(image, detection) -> (48, 48) uint8``.

The runtime's face stage, ``edge-msa eval face`` (npz frames and image
folders) and any tool that cuts faces out of whole images call this one
function, so the expression model sees faces cut the same way everywhere.

Aligned (a detection with landmarks, i.e. CenterFace): the square of the
detector's box, as below, turned about the box centre so that the eyes lean
at most ``LEVEL_BEYOND_DEG`` degrees. FER2013's faces were registered
automatically, centred at about the same size (Goodfellow et al. 2013): a
framing like a detector's box, the eyes leaning a few degrees either way. The
expression model knows that framing and that lean; a head tilted further is
turned back to it.
Measured on FER2013 PublicTest through the runtime's path
(``scripts/face_align_check.py``, docs/models.md "Aligned crops"): this crop
scores as the square one on upright faces and above it on tilted ones, and
above a crop that puts the eyes at fixed places (a template of FER2013's
median landmarks, scaled by sqrt(eye distance x eye-to-mouth distance);
probably because scaling by the mouth shrinks an open-mouthed face).

Square (no landmarks: the Haar fallback, or ``align=False``): a square of
the box's longer side (widened by ``margin``) around the box
centre, edge pixels repeated outside the frame.

Training: FER2013's images are already 48x48 crops of this kind, so the
trainer uses them as they are.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_msa.vision.detector import Detection, as_bgr

FACE_SIZE = 48
# Eyes leaning up to this much are left as they are (FER2013's own spread).
LEVEL_BEYOND_DEG = 5.0
# Below this many pixels between the eyes the landmarks say little: square crop.
MIN_EYE_DISTANCE_PX = 4.0
# Downscaling more than this in one warp aliases: warp to k x 48 and area-resize.
MAX_SUPERSAMPLE = 4

Box = tuple[int, int, int, int]


def align_face(
    image: np.ndarray,
    detection: Detection,
    margin: float = 0.0,
    align: bool = True,
    size: int = FACE_SIZE,
) -> np.ndarray:
    """The face as the expression model wants it: (size, size) grey uint8.

    ``margin`` widens the box's square (the detector's ``crop_margin``).
    """
    grey = _grey(image)
    marks = detection.landmarks
    if align and marks is not None:
        matrix = alignment_matrix(np.asarray(marks, np.float64), detection.box, margin, size)
        if matrix is not None:
            return _warp(grey, matrix, size)
    return _square(grey, detection.box, margin, size)


def alignment_matrix(
    marks: np.ndarray, box: Box, margin: float = 0.0, size: int = FACE_SIZE
) -> np.ndarray | None:
    """2x3 affine from frame pixels to crop pixels, or None for degenerate landmarks."""
    dx, dy = marks[1] - marks[0]
    if not (math.hypot(dx, dy) >= MIN_EYE_DISTANCE_PX and np.isfinite(marks).all()):
        return None
    lean = math.atan2(dy, dx)
    limit = math.radians(LEVEL_BEYOND_DEG)
    turn = lean - max(-limit, min(limit, lean))
    x, y, w, h = box
    scale = size / (max(w, h) * (1 + margin))
    cos, sin = math.cos(turn) * scale, math.sin(turn) * scale
    # Turn back by the lean beyond the limit and scale about the box centre,
    # then move it to the crop's centre.
    rot = np.array([[cos, sin], [-sin, cos]])
    shift = np.array([size / 2, size / 2]) - rot @ np.array([x + w / 2, y + h / 2])
    return np.hstack([rot, shift[:, None]])


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The grey crop that a 2x3 affine from frame pixels to crop pixels cuts out."""
    return _warp(_grey(image), matrix, size)


def crop_face(
    image: np.ndarray, box: Box, margin: float = 0.0, size: int = FACE_SIZE
) -> np.ndarray:
    """Square grey crop centred on the box, edge pixels repeated outside the frame."""
    return _square(_grey(image), box, margin, size)


def _grey(image: np.ndarray) -> np.ndarray:
    bgr = as_bgr(image)
    if bgr is None:
        raise ValueError("empty image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def _warp(grey: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    scale = math.hypot(matrix[0, 0], matrix[0, 1])
    k = int(max(1, min(MAX_SUPERSAMPLE, math.floor(1.0 / scale))))
    out = cv2.warpAffine(
        grey, matrix * np.array([[k], [k]]), (size * k, size * k),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )
    return out if k == 1 else cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)


def _square(grey: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    x, y, w, h = box
    side = max(2, int(round(max(w, h) * (1 + margin))))
    x0 = int(round(x + w / 2 - side / 2))
    y0 = int(round(y + h / 2 - side / 2))
    H, W = grey.shape
    pad = max(0, -x0, -y0, x0 + side - W, y0 + side - H)
    if pad:
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    patch = grey[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)
