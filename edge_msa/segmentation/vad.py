"""Streaming voice activity detection with the Silero v6 ONNX model.

The model ships inside faster-whisper (``faster_whisper/assets``), so nothing
is downloaded. It scores windows of 512 samples at 16 kHz, each with the last
64 samples of the previous window prepended as context, and carries an LSTM
state (``h``, ``c``) from window to window. The first axis of ``input`` is the
sequence of windows, so all windows completed by one chunk go through the
model in a single call with the same result as one call per window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edge_msa.backends import Backend, create_session
from edge_msa.models import VAD, vad_path, verify_external

WINDOW = 512
CONTEXT = 64
_STATE_SHAPE = (1, 1, 128)


class SpeechProbabilities(Protocol):
    """What the segmenter needs from a VAD: one probability per 512-sample window."""

    def probs(self, samples: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


def default_model_path() -> Path:
    """The Silero file edge_msa.models resolves (faster-whisper's, unless a models root has one)."""
    return vad_path()


class SileroVad:
    """Stateful streaming wrapper: feed chunks of any length, get window probabilities."""

    def __init__(self, model_path: str | Path | None = None, backend: Backend = "cpu") -> None:
        if model_path is None:  # the shipped one must be the tested file
            path = verify_external(VAD, default_model_path())
        else:
            path = Path(model_path)
        self._session = create_session(path, backend=backend, threads=1, warmup=self._zeros(1))
        self.reset()

    @staticmethod
    def _zeros(windows: int) -> dict[str, np.ndarray]:
        return {
            "input": np.zeros((windows, CONTEXT + WINDOW), np.float32),
            "h": np.zeros(_STATE_SHAPE, np.float32),
            "c": np.zeros(_STATE_SHAPE, np.float32),
        }

    def reset(self) -> None:
        """Forget the stream: state, context and any buffered partial window."""
        zeros = self._zeros(0)
        self._h, self._c = zeros["h"], zeros["c"]
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)

    @property
    def pending(self) -> int:
        """Samples buffered towards the next window."""
        return len(self._pending)

    def probs(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability for each 512-sample window completed by ``samples``."""
        audio = np.concatenate([self._pending, np.asarray(samples, np.float32).ravel()])
        count = len(audio) // WINDOW
        self._pending = audio[count * WINDOW :]
        if count == 0:
            return np.zeros(0, np.float32)
        windows = audio[: count * WINDOW].reshape(count, WINDOW)
        return self._run(windows)

    def _run(self, windows: np.ndarray) -> np.ndarray:
        # Each window's context is the tail of the window before it.
        tails = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        batch = np.concatenate([tails, windows], axis=1)
        self._context = windows[-1, -CONTEXT:].copy()
        out, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        return np.asarray(out, np.float32).reshape(-1)
