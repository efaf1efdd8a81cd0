"""Per-utterance analysis: speech recognition, encoders, the fusion model.

Models are loaded once and shared; ``analyse`` is blocking and runs off the
event loop. Each encoder turns its modality into the fusion model's inputs
(:mod:`edge_msa.fusion.features`); the fusion model gives the score, its
uncertainty and each modality's own estimate, and imagines the text from the
audio when there is none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from edge_msa.encoders.asr import duration_frames
from edge_msa.encoders.voice import audio_state
from edge_msa.fusion.features import FusionInputs, audio_tokens, text_feature
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


@dataclass
class Heard:
    """The audio side of one utterance, waiting for its faces."""

    inputs: FusionInputs
    states: dict[str, ModalityState]
    emotions: dict[str, str]
    latency_ms: dict[str, float]
    transcript: Transcript | None = None

    @staticmethod
    def nothing() -> Heard:
        return Heard(FusionInputs(), {"text": ABSENT, "audio": ABSENT}, {}, {})


class Analyzer:
    """``asr`` runs the Whisper encoder once per utterance; its output feeds the
    decoder (when ``text`` is set, i.e. transcription is on) and ``voice``."""

    def __init__(self, fusion, asr=None, text=None, voice=None) -> None:
        self.fusion = fusion  # FusionModel
        self.asr = asr  # SpeechRecognizer; None when neither text nor voice is wanted
        self.text = text  # TextEncoder; None when transcription is off
        self.voice = voice  # VoiceEncoder; None when the voice stage is off

    def analyse(self, utt: Utterance, face: FaceSummary | None = None) -> Analysis:
        return self.fuse(self.hear(utt.audio), face)

    def hear(self, audio: np.ndarray) -> Heard:
        """The audio side: recognition, voice and text encoders (the slow part).

        It depends on the audio alone, so the runtime can start it during the
        VAD hangover, before the utterance is closed and its faces are known.
        """
        heard = Heard.nothing()
        transcript = frames = None
        if self.asr is not None:
            with _timed(heard.latency_ms, "asr"):
                transcript, frames = self.asr.recognise(audio, transcribe=self.text is not None)
        if frames is not None and self.voice is not None and audio_state(audio) is PRESENT:
            with _timed(heard.latency_ms, "voice"):
                vf = self.voice.encode(frames, audio)
                heard.inputs.audio = audio_tokens(frames, duration_frames(len(audio)))
                heard.inputs.voice = vf.probs
            heard.states["audio"] = PRESENT
            heard.emotions["audio"] = VOICE_EMOTIONS[int(vf.probs.argmax())]
        if transcript is not None and transcript.state is not ABSENT:
            with _timed(heard.latency_ms, "text"):
                heard.inputs.text = text_feature(self.text.predict(transcript.text))
            heard.inputs.simulated = True  # recognised text: the fusion model refines it
            heard.states["text"] = transcript.state
        heard.transcript = transcript
        return heard

    def fuse(self, heard: Heard, face: FaceSummary | None) -> Analysis:
        """What was heard plus the utterance's faces, through the fusion model."""
        inputs = replace(heard.inputs)
        states = {**heard.states, "vision": ABSENT}
        emotions = dict(heard.emotions)
        if face is not None:
            inputs.vision = face.tokens
            states["vision"] = PRESENT
            emotions["vision"] = face.emotion
        latency = dict(heard.latency_ms)
        with _timed(latency, "fusion"):
            fused = self.fusion.predict(inputs)
        estimate, outputs = _estimate(fused, states, emotions)
        return Analysis(estimate, heard.transcript, latency, outputs)

    def face_only(self, face: FaceSummary) -> Analysis:
        """A result from the face alone, for when nobody speaks."""
        return self.fuse(Heard.nothing(), face)


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
