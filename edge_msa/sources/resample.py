"""Streaming conversion of any PCM to 16 kHz mono float32 (libswresample via PyAV)."""

from __future__ import annotations

import av
import numpy as np

from edge_msa.types import SAMPLE_RATE


class ToMono16k:
    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def frame(self, frame: av.AudioFrame) -> np.ndarray:
        """Resample one decoded frame; output may lag the input by a few samples."""
        return _concat(self._resampler.resample(frame))

    def array(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """Resample float32 samples shaped (n, channels) from ``rate``."""
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        layout = "mono" if samples.shape[1] == 1 else "stereo"
        if samples.shape[1] > 2:
            samples, layout = np.ascontiguousarray(samples.mean(axis=1, keepdims=True)), "mono"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout=layout)
        frame.sample_rate = rate
        return self.frame(frame)

    def flush(self) -> np.ndarray:
        return _concat(self._resampler.resample(None))


def _concat(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)
