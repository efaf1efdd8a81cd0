"""A timestamped ring buffer of per-frame face observations.

The runtime records every analysed frame (with or without a face) and gives
each utterance exactly the observations captured in [t0, t1].
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

import numpy as np

from edge_msa.fusion.features import vision_tokens
from edge_msa.types import FACE_EMOTIONS, FaceObservation


@dataclass(frozen=True)
class FaceSummary:
    """The face over one stretch of time, as fusion and the result need it."""

    emotion: str
    frames: int  # analysed frames in the window
    with_face: int  # of those, frames with a face
    tokens: np.ndarray  # (F, 135) the fusion model's vision tokens of the frames with a face


class FaceTrack:
    def __init__(self, keep_s: float = 60.0) -> None:
        self.keep_s = keep_s
        self._times: deque[float] = deque()
        self._obs: deque[FaceObservation | None] = deque()
        self._failed: deque[float] = deque()  # times of frames the face stage failed on

    def add(self, t: float, obs: FaceObservation | None) -> None:
        """Record an analysed frame; ``None`` means no face was found in it."""
        if self._times and t < self._times[-1]:
            return  # a source restart may repeat times; keep the buffer sorted
        self._times.append(t)
        self._obs.append(obs)
        while self._times and self._times[0] < t - self.keep_s:
            self._times.popleft()
            self._obs.popleft()

    def add_failure(self, t: float) -> None:
        """Record a frame the face stage failed on (it counts as not analysed)."""
        self._failed.append(t)
        while self._failed and self._failed[0] < t - self.keep_s:
            self._failed.popleft()

    def failures(self, t0: float, t1: float) -> tuple[int, int]:
        """(frames failed, frames given to the face stage) in [t0, t1]."""
        failed = sum(1 for t in self._failed if t0 <= t <= t1)
        return failed, failed + len(self.between(t0, t1))

    def between(self, t0: float, t1: float) -> list[FaceObservation | None]:
        times = list(self._times)
        lo, hi = bisect.bisect_left(times, t0), bisect.bisect_right(times, t1)
        return [self._obs[i] for i in range(lo, hi)]

    def summary(self, t0: float, t1: float, min_face_ratio: float = 0.2) -> FaceSummary | None:
        """The faces over [t0, t1] (the emotion weighted by quality); None when too few
        frames had a face."""
        window = self.between(t0, t1)
        faces = [o for o in window if o is not None]
        if not faces or len(faces) < min_face_ratio * len(window):
            return None
        w = np.array([max(o.quality, 1e-3) for o in faces])
        probs = np.average(np.stack([o.probs for o in faces]), axis=0, weights=w)
        emotion = FACE_EMOTIONS[int(np.argmax(probs))]
        tokens = vision_tokens(np.stack([o.embedding for o in faces]),
                               np.stack([o.probs for o in faces]))
        return FaceSummary(emotion, len(window), len(faces), tokens)
