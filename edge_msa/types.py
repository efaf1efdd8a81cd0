"""Typed records passed between pipeline stages.

Stages exchange only these dataclasses; none of them knows about queues,
MQTT or the CLI. Times are seconds on the stream clock: media time for a
file, seconds since start (``time.monotonic``) for live sources.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000


class ModalityState(str, enum.Enum):
    PRESENT = "present"
    SIMULATED = "simulated"  # text: a low-confidence transcript
    IMAGINED = "imagined"  # text: none, imagined by the fusion model from audio (+ vision)
    ABSENT = "absent"


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples at 16 kHz; ``t`` is the time of the first sample."""

    samples: np.ndarray
    t: float

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class VideoFrame:
    """A BGR uint8 image (H, W, 3) captured at ``t``."""

    image: np.ndarray
    t: float


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech closed by the VAD (or by the length limit)."""

    audio: np.ndarray
    t0: float
    t1: float
    closed_by: str = "silence"  # "silence", "max_length", "gap" or "end_of_stream"
    closed_at: float = 0.0  # time.monotonic() when the VAD closed it


@dataclass(frozen=True)
class Transcript:
    text: str
    state: ModalityState
    avg_logprob: float
    no_speech_prob: float


@dataclass(frozen=True)
class TextPrediction:
    """Sentence embedding plus the text head's score (and, when asked for, its std)."""

    embedding: np.ndarray  # (384,) float32
    mean: float
    std: float | None = None  # evaluation only: the runtime does not compute it


@dataclass(frozen=True)
class Estimate:
    """What fusion returns: a score on the MOSI scale and its std."""

    score: float
    std: float
    modalities: dict[str, ModalityState]


@dataclass
class SentimentResult:
    id: str
    device_id: str
    t_start: str
    t_end: str
    score: float
    polarity: str
    uncertainty: float
    modalities: dict[str, str]
    latency_ms: dict[str, float]
    model: str
    outputs: dict[str, dict[str, object]] = field(default_factory=dict)
    transcript: str | None = None

    def to_payload(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "id": self.id,
            "device_id": self.device_id,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "score": round(self.score, 4),
            "polarity": self.polarity,
            "uncertainty": round(self.uncertainty, 4),
            "modalities": dict(self.modalities),
            "latency_ms": {k: round(v, 1) for k, v in self.latency_ms.items()},
            "model": self.model,
            "outputs": self.outputs,
        }
        if self.transcript is not None:
            payload["transcript"] = self.transcript
        return payload


FACE_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013 order
VOICE_EMOTIONS = ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral")  # EmoDB


@dataclass(frozen=True)
class FaceObservation:
    """The primary face in one analysed frame: what the fusion model reads."""

    t: float
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    quality: float  # 0..1: detector confidence, size and sharpness
    probs: np.ndarray  # (7,) float32 over FACE_EMOTIONS
    embedding: np.ndarray  # (D,) float32, the CNN's penultimate layer


@dataclass(frozen=True)
class VoiceFeatures:
    """One utterance's acoustic embedding and voice-emotion probabilities."""

    embedding: np.ndarray  # (D,) float32: pooled Whisper encoder output (+ prosody)
    probs: np.ndarray  # (7,) float32 over VOICE_EMOTIONS
