"""Per-utterance analysis: speech recognition, text sentiment, face summary, fusion.

Models are loaded once and shared; ``analyse`` is blocking and runs off the
event loop. Each modality that is there adds a Gaussian estimate on the MOSI
scale; fusion weighs them by their precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edge_msa.encoders.voice import audio_state
from edge_msa.fusion import ModalityEstimate, fuse
from edge_msa.runtime.face_track import FaceSummary
from edge_msa.types import VOICE_EMOTIONS, Estimate, ModalityState, Transcript, Utterance

ABSENT, PRESENT = ModalityState.ABSENT, ModalityState.PRESENT


@dataclass(frozen=True)
class Analysis:
    estimate: Estimate
    transcript: Transcript | None
    latency_ms: dict[str, float]
    outputs: dict[str, dict[str, object]] = field(default_factory=dict)


class Analyzer:
    """``asr`` runs the Whisper encoder once per utterance; its output feeds the
    decoder (when ``text`` is set, i.e. transcription is on) and ``voice``."""

    def __init__(self, asr=None, text=None, voice=None) -> None:
        self.asr = asr  # SpeechRecognizer; None when neither text nor voice is wanted
        self.text = text  # TextEncoder; None when transcription is off
        self.voice = voice  # VoiceEncoder; None when the voice stage is off

    def analyse(self, utt: Utterance, face: FaceSummary | None = None) -> Analysis:
        latency: dict[str, float] = {}
        states = {"text": ABSENT, "audio": ABSENT, "vision": ABSENT}
        estimates: dict[str, ModalityEstimate] = {}
        outputs: dict[str, dict[str, object]] = {}
        transcript = frames = None
        if self.asr is not None:
            with _timed(latency, "asr"):
                transcript, frames = self.asr.recognise(utt.audio, transcribe=self.text is not None)
        if frames is not None and self.voice is not None:
            self._add_voice(utt, frames, latency, states, estimates, outputs)
        if transcript is not None:
            states["text"] = transcript.state
        if transcript is not None and transcript.state is not ABSENT:
            with _timed(latency, "text"):
                pred = self.text.predict(transcript.text)
            estimates["text"] = ModalityEstimate(pred.mean, pred.std, transcript.state)
            outputs["text"] = _output(pred.mean, pred.std)
        if face is not None:
            self._add_face(face, states, estimates, outputs)
        with _timed(latency, "fusion"):
            estimate = fuse(estimates, states)
        return Analysis(estimate, transcript, latency, outputs)

    def face_only(self, face: FaceSummary) -> Analysis:
        """A result from the face alone, for when nobody speaks."""
        states = {"text": ABSENT, "audio": ABSENT, "vision": ABSENT}
        estimates: dict[str, ModalityEstimate] = {}
        outputs: dict[str, dict[str, object]] = {}
        self._add_face(face, states, estimates, outputs)
        return Analysis(fuse(estimates, states), None, {}, outputs)

    def _add_voice(self, utt, frames, latency, states, estimates, outputs) -> None:
        states["audio"] = audio_state(utt.audio)
        if states["audio"] is ABSENT:
            return
        with _timed(latency, "voice"):
            vf = self.voice.encode(frames, utt.audio)
        estimates["audio"] = ModalityEstimate(vf.valence, vf.valence_std, PRESENT)
        emotion = VOICE_EMOTIONS[int(vf.probs.argmax())]
        outputs["audio"] = _output(vf.valence, vf.valence_std, emotion)

    @staticmethod
    def _add_face(face: FaceSummary, states, estimates, outputs) -> None:
        states["vision"] = PRESENT
        estimates["vision"] = ModalityEstimate(face.valence, face.valence_std, PRESENT)
        outputs["vision"] = _output(face.valence, face.valence_std, face.emotion)


def _output(score: float, std: float, emotion: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"score": round(score, 3), "std": round(std, 3)}
    if emotion is not None:
        out["emotion"] = emotion
    return out


class _timed:
    def __init__(self, out: dict[str, float], key: str) -> None:
        self.out, self.key = out, key

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.out[self.key] = (time.perf_counter() - self.t) * 1000.0
