"""One face, one 48x48 grey crop: ``align_face(image, detection) -> (48, 48) uint8``.

The runtime's face stage, ``edge-msa eval face`` (npz frames and image
folders) and any tool that cuts faces out of whole images call this one
function, so the expression model sees faces cut the same way everywhere.

Aligned (a detection with landmarks, i.e. CenterFace). A similarity
transform (rotation, one scale, shift) puts the eyes level at fixed places
in the 48x48 crop: the eye midpoint at ``EYE_MID`` and the face's size,
``sqrt(eye distance * eye-to-mouth distance)``, at ``FACE_SCALE`` px. The
size uses both distances so that a turned head (eyes closer together) or a
tilted one (eyes nearer the mouth) is not blown up, as the eye distance alone
would be. The numbers are where FER2013's own faces sit in their 48x48
frames: CenterFace run on 3,000 FER2013 *Training* faces (seeded sample),
each upscaled x4 to 192 px and pasted into a 384x384 frame of its mean grey
(``evaluation.face_eval.fer_frame``), landmarks mapped back to 48x48 pixels;
medians (found in 2,768, 92.3 %):

    eye on the image's left (15.1, 19.7), other eye (32.9, 19.4),
    nose (24.0, 29.0), mouth corners (17.1, 36.1) and (31.4, 35.8);
    eye midpoint (24.0, 19.6), eye distance 17.5 px,
    eye midpoint to mouth midpoint 16.8 px.

The template is left-right symmetric (x 24, the centre: training flips
faces), so the eyes land at (15.25, 19.6) and (32.75, 19.6). Re-measure with
``python scripts/fer_landmarks.py --n 3000``.

Square (no landmarks: the Haar fallback, or ``align=False``): today's crop,
a square of the box's longer side (widened by ``margin``) around the box
centre, edge pixels repeated outside the frame.

Training: FER2013's images are already 48x48 crops of this geometry, so the
trainer uses them as they are; the template above is what makes the runtime's
aligned crops look like them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge_msa.vision.detector import Detection, as_bgr

FACE_SIZE = 48
# Medians of FER2013 Training faces (see the module docstring), made symmetric.
EYE_MID = (24.0, 19.6)
EYE_DISTANCE = 17.5
EYE_TO_MOUTH = 16.8
FACE_SCALE = math.sqrt(EYE_DISTANCE * EYE_TO_MOUTH)
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

    ``margin`` widens the square crop only (the detector's ``crop_margin``).
    """
    grey = _grey(image)
    marks = detection.landmarks
    if align and marks is not None:
        matrix = alignment_matrix(np.asarray(marks, np.float64), size)
        if matrix is not None:
            return _warp(grey, matrix, size)
    return _square(grey, detection.box, margin, size)


def alignment_matrix(marks: np.ndarray, size: int = FACE_SIZE) -> np.ndarray | None:
    """2x3 affine from frame pixels to crop pixels, or None for degenerate landmarks."""
    left, right = marks[0], marks[1]
    eyes = (left + right) / 2
    mouth = (marks[3] + marks[4]) / 2
    dx, dy = right - left
    eye_dist = math.hypot(dx, dy)
    eye_mouth = float(np.hypot(*(mouth - eyes)))
    if not (eye_dist >= MIN_EYE_DISTANCE_PX and eye_mouth > 0 and np.isfinite(marks).all()):
        return None
    scale = FACE_SCALE / math.sqrt(eye_dist * eye_mouth) * size / FACE_SIZE
    cos, sin = dx / eye_dist * scale, dy / eye_dist * scale
    # Rotate by minus the eye line's angle and scale about the eye midpoint,
    # then move it to the template's.
    rot = np.array([[cos, sin], [-sin, cos]])
    target = np.array(EYE_MID) * size / FACE_SIZE
    shift = target - rot @ eyes
    return np.hstack([rot, shift[:, None]])


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
