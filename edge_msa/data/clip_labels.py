"""Folders of labelled clips: a ``labels.csv`` beside them, or RAVDESS's file names.

Read by ``edge-msa eval clips`` (the whole runtime path on each clip) and
``edge-msa eval voice`` (the voice head alone), so that both read the same
labels and the same emotion -> valence mapping.

``labels.csv`` columns: ``path`` (relative to the CSV's folder, or absolute),
``emotion`` (a name, see :data:`EMOTION_ALIASES`) and/or ``label`` (a
sentiment score in [-3, 3]); optional ``transcript`` (the words said) and
``speaker``. RAVDESS names (``03-01-EE-II-SS-RR-AA``) carry the emotion, the
statement and the actor.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_msa.data.voice_corpus import RAVDESS_MAP, valence_group
from edge_msa.types import VOICE_EMOTIONS

LABELS_FILE = "labels.csv"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")

# Names people and corpora use, to the voice head's classes (EmoDB's, VOICE_EMOTIONS),
# plus surprise, which the head has no class for. Calm (RAVDESS) is a low-arousal
# neutral delivery: neutral, as RAVDESS_MAP has it.
EMOTION_ALIASES = {
    "anger": "anger", "angry": "anger",
    "boredom": "boredom", "bored": "boredom",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness",
    "sadness": "sadness", "sad": "sadness",
    "neutral": "neutral", "calm": "neutral",
    "surprise": "surprise", "surprised": "surprise",
}
# Surprise can be pleasant or not: no valence, so it stays out of both valence measures.
SURPRISE = "surprise"

RAVDESS_CODES = {**RAVDESS_MAP, "08": SURPRISE}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


@dataclass(frozen=True)
class LabelledClip:
    path: Path
    emotion: str | None = None  # canonical: one of VOICE_EMOTIONS or "surprise"
    label: float | None = None  # a sentiment score in [-3, 3]
    transcript: str | None = None
    speaker: str | None = None


def canonical_emotion(name: str) -> str:
    key = name.strip().lower()
    if key not in EMOTION_ALIASES:
        known = ", ".join(sorted(EMOTION_ALIASES))
        raise ValueError(f"unknown emotion {name!r} (known: {known})")
    return EMOTION_ALIASES[key]


def emotion_valence(emotion: str) -> str | None:
    """positive (happiness), neutral (neutral, calm, boredom), negative (anger,
    disgust, fear, sadness); None for surprise."""
    return None if emotion == SURPRISE else valence_group(emotion)


def read_clip_labels(csv_path: Path | str) -> list[LabelledClip]:
    """The rows of a ``labels.csv``; a missing column or file is a one-line ValueError."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no such labels file")
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        if "path" not in columns or not {"emotion", "label"} & set(columns):
            need = "path" if "path" not in columns else "emotion or label"
            raise ValueError(f"{csv_path}: no column {need} (columns: {', '.join(columns)})")
        rows = list(reader)
    clips = [_row_clip(csv_path, i + 2, row) for i, row in enumerate(rows)]
    if not clips:
        raise ValueError(f"{csv_path}: no rows")
    return clips


def _row_clip(csv_path: Path, line: int, row: dict[str, str]) -> LabelledClip:
    where = f"{csv_path} line {line}"
    path = csv_path.parent / (row.get("path") or "").strip()
    if not row.get("path") or not path.is_file():
        raise FileNotFoundError(f"{where}: clip {path} not found")
    emotion = (row.get("emotion") or "").strip()
    label = (row.get("label") or "").strip()
    if not emotion and not label:
        raise ValueError(f"{where}: neither emotion nor label given")
    try:
        score = float(label) if label else None
        name = canonical_emotion(emotion) if emotion else None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if score is not None and not -3.0 <= score <= 3.0:
        raise ValueError(f"{where}: label {score} is outside [-3, 3]")
    transcript = (row.get("transcript") or "").strip() or None
    speaker = (row.get("speaker") or "").strip() or None
    return LabelledClip(path, name, score, transcript, speaker)


def ravdess_clip(path: Path) -> LabelledClip | None:
    """A clip named as RAVDESS does (``03-01-EE-II-SS-RR-AA``), else None."""
    parts = Path(path).stem.split("-")
    if len(parts) != 7 or parts[2] not in RAVDESS_CODES or parts[4] not in RAVDESS_STATEMENTS:
        return None
    return LabelledClip(
        Path(path), RAVDESS_CODES[parts[2]], None, RAVDESS_STATEMENTS[parts[4]], parts[6]
    )


def folder_clips(
    source: Path | str, speakers: Iterable[str] | None = None, limit: int | None = None
) -> list[LabelledClip]:
    """A ``labels.csv`` file, a folder with one, or a folder (searched below) of
    RAVDESS-named audio. ``speakers``: only these actors or speakers ("03" or "3");
    ``limit``: an evenly spaced subset, so every speaker and emotion stays in."""
    source = Path(source)
    if source.is_file():
        clips = read_clip_labels(source)
    elif (source / LABELS_FILE).is_file():
        clips = read_clip_labels(source / LABELS_FILE)
    elif source.is_dir():
        found = (ravdess_clip(p) for p in sorted(source.rglob("*")) if _is_audio(p))
        clips = [c for c in found if c is not None]
        if not clips:
            raise FileNotFoundError(
                f"{source}: no {LABELS_FILE} and no RAVDESS-named audio (03-01-EE-II-SS-RR-AA)"
            )
    else:
        raise FileNotFoundError(f"{source}: no such file or folder")
    if speakers is not None:
        wanted = {_speaker_key(s) for s in speakers}
        clips = [c for c in clips if c.speaker is not None and _speaker_key(c.speaker) in wanted]
        if not clips:
            raise ValueError(f"{source}: no clips of speakers {','.join(sorted(wanted))}")
    return _spread(clips, limit)


def voice_class_clips(clips: list[LabelledClip]) -> list[LabelledClip]:
    """The clips whose emotion is one of the voice head's classes (surprise and
    score-only rows have none)."""
    return [c for c in clips if c.emotion in VOICE_EMOTIONS]


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()


def _speaker_key(name: str) -> str:
    return (name.lstrip("0") or "0") if name.isdigit() else name


def _spread(items: list[LabelledClip], limit: int | None) -> list[LabelledClip]:
    if limit is None or limit >= len(items):
        return items
    step = (len(items) - 1) / max(limit - 1, 1)
    return [items[round(i * step)] for i in range(limit)]
