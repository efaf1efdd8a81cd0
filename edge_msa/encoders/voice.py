"""Voice stage: an utterance's acoustic embedding and voice-emotion estimate.

The embedding is the mean and standard deviation over time of Whisper encoder
frames that cover the audio: for the shipped head (0.6.0) those of encoder
block 2, run by the trunk graph beside it (:mod:`edge_msa.encoders.voice_trunk`)
on the window the recogniser encodes; for heads before it the recogniser's
own last-layer output (no second pass). Plus, when the shipped model was
trained with them, a few prosody statistics computed here in numpy and the
mean over the audio frames and the ``context_frames`` padding frames after
them (their attention reaches the whole utterance). A linear head in ONNX
(standardisation, logistic regression, softmax) gives seven emotion
probabilities over ``VOICE_EMOTIONS``; the fusion model reads them. (The v0
baseline's valence from them lives in :mod:`edge_msa.evaluation.baselines`.)

No torch or scikit-learn at run time: the head was fitted offline by
``edge-msa train voice`` (:mod:`edge_msa.training.voice`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_msa.encoders.asr import duration_frames
from edge_msa.models import load_manifest
from edge_msa.models import model_dir as models_subdir
from edge_msa.types import SAMPLE_RATE, ModalityState, VoiceFeatures

FRAME_S, HOP_S = 0.04, 0.01
F0_MIN, F0_MAX = 60.0, 400.0
VOICING_THRESHOLD = 0.5  # normalised autocorrelation peak that counts as voiced
ACTIVE_DB = -30.0  # frames within this of the loud frames count as active
SILENCE_DBFS = -60.0
MIN_SECONDS = 0.25
PROSODY_NAMES = (
    "energy_std_db",
    "energy_range_db",
    "active_fraction",
    "voiced_fraction",
    "f0_median_semitones",
    "f0_std_semitones",
    "f0_range_semitones",
    "f0_slope_semitones_per_s",
    "zero_crossing_rate",
)


def default_model_dir() -> Path:
    return models_subdir("voice")


def pool(frames: np.ndarray) -> np.ndarray:
    """Mean and std over time of (T, D) encoder frames: (2 D,) float32.

    An empty input gives zeros rather than NaN so downstream stays finite.
    """
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"encoder frames must be (T, D), got shape {x.shape}")
    if x.shape[0] == 0:
        return np.zeros(2 * x.shape[1], np.float32)
    return np.concatenate([x.mean(axis=0), x.std(axis=0)]).astype(np.float32)


def prosody(audio: np.ndarray) -> np.ndarray:
    """Level-independent energy and pitch statistics, (len(PROSODY_NAMES),) float32.

    Energy is relative to the utterance's loud frames so microphone gain does
    not leak in; pitch is in semitones for the same reason. Silence or audio
    too short for one frame gives zeros.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    x = np.nan_to_num(x) - (x.mean() if x.size and np.all(np.isfinite(x)) else 0.0)
    frames = _frames(x)
    if frames.shape[0] == 0 or not np.any(frames):
        return np.zeros(len(PROSODY_NAMES), np.float32)
    db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.percentile(db, 95)
    active = db > loud + ACTIVE_DB
    f0 = _pitch(frames) * active
    voiced = f0 > 0
    semis = 12.0 * np.log2(f0[voiced] / 100.0) if voiced.any() else np.zeros(0)
    zcr = np.mean(np.abs(np.diff(np.sign(frames[active]), axis=1)) > 0) if active.any() else 0.0
    out = [
        float(np.std(db[active])),
        float(np.percentile(db, 90) - np.percentile(db, 10)),
        float(active.mean()),
        float(voiced.mean()),
        float(np.median(semis)) if semis.size else 0.0,
        float(np.std(semis)) if semis.size else 0.0,
        float(np.percentile(semis, 90) - np.percentile(semis, 10)) if semis.size else 0.0,
        _slope(np.flatnonzero(voiced) * HOP_S, semis),
        float(zcr),
    ]
    return np.nan_to_num(np.asarray(out, np.float32))


def embed(
    frames: np.ndarray, audio: np.ndarray, use_prosody: bool, context_frames: int = 0
) -> np.ndarray:
    """The utterance embedding exactly as the head was trained on it.

    ``frames`` is ``SpeechRecognizer.recognise``'s (window_s * 50, D) output; its
    first ``duration_frames(len(audio))`` cover the audio. Parts, in order:
    mean and std of those (2 D), prosody (when used), and, when
    ``context_frames`` > 0, the mean over those and the next ``context_frames``
    (D). Given fewer frames (audio filling the window), the context mean uses
    what there is.
    """
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"encoder frames must be (T, D), got shape {x.shape}")
    count = min(duration_frames(np.asarray(audio).size), x.shape[0])
    parts = [pool(x[:count])]
    if use_prosody:
        parts.append(prosody(audio))
    if context_frames > 0:
        context = x[: count + context_frames].astype(np.float64)
        parts.append(context.mean(axis=0) if len(context) else np.zeros(x.shape[1]))
    return np.concatenate(parts).astype(np.float32)


def audio_state(audio: np.ndarray) -> ModalityState:
    """``absent`` for audio too short or too quiet to carry a voice, else ``present``.

    The voice stage still returns a defined estimate for such audio; this is
    the runtime's cue not to trust it.
    """
    x = np.nan_to_num(np.asarray(audio, dtype=np.float64).reshape(-1))
    if x.size < MIN_SECONDS * SAMPLE_RATE:
        return ModalityState.ABSENT
    rms = math.sqrt(float(np.mean((x - x.mean()) ** 2)))
    if 20.0 * math.log10(rms + 1e-12) < SILENCE_DBFS:
        return ModalityState.ABSENT
    return ModalityState.PRESENT


class VoiceEncoder:
    """Encoder frames + audio -> :class:`VoiceFeatures`, with the shipped ONNX head."""

    def __init__(self, model_dir: Path | str, backend: str = "cpu", threads: int = 1) -> None:
        from edge_msa.backends import create_session

        model_dir = Path(model_dir)
        manifest = load_manifest(model_dir, "edge-msa train voice --config configs/voice.toml")
        settings = manifest["settings"]
        self.name = f"{manifest['name']}@{manifest['version']}"
        self.use_prosody = bool(settings["prosody"])
        self.context_frames = int(settings.get("context_frames", 0))
        # The encoder window it was trained on (None: a head from before windows).
        self.asr_window = settings.get("asr_window")
        self.embedding_dim = int(settings["embedding_dim"])
        # Heads from 0.6.0 pool an inner encoder layer, run here (voice_trunk.py).
        self.trunk = _trunk(model_dir, settings, backend, threads)
        warmup = {"embedding": np.zeros((1, self.embedding_dim), np.float32)}
        self._session = create_session(model_dir / manifest["file"], backend, threads, warmup)

    def embedding(self, encoder_frames: np.ndarray | None, audio: np.ndarray) -> np.ndarray:
        """The head's input: ``embed`` of the trunk's frames of ``audio`` for a head
        with a trunk (``encoder_frames`` unused, may be None), else of ``encoder_frames``."""
        frames = self.trunk(audio) if self.trunk is not None else encoder_frames
        if frames is None:
            raise ValueError("this voice head pools the recogniser's encoder frames: pass them")
        return embed(frames, audio, self.use_prosody, self.context_frames)

    def encode(self, encoder_frames: np.ndarray | None, audio: np.ndarray) -> VoiceFeatures:
        """``encoder_frames`` (window_s * 50, 384) from ``SpeechRecognizer.recognise``;
        ``audio`` the same 16 kHz samples (their length says which frames cover them).
        A head with a trunk reads the trunk's frames of ``audio`` instead."""
        embedding = self.embedding(encoder_frames, audio)
        if embedding.shape[0] != self.embedding_dim:
            raise ValueError(
                f"embedding has {embedding.shape[0]} values, the head expects {self.embedding_dim}"
            )
        (probs,) = self._session.run(["probs"], {"embedding": embedding[None, :]})
        p = np.asarray(probs[0], dtype=np.float64)
        return VoiceFeatures(embedding=embedding, probs=(p / p.sum()).astype(np.float32))


def _trunk(model_dir: Path, settings: dict, backend: str, threads: int):
    trunk = settings.get("trunk")
    if not trunk:
        return None
    from edge_msa.encoders.voice_trunk import VoiceTrunk, policy_of

    return VoiceTrunk(model_dir / trunk["file"], policy_of(settings["asr_window"]), backend,
                      threads)


def _frames(x: np.ndarray) -> np.ndarray:
    size, hop = int(FRAME_S * SAMPLE_RATE), int(HOP_S * SAMPLE_RATE)
    if x.size < size:
        return np.zeros((0, size))
    count = 1 + (x.size - size) // hop
    index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    return x[index]


def _pitch(frames: np.ndarray) -> np.ndarray:
    """F0 per frame (Hz, 0 when unvoiced) from the normalised autocorrelation peak."""
    size = frames.shape[1]
    windowed = (frames - frames.mean(axis=1, keepdims=True)) * np.hanning(size)
    spectrum = np.fft.rfft(windowed, n=2 * size)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:, :size]
    # Dividing by the window's own autocorrelation removes its taper bias.
    window_acf = np.fft.irfft(np.abs(np.fft.rfft(np.hanning(size), n=2 * size)) ** 2)[:size]
    acf = acf / np.maximum(window_acf, 1e-12)
    lo, hi = int(SAMPLE_RATE / F0_MAX), int(SAMPLE_RATE / F0_MIN)
    energy = np.maximum(acf[:, 0], 1e-12)
    lags = lo + np.argmax(acf[:, lo:hi], axis=1)
    peak = acf[np.arange(len(acf)), lags] / energy
    return np.where(peak > VOICING_THRESHOLD, SAMPLE_RATE / lags, 0.0)


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    if y.size < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, y, 1)[0])
