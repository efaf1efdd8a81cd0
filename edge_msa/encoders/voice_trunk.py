"""The voice trunk: Whisper tiny.en's first encoder layers, for the voice head.

The recogniser's last encoder layer carries the words more than the voice; an
inner layer's frames tell emotions apart better (layer 2 of 4: grouped-CV UAR
0.783 against 0.704, docs/models.md "Voice"). CTranslate2 returns only the
last layer, so the voice stage runs the convolutions and the first blocks
again, as an ONNX graph written from the recogniser's own weights
(:mod:`edge_msa.training.voice.trunk`), on the mel window the voice head was
trained on: the smallest listed window that holds the audio plus its margin,
the same frames the recogniser's first pass encodes under the shipped window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_msa.encoders.asr import clean_audio, encoder_window
from edge_msa.encoders.asr_window import WindowPolicy, window_policy

MEL_BINS = 80  # Whisper tiny.en's


def policy_of(settings: dict) -> WindowPolicy:
    """The window a manifest's ``asr_window`` (``window_settings``) records."""
    if settings.get("fit_step_s"):
        return WindowPolicy(fit_step_s=settings["fit_step_s"], margin_s=settings["margin_s"])
    return window_policy(settings["sizes_s"], settings["margin_s"])


class VoiceTrunk:
    """16 kHz audio -> (window_s * 50, 384) float32 frames of the trunk's last layer;
    the first ``duration_frames(len(audio))`` cover the audio."""

    def __init__(self, path: Path, window: WindowPolicy, backend: str = "cpu",
                 threads: int = 1) -> None:
        from faster_whisper.feature_extractor import FeatureExtractor

        from edge_msa.backends import create_session

        self.window = window
        # The recogniser's extractor: faster-whisper builds it with these
        # defaults when the model folder has no preprocessor config (tiny.en's).
        self._extractor = FeatureExtractor(feature_size=MEL_BINS)
        warmup = {"mel": np.zeros((1, MEL_BINS, 500), np.float32)}
        self._session = create_session(path, backend, threads, warmup)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """(80, window mel frames): what the recogniser's encoder reads for this
        audio under ``window``."""
        samples = clean_audio(audio)
        return encoder_window(self._extractor(samples), self.window.mel_frames(len(samples)))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        mel = np.ascontiguousarray(self.mel(audio)[None], dtype=np.float32)
        (frames,) = self._session.run(["frames"], {"mel": mel})
        return frames[0]
