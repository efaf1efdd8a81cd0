"""Voice-emotion corpora: EmoDB and RAVDESS file naming, and audio decoding.

Shared by the voice head's training (:mod:`edge_msa.training.voice`), the
voice bank of the joint corpus (:mod:`edge_msa.data.banks`) and
``edge-msa eval voice``, so that all three read the same labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

# What makes models/voice, for error messages.
VOICE_RECIPE = "edge-msa train voice --config configs/voice.toml"

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

# EmoDB file names: characters 1-2 the speaker, character 6 the emotion (German initial).
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


def ravdess_clips(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, speaker, emotion) of the RAVDESS clips (.wav or .flac) in ``folder``
    or its ``Actor_XX`` subfolders whose emotion maps to an EmoDB class; none
    when the folder is absent. A RAVDESS name has seven fields,
    ``03-01-EE-II-SS-RR-AA``: EE the emotion, AA the actor (the speaker
    ``ravdessAA``)."""
    out = []
    paths = [p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".flac")]
    for path in sorted(paths, key=lambda p: p.name):
        parts = path.stem.split("-")
        if len(parts) > 6 and parts[2] in RAVDESS_MAP:
            out.append((path, f"ravdess{parts[6]}", RAVDESS_MAP[parts[2]]))
    return out


def ravdess_training_clips(root: Path) -> list[tuple[Path, str, str]]:
    """RAVDESS for training: ``root/ravdess_speech`` (every actor) and the
    clips of ``root/ravdess`` that are not in it (same name stem)."""
    speech = ravdess_clips(Path(root) / "ravdess_speech")
    seen = {p.stem for p, _, _ in speech}
    extra = [c for c in ravdess_clips(Path(root) / "ravdess") if c[0].stem not in seen]
    return sorted(speech + extra, key=lambda c: c[0].name)


def group_folds(groups: np.ndarray, corpus: np.ndarray, folds: int) -> np.ndarray:
    """Fold index per row: each corpus's people (sorted) cut into ``folds``
    consecutive blocks (fewer when it has fewer people); fold i holds out the
    i-th block of every corpus, so no person is in training and validation."""
    out = np.zeros(len(groups), int)
    for name in np.unique(corpus):
        rows = corpus == name
        people = sorted(set(groups[rows].tolist()))
        for i, block in enumerate(np.array_split(people, min(folds, len(people)))):
            out[rows & np.isin(groups, block)] = i
    return out


def balanced_weights(y: np.ndarray, corpus: np.ndarray, per_corpus: bool = True) -> np.ndarray:
    """Sample weights for a UAR target (EmoDB: 127 anger clips, 46 of disgust):
    each class of each corpus the same total weight when ``per_corpus`` (so
    EmoDB's 408 clips weigh as much as RAVDESS's 936), else each class; mean 1."""
    keys = np.char.add(corpus.astype(str), y.astype(str)) if per_corpus else y.astype(str)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * len(w) / w.sum()


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
