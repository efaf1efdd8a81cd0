"""Voice-emotion evaluation on EmoDB through the run-time code path.

Every clip goes through exactly what the runtime does with an utterance:
16 kHz mono audio -> ``SpeechRecognizer.recognise(transcribe=False)`` (one
Whisper encoder pass) -> ``VoiceEncoder.encode``. Nothing here is shared with
training except that path, so a folder of held-out speakers measures the
shipped model from outside.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edge_msa.types import VOICE_EMOTIONS

# EmoDB file names: characters 1-2 the speaker, character 6 the emotion (German initial).
# RAVDESS emotion codes (third field). Calm is a low-arousal neutral delivery,
# closer to EmoDB's neutral than to its boredom. Surprise has no EmoDB class
# and sits between fear and happiness depending on valence: dropped.
RAVDESS_MAP = {
    "01": "neutral",
    "02": "neutral",
    "03": "happiness",
    "04": "sadness",
    "05": "anger",
    "06": "fear",
    "07": "disgust",
}

EMODB_CODES = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
VALENCE_GROUPS = {
    "positive": ("happiness",),
    "neutral": ("neutral", "boredom"),
    "negative": ("anger", "disgust", "fear", "sadness"),
}


def emodb_label(path: Path) -> tuple[str, str]:
    """(speaker, emotion) from an EmoDB file name such as ``03a01Wa.wav``."""
    name = Path(path).name
    if len(name) < 6 or name[5] not in EMODB_CODES:
        raise ValueError(f"{name} is not an EmoDB file name (character 6 must be one of WLEAFTN)")
    return name[:2], EMODB_CODES[name[5]]


def emodb_files(emodb_dir: Path, speakers: Iterable[str] | None = None) -> list[Path]:
    """The EmoDB wavs in ``emodb_dir`` (or its ``wav/`` folder), sorted by name."""
    root = Path(emodb_dir)
    if (root / "wav").is_dir():
        root = root / "wav"
    files = sorted(root.glob("*.wav"))
    if speakers is not None:
        wanted = set(speakers)
        files = [f for f in files if f.name[:2] in wanted]
    if not files:
        which = f" of speakers {','.join(sorted(set(speakers)))}" if speakers is not None else ""
        raise FileNotFoundError(f"no EmoDB .wav files{which} in {root}")
    return files


def load_audio_16k(path: Path) -> np.ndarray:
    """Any audio file decoded and resampled to 16 kHz mono float32 (PyAV)."""
    import av

    from edge_msa.sources.resample import ToMono16k

    resampler = ToMono16k()
    with av.open(str(path)) as container:
        parts = [resampler.frame(f) for f in container.decode(container.streams.audio[0])]
    parts.append(resampler.flush())
    return np.concatenate(parts).astype(np.float32)


def valence_group(emotion: str) -> str:
    return next(g for g, members in VALENCE_GROUPS.items() if emotion in members)


def classification_metrics(
    truth: list[str], probs: np.ndarray, labels: tuple[str, ...] = VOICE_EMOTIONS
) -> dict:
    """UAR, accuracy, per-class recall, confusion (rows true, columns predicted)
    and 3-class valence accuracy (the group with the most probability mass)."""
    probs = np.asarray(probs, dtype=np.float64)
    t = np.array([labels.index(e) for e in truth])
    p = probs.argmax(axis=1)
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(confusion, (t, p), 1)
    support = confusion.sum(axis=1)
    recall = {
        labels[i]: float(confusion[i, i] / support[i]) for i in range(len(labels)) if support[i]
    }
    groups = list(VALENCE_GROUPS)
    group_of = np.array([groups.index(valence_group(e)) for e in labels])
    mass = np.stack([probs[:, group_of == g].sum(axis=1) for g in range(len(groups))], axis=1)
    return {
        "n": int(len(t)),
        "uar": float(np.mean(list(recall.values()))) if recall else 0.0,
        "accuracy": float(np.mean(p == t)) if len(t) else 0.0,
        "valence_accuracy": float(np.mean(mass.argmax(axis=1) == group_of[t])) if len(t) else 0.0,
        "per_class_recall": recall,
        "confusion": confusion.tolist(),
        "labels": list(labels),
    }


def evaluate_voice(
    emodb_dir: Path | str,
    model_dir: Path | str | None = None,
    backend: str = "cpu",
    threads: int = 1,
    speakers: Iterable[str] | None = None,
) -> dict:
    """Metrics of the voice model on every EmoDB wav in ``emodb_dir``.

    Keys: uar, accuracy, valence_accuracy, per_class_recall, confusion, labels,
    n, per_speaker_uar, ms_encoder, ms_head (mean milliseconds per clip).
    """
    from edge_msa.encoders.asr import SpeechRecognizer
    from edge_msa.encoders.voice import VoiceEncoder, default_model_dir

    files = emodb_files(Path(emodb_dir), speakers)
    asr = SpeechRecognizer(beam_size=1, threads=threads)
    voice = VoiceEncoder(model_dir or default_model_dir(), backend, threads)
    truth, who, probs, t_enc, t_head = [], [], [], 0.0, 0.0
    for path in files:
        speaker, emotion = emodb_label(path)
        audio = load_audio_16k(path)
        start = time.perf_counter()
        _, frames = asr.recognise(audio, transcribe=False)
        middle = time.perf_counter()
        probs.append(voice.encode(frames, audio).probs)
        t_enc += middle - start
        t_head += time.perf_counter() - middle
        truth.append(emotion)
        who.append(speaker)
    metrics = classification_metrics(truth, np.stack(probs))
    metrics["per_speaker_uar"] = _per_speaker_uar(truth, who, np.stack(probs))
    metrics["ms_encoder"] = 1000.0 * t_enc / len(files)
    metrics["ms_head"] = 1000.0 * t_head / len(files)
    return metrics


def _per_speaker_uar(truth: list[str], who: list[str], probs: np.ndarray) -> dict[str, float]:
    out = {}
    for speaker in sorted(set(who)):
        idx = [i for i, s in enumerate(who) if s == speaker]
        out[speaker] = classification_metrics([truth[i] for i in idx], probs[idx])["uar"]
    return out


def format_voice_table(metrics: dict) -> str:
    """A plain-text report: headline numbers, per-class recall, confusion matrix."""
    labels = metrics.get("labels", list(VOICE_EMOTIONS))
    lines = [
        f"voice emotion on EmoDB (n={metrics['n']})",
        f"  uar               {metrics['uar']:.4f}",
        f"  accuracy          {metrics['accuracy']:.4f}",
        f"  valence accuracy  {metrics['valence_accuracy']:.4f}  (3-class)",
    ]
    if "ms_encoder" in metrics:
        ms = f"{metrics['ms_encoder']:.1f} encoder + {metrics['ms_head']:.2f} head"
        lines.append(f"  ms per clip       {ms}")
    lines.append("  recall per class")
    for name, value in metrics["per_class_recall"].items():
        lines.append(f"    {name:<10} {value:.4f}")
    lines.append("  confusion (rows: truth, columns: predicted)")
    short = [name[:4] for name in labels]
    lines.append("    " + " " * 10 + " ".join(f"{s:>5}" for s in short))
    for name, row in zip(labels, metrics["confusion"], strict=True):
        lines.append(f"    {name:<10}" + " ".join(f"{v:>5d}" for v in row))
    return "\n".join(lines)
