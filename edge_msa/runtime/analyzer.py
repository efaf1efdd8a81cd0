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
    ran: list[str] = field(default_factory=list)  # stages that ran and worked
    failed: dict[str, Exception] = field(default_factory=dict)  # stage -> its error

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
        """One utterance, start to end; raises the first stage failure (the
        runtime instead publishes without that modality)."""
        heard = self.hear(utt.audio)
        for error in heard.failed.values():
            raise error
        return self.fuse(heard, face)

    def hear(self, audio: np.ndarray) -> Heard:
        """The audio side: recognition, voice and text encoders (the slow part).

        It depends on the audio alone, so the runtime can start it during the
        VAD hangover, before the utterance is closed and its faces are known.
        A stage that fails is recorded in ``Heard.failed`` and its modality is
        absent: recognition carries text and audio, the voice stage audio,
        the text encoder text.
        """
        heard = Heard.nothing()
        transcript = frames = None
        if self.asr is not None:
            out = _step(heard, "asr", self.asr.recognise, audio, self.text is not None)
            if out is not None:
                transcript, frames = out
        if frames is not None and self.voice is not None and audio_state(audio) is PRESENT:
            voice = _step(heard, "voice", self._voice, frames, audio)
            if voice is not None:
                heard.inputs.audio, heard.inputs.voice = voice
                heard.states["audio"] = PRESENT
                heard.emotions["audio"] = VOICE_EMOTIONS[int(voice[1].argmax())]
        if transcript is not None and transcript.state is not ABSENT:
            text = _step(heard, "text", self._text, transcript.text)
            if text is not None:
                heard.inputs.text = text
                heard.inputs.simulated = True  # recognised text: the fusion model refines it
                heard.states["text"] = transcript.state
            else:
                transcript = None  # no text: nor its words in the result
        heard.transcript = transcript
        return heard

    def _voice(self, frames: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fusion model's audio tokens and the voice head's probabilities."""
        probs = self.voice.encode(frames, audio).probs
        return audio_tokens(frames, duration_frames(len(audio))), probs

    def _text(self, text: str) -> np.ndarray:
        return text_feature(self.text.predict(text, with_std=False))

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


def _step(heard: Heard, stage: str, fn, *args):
    """``fn(*args)``, timed; None when it failed (the error goes to ``heard.failed``)."""
    t = time.perf_counter()
    try:
        out = fn(*args)
    except Exception as e:  # reported by the runtime, with the utterance's times
        heard.failed[stage] = e
        return None
    heard.latency_ms[stage] = (time.perf_counter() - t) * 1000.0
    heard.ran.append(stage)
    return out


class _timed:
    def __init__(self, out: dict[str, float], key: str) -> None:
        self.out, self.key = out, key

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.out[self.key] = (time.perf_counter() - self.t) * 1000.0
