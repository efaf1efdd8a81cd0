"""Per-utterance analysis: speech recognition, encoders, the fusion model.

Models are loaded once and shared; ``analyse`` is blocking and runs off the
event loop. Each encoder turns its modality into the fusion model's inputs
(:mod:`edge_msa.fusion.features`); the fusion model gives the score, its
uncertainty and each modality's own estimate, and imagines the text from the
audio when there is none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edge_msa.encoders.asr import duration_frames
from edge_msa.encoders.voice import audio_state
from edge_msa.fusion.features import FusionInputs, audio_tokens
from edge_msa.fusion.model import FusionOutput
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

    def __init__(self, fusion, asr=None, text=None, voice=None) -> None:
        self.fusion = fusion  # FusionModel
        self.asr = asr  # SpeechRecognizer; None when neither text nor voice is wanted
        self.text = text  # TextEncoder; None when transcription is off
        self.voice = voice  # VoiceEncoder; None when the voice stage is off

    def analyse(self, utt: Utterance, face: FaceSummary | None = None) -> Analysis:
        latency: dict[str, float] = {}
        states = {"text": ABSENT, "audio": ABSENT, "vision": ABSENT}
        inputs = FusionInputs()
        emotions: dict[str, str] = {}
        transcript = frames = None
        if self.asr is not None:
            with _timed(latency, "asr"):
                transcript, frames = self.asr.recognise(utt.audio, transcribe=self.text is not None)
        if frames is not None and self.voice is not None and audio_state(utt.audio) is PRESENT:
            with _timed(latency, "voice"):
                vf = self.voice.encode(frames, utt.audio)
                inputs.audio = audio_tokens(frames, duration_frames(len(utt.audio)))
                inputs.voice = vf.probs
            states["audio"] = PRESENT
            emotions["audio"] = VOICE_EMOTIONS[int(vf.probs.argmax())]
        if transcript is not None and transcript.state is not ABSENT:
            with _timed(latency, "text"):
                inputs.text = self.text.predict(transcript.text).embedding
            inputs.simulated = True  # recognised text: the fusion model refines it
            states["text"] = transcript.state
        if face is not None:
            inputs.vision = face.tokens
            states["vision"] = PRESENT
            emotions["vision"] = face.emotion
        with _timed(latency, "fusion"):
            fused = self.fusion.predict(inputs)
        estimate, outputs = _estimate(fused, states, emotions)
        return Analysis(estimate, transcript, latency, outputs)

    def face_only(self, face: FaceSummary) -> Analysis:
        """A result from the face alone, for when nobody speaks."""
        states = {"text": ABSENT, "audio": ABSENT, "vision": PRESENT}
        fused = self.fusion.predict(FusionInputs(vision=face.tokens))
        estimate, outputs = _estimate(fused, states, {"vision": face.emotion})
        return Analysis(estimate, None, {}, outputs)


def _estimate(fused: FusionOutput, states, emotions) -> tuple[Estimate, dict]:
    if fused.text_imagined:
        states["text"] = ModalityState.IMAGINED
    outputs: dict[str, dict[str, object]] = {}
    for name, (mean, std) in fused.modality.items():
        out: dict[str, object] = {"score": round(mean, 3), "std": round(std, 3)}
        if name in emotions:
            out["emotion"] = emotions[name]
        outputs[name] = out
    return Estimate(fused.score, fused.std, dict(states)), outputs


class _timed:
    def __init__(self, out: dict[str, float], key: str) -> None:
        self.out, self.key = out, key

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.out[self.key] = (time.perf_counter() - self.t) * 1000.0
