"""align_face on real detections of a real photo (skimage's astronaut)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from edge_msa.evaluation.face_eval import FRAME_BORDER, FRAME_SCALE, fer_frame
from edge_msa.vision import Detection, FaceDetector
from edge_msa.vision.align import align_face, crop_face


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(kind="centerface")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    image = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    # Room around the face, so rotating it keeps the whole face in the frame.
    return cv2.copyMakeBorder(image, 200, 200, 200, 200, cv2.BORDER_REPLICATE)


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    # About the face (the astronaut's face is near (425, 320) in the bordered image).
    matrix = cv2.getRotationMatrix2D((425.0, 320.0), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_landmarks_lie_in_the_box(detector: FaceDetector, astronaut: np.ndarray) -> None:
    (face,) = detector.detect(astronaut)
    assert face.landmarks is not None and len(face.landmarks) == 5
    x, y, w, h = face.box
    for px, py in face.landmarks:
        assert x <= px <= x + w and y <= py <= y + h
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    # Eyes above the nose above the mouth; the first eye is the image-left one.
    assert lx < rx and mlx < mrx and max(ly, ry) < ny < min(mly, mry)


def _eyes_in(crop: np.ndarray, detector: FaceDetector) -> np.ndarray:
    """Find the eyes again in a crop, seen as a camera would see it (48x48 pixels)."""
    (again,) = detector.detect(fer_frame(crop))
    return (np.array(again.landmarks[:2]) - FRAME_BORDER) / FRAME_SCALE


def test_aligned_crop_levels_the_eyes_and_keeps_the_box_framing(
    detector: FaceDetector, astronaut: np.ndarray
) -> None:
    (face,) = detector.detect(astronaut)
    upright = _eyes_in(align_face(astronaut, face, align=False), detector)
    for degrees in (0, 20, -25):
        image = _rotate(astronaut, degrees)
        (face,) = detector.detect(image)
        crop = align_face(image, face)
        assert crop.shape == (48, 48) and crop.dtype == np.uint8
        eyes = _eyes_in(crop, detector)
        lean = np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1]))
        # At most LEVEL_BEYOND_DEG (5) left in, plus the detector's error on a
        # 48-pixel face (measured: 1.4, 7.5 and 7.4 degrees).
        assert abs(lean) < 10.0, (degrees, lean)
        # Where the upright face's square crop has them: the box's framing, which
        # moves with the box found on the tilted face (measured: up to 3.7 px).
        assert np.hypot(*(eyes.mean(axis=0) - upright.mean(axis=0))) < 4.5, degrees
        assert abs(np.hypot(*(eyes[1] - eyes[0])) - np.hypot(*(upright[1] - upright[0]))) < 3.0


def test_a_face_leaning_a_little_keeps_the_square_crop(
    detector: FaceDetector, astronaut: np.ndarray
) -> None:
    (face,) = detector.detect(astronaut)
    # The astronaut leans less than 5 degrees: nothing to turn.
    assert _corr(align_face(astronaut, face), align_face(astronaut, face, align=False)) > 0.98


def test_alignment_undoes_a_tilted_head(detector: FaceDetector, astronaut: np.ndarray) -> None:
    (upright,) = detector.detect(astronaut)
    tilted_image = _rotate(astronaut, 25)
    (tilted,) = detector.detect(tilted_image)
    aligned = _corr(align_face(astronaut, upright), align_face(tilted_image, tilted))
    square = _corr(
        align_face(astronaut, upright, align=False), align_face(tilted_image, tilted, align=False)
    )
    # Measured: 0.66 aligned (5 of the 25 degrees left in), 0.26 square.
    assert aligned > 0.55 and aligned > square + 0.3, (aligned, square)


def test_without_landmarks_the_square_crop(astronaut: np.ndarray) -> None:
    haar_like = Detection((380, 260, 90, 100), 0.8)
    assert np.array_equal(
        align_face(astronaut, haar_like, margin=0.15), crop_face(astronaut, haar_like.box, 0.15)
    )
    # Landmarks on top of each other say nothing: the square crop too.
    degenerate = Detection(haar_like.box, 0.8, ((400.0, 300.0),) * 5)
    assert np.array_equal(align_face(astronaut, degenerate), crop_face(astronaut, haar_like.box))


def test_detect_near_moves_the_landmarks_into_frame_pixels(
    detector: FaceDetector, astronaut: np.ndarray
) -> None:
    (full,) = detector.detect(astronaut)
    (near,) = detector.detect_near(astronaut, full.box)
    assert np.abs(np.array(near.landmarks) - np.array(full.landmarks)).max() < 6.0


def test_small_and_large_faces_give_the_same_crop(
    detector: FaceDetector, astronaut: np.ndarray
) -> None:
    # The same face 4x larger (the same detection, scaled): the same crop, as
    # the crop depends on the landmarks, not on the camera's resolution.
    big = cv2.resize(astronaut, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    (face,) = detector.detect(astronaut)
    scaled = Detection(
        tuple(4 * v for v in face.box), face.score,
        tuple((4 * x + 1.5, 4 * y + 1.5) for x, y in face.landmarks),
    )
    assert _corr(align_face(astronaut, face), align_face(big, scaled)) > 0.97
