"""Voice-emotion evaluation on EmoDB, RAVDESS or any labelled folder through the
run-time code path.

Every clip goes through exactly what the runtime does with an utterance:
16 kHz mono audio -> ``SpeechRecognizer.recognise(transcribe=False)`` (one
Whisper encoder pass) -> ``VoiceEncoder.encode`` (which runs the head's
trunk on the audio when it has one; ``ms_head`` includes it). Nothing here is shared with
training except that path, so a folder of held-out speakers measures the
shipped model from outside.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edge_msa.data.metrics import classification_metrics
from edge_msa.data.voice_corpus import emodb_files, emodb_label, load_audio_16k
from edge_msa.types import VOICE_EMOTIONS


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
    files = emodb_files(Path(emodb_dir), speakers)
    items = [(path, *emodb_label(path)) for path in files]
    return {**evaluate_voice_clips(items, model_dir, backend, threads), "corpus": "EmoDB"}


def evaluate_voice_folder(
    source: Path | str,
    model_dir: Path | str | None = None,
    backend: str = "cpu",
    threads: int = 1,
    speakers: Iterable[str] | None = None,
    limit: int | None = None,
) -> dict:
    """The same on a ``labels.csv`` (``path,emotion``; optional ``speaker``), a
    folder with one, or a folder of RAVDESS-named clips (``speakers``: actors).
    Clips without one of the head's classes (surprise, score-only rows) are
    left out and counted in ``skipped``."""
    from edge_msa.data.clip_labels import folder_clips, voice_class_clips

    clips = folder_clips(source, speakers, limit)
    usable = voice_class_clips(clips)
    if not usable:
        raise ValueError(f"{source}: no clip with one of the emotions {', '.join(VOICE_EMOTIONS)}")
    items = [(c.path, c.speaker or "all", str(c.emotion)) for c in usable]
    metrics = evaluate_voice_clips(items, model_dir, backend, threads)
    return {**metrics, "corpus": str(source), "skipped": len(clips) - len(usable)}


def evaluate_voice_clips(
    items: list[tuple[Path, str, str]],
    model_dir: Path | str | None = None,
    backend: str = "cpu",
    threads: int = 1,
) -> dict:
    """(path, speaker, emotion) clips through the run-time path, then the metrics."""
    from edge_msa.encoders.asr import SpeechRecognizer
    from edge_msa.encoders.voice import VoiceEncoder, default_model_dir

    asr = SpeechRecognizer(beam_size=1, threads=threads)
    voice = VoiceEncoder(model_dir or default_model_dir(), backend, threads)
    truth, who, probs, t_enc, t_head = [], [], [], 0.0, 0.0
    for path, speaker, emotion in items:
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
    metrics["ms_encoder"] = 1000.0 * t_enc / len(items)
    metrics["ms_head"] = 1000.0 * t_head / len(items)
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
        f"voice emotion on {metrics.get('corpus', 'EmoDB')} (n={metrics['n']}"
        + (f", {metrics['skipped']} without a voice class left out)" if metrics.get("skipped")
           else ")"),
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
