"""Per-utterance analysis: speech recognition, text sentiment, fusion.

Models are loaded once and shared; ``analyse`` is blocking and runs off the
event loop. Later encoders (voice, face) plug in here as more modality
estimates; the runtime around it does not change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge_msa.fusion import ModalityEstimate, fuse
from edge_msa.types import Estimate, ModalityState, Transcript, Utterance


@dataclass(frozen=True)
class Analysis:
    estimate: Estimate
    transcript: Transcript | None
    latency_ms: dict[str, float]


class Analyzer:
    def __init__(self, asr=None, text=None) -> None:
        self.asr = asr  # SpeechRecognizer, or None when transcription is off
        self.text = text  # TextEncoder

    def analyse(self, utt: Utterance) -> Analysis:
        latency: dict[str, float] = {}
        states = {
            "text": ModalityState.ABSENT,
            "audio": ModalityState.PRESENT if len(utt.audio) else ModalityState.ABSENT,
            "vision": ModalityState.ABSENT,
        }
        estimates: dict[str, ModalityEstimate] = {}
        transcript = None
        if self.asr is not None:
            with _timed(latency, "asr"):
                transcript = self.asr.transcribe(utt.audio)
            states["text"] = transcript.state
        if transcript is not None and transcript.state is not ModalityState.ABSENT:
            with _timed(latency, "text"):
                pred = self.text.predict(transcript.text)
            estimates["text"] = ModalityEstimate(pred.mean, pred.std, transcript.state)
        with _timed(latency, "fusion"):
            estimate = fuse(estimates, states)
        return Analysis(estimate, transcript, latency)


class _timed:
    def __init__(self, out: dict[str, float], key: str) -> None:
        self.out, self.key = out, key

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.out[self.key] = (time.perf_counter() - self.t) * 1000.0
