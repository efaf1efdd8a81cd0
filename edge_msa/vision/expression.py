"""Facial expression model and the face stage (frame -> FaceObservation).

The expression CNN is trained by ``edge-msa train face`` on FER2013 and
shipped as ``models/face/expression.int8.onnx``. Its graph takes grey faces
(B, 1, 48, 48) in 0..255 and does the centre crop to 40x40 and the per-image
standardisation itself, so the only preprocessing
here is geometric, done by :func:`edge_msa.vision.align.align_face`: a square
crop around the detector box, grey, resized to 48x48, turned with CenterFace's
eye landmarks so that the eyes lean at most 5 degrees (not with Haar, or with
``align=False``).

The fusion model reads each face's embedding and probabilities; the v0
baseline's valence from the probabilities lives in
:mod:`edge_msa.evaluation.baselines`.

Quality (0..1) is the geometric mean of three factors, so any one of them
near zero pulls it down: the detector's confidence; the face size
(min(w, h) / 64 px, capped at 1: FER faces are 48 px, smaller ones are
upsampled); and sharpness, 1 - exp(-v / 1000) where v is the variance of the
Laplacian of the 48x48 grey crop (FER2013 faces: 5th percentile 2,500,
median 5,300, so they score ~1; motion blur drops it below a few hundred).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from edge_msa.backends import Backend, create_session
from edge_msa.types import FACE_EMOTIONS, FaceObservation, VideoFrame
from edge_msa.vision.align import align_face, crop_face
from edge_msa.vision.detector import Detection, FaceDetector, as_bgr, default_model_dir
from edge_msa.vision.tracker import Box, PrimaryFaceTracker

MODEL_FILE = "expression.int8.onnx"
FP32_FILE = "expression.fp32.onnx"  # before quantisation: accuracy reference and bench baseline
FACE_SIZE = 48
# Default widening of the detector box (a fraction of its longer side); the
# detector says what suits its boxes (FaceDetector.crop_margin).
CROP_MARGIN = 0.0
FULL_QUALITY_SIDE = 64.0
SHARPNESS_SCALE = 1000.0



def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def sharpness(face: np.ndarray) -> float:
    v = float(cv2.Laplacian(face, cv2.CV_64F).var())
    return 1.0 - math.exp(-v / SHARPNESS_SCALE)


def quality(score: float, box: Box, face: np.ndarray) -> float:
    size = min(1.0, min(box[2], box[3]) / FULL_QUALITY_SIDE)
    parts = (max(0.0, min(1.0, score)), size, sharpness(face))
    return float(np.prod(parts) ** (1.0 / 3.0))


class ExpressionModel:
    """The FER2013 CNN: ``analyse(image, box) -> (probs (7,), embedding (D,))``."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        backend: Backend = "cpu",
        threads: int = 1,
        file: str = MODEL_FILE,
    ) -> None:
        path = Path(model_dir or default_model_dir()) / file
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: run edge-msa train face --config configs/face.toml"
            )
        manifest = json.loads((path.parent / "manifest.json").read_text())
        self.name = f"{manifest['name']}@{manifest['version']}"
        warm = {"image": np.zeros((1, 1, FACE_SIZE, FACE_SIZE), np.float32)}
        self.session = create_session(path, backend, threads, warmup=warm)
        self.embedding_dim = int(self.session.get_outputs()[1].shape[1])

    def predict_faces(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 48, 48) grey faces, 0..255 -> probs (N, 7), embeddings (N, D)."""
        batch = np.asarray(faces, dtype=np.float32).reshape(-1, 1, FACE_SIZE, FACE_SIZE)
        logits, embedding = self.session.run(None, {"image": batch})
        return softmax(logits), embedding.astype(np.float32)

    def analyse(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
        probs, embedding = self.analyse_batch(image, [box])
        return probs[0], embedding[0]

    def analyse_batch(self, image: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray]:
        """Several faces of one frame in one run."""
        if not boxes:
            return np.zeros((0, len(FACE_EMOTIONS)), np.float32), np.zeros(
                (0, self.embedding_dim), np.float32
            )
        return self.predict_faces(np.stack([crop_face(image, box) for box in boxes]))


class FaceStage:
    """``process(frame) -> FaceObservation | None`` (None: no primary face)."""

    def __init__(
        self,
        detector: FaceDetector | None = None,
        tracker: PrimaryFaceTracker | None = None,
        expression: ExpressionModel | None = None,
        full_every: int = 5,
        align: bool = True,
    ) -> None:
        self.detector = detector or FaceDetector()
        # False: the square crop around the box even when landmarks exist.
        self.align = align
        self.tracker = tracker or PrimaryFaceTracker()
        self.expression = expression or ExpressionModel()
        # Search the whole frame this often (for a face that walks in); between
        # those, only around the tracked face, at a fraction of the cost.
        self.full_every = full_every
        self._since_full = 0
        self.timings: dict[str, float] = {}  # the last frame's ms per step, for the bench

    def process(self, frame: VideoFrame) -> FaceObservation | None:
        self.timings = {}
        image = as_bgr(frame.image)
        if image is None:
            return None
        h, w = image.shape[:2]
        t = time.perf_counter()
        primary = self.tracker.update(self._detect(image), w, h)
        self.timings["face_detect"] = (time.perf_counter() - t) * 1000.0
        if primary is None or min(primary.box[2:]) < 2:
            return None
        t = time.perf_counter()
        face = align_face(image, primary, self.detector.crop_margin, self.align)
        probs, embedding = self.expression.predict_faces(face[None])
        self.timings["face_expression"] = (time.perf_counter() - t) * 1000.0
        return FaceObservation(
            t=frame.t,
            box=primary.box,
            quality=quality(primary.score, primary.box, face),
            probs=probs[0],
            embedding=embedding[0],
        )

    def _detect(self, image: np.ndarray) -> list[Detection]:
        box = self.tracker.box
        self._since_full += 1
        if box is not None and self._since_full < self.full_every:
            found = self.detector.detect_near(image, box)
            if found:
                return found
        self._since_full = 0
        return self.detector.detect(image)
