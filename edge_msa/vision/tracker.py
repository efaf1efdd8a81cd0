"""Pick the primary face and keep it across frames.

The sentiment is about one speaker, so the face features of an utterance
must come from one person. The tracker picks the primary face once (large and
central: the person facing the device) and then follows it by box overlap
(IoU) from frame to frame. A second face that walks in, even a larger one,
does not take over while the primary is still matched; only after the
primary has been missing for ``max_missed`` analysed frames is a new primary
chosen.
"""

from __future__ import annotations

import math

from edge_msa.vision.detector import Detection

Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def prominence(box: Box, frame_w: int, frame_h: int) -> float:
    """Size (side relative to the frame) discounted by distance from the centre.

    A face at the frame edge counts half as much as the same face in the
    centre: kiosks and robots face the person they talk to.
    """
    x, y, w, h = box
    size = math.sqrt(w * h) / max(1.0, math.hypot(frame_w, frame_h))
    dx = (x + w / 2) / max(1, frame_w) - 0.5
    dy = (y + h / 2) / max(1, frame_h) - 0.5
    off_centre = min(1.0, math.hypot(dx, dy) / math.hypot(0.5, 0.5))
    return size * (1.0 - 0.5 * off_centre)


class PrimaryFaceTracker:
    """``update(detections, frame_w, frame_h) -> Detection | None`` per analysed frame."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.box: Box | None = None
        self.missed = 0

    def reset(self) -> None:
        self.box = None
        self.missed = 0

    def update(self, detections: list[Detection], frame_w: int, frame_h: int) -> Detection | None:
        if self.box is not None:
            match = self._match(detections)
            if match is not None:
                self.box, self.missed = match.box, 0
                return match
            self.missed += 1
            if self.missed <= self.max_missed:
                # Keep waiting for the primary rather than jump to someone else.
                return None
            self.reset()
        if not detections:
            return None
        best = max(detections, key=lambda d: prominence(d.box, frame_w, frame_h))
        self.box, self.missed = best.box, 0
        return best

    def _match(self, detections: list[Detection]) -> Detection | None:
        assert self.box is not None
        scored = [(iou(self.box, d.box), d) for d in detections]
        scored = [(o, d) for o, d in scored if o >= self.iou_threshold]
        return max(scored, key=lambda pair: pair[0])[1] if scored else None
