"""Vision modality: face detection, primary-face tracking, expression.

    frame -> FaceDetector.detect -> PrimaryFaceTracker.update
          -> ExpressionModel (crop, 48x48 grey, INT8 CNN) -> FaceObservation

``FaceStage.process(frame)`` runs the whole chain and returns ``None`` when
no primary face is visible (the vision modality is then absent).
"""

from edge_msa.vision.detector import Detection, FaceDetector
from edge_msa.vision.expression import ExpressionModel, FaceStage
from edge_msa.vision.tracker import PrimaryFaceTracker

__all__ = [
    "Detection",
    "ExpressionModel",
    "FaceDetector",
    "FaceStage",
    "PrimaryFaceTracker",
]
