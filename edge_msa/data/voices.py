"""Real voices corpus: RAVDESS speech clips heard through the runtime's audio path.

Each clip of ``ravdess_speech/Actor_XX/*.flac`` goes through
:class:`edge_msa.data.spoken.Listener` exactly as a spoken-corpus sentence
does (one Whisper encoder pass, greedy decoding, the voice stage) and is cached
as one ``<stem>.npz`` (audio tokens, the shipped head's voice probabilities,
the ASR transcript and state, actor, emotion, statement, intensity) under
``~/.cache/edge-msa/voices/ravdess``. Resumable (files are written under a
temporary name and renamed); each file records the voice head that heard it
and a rebuild hears stale clips again.

The shipped voice head was trained on every RAVDESS actor, so its
probabilities on these clips are over-confident: the fusion training takes
each clip's out-of-fold probabilities from the voice bank instead
(:func:`out_of_fold_probs`, :func:`edge_msa.data.banks.voice_bank`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# RAVDESS's own emotion words (third field of the file name).
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


@dataclass(frozen=True)
class Clip:
    """One RAVDESS speech clip, from its name ``03-01-EE-II-SS-RR-AA``."""

    path: Path
    actor: str  # "01".."24"
    emotion: str  # a RAVDESS_EMOTIONS word
    intensity: str  # "01" normal, "02" strong
    statement: str  # the sentence said

    @property
    def stem(self) -> str:
        return self.path.stem


def ravdess_speech_clips(folder: Path) -> list[Clip]:
    """Every RAVDESS speech clip (.wav or .flac) in ``folder`` or its ``Actor_XX``
    subfolders, sorted by name; files with other names are skipped."""
    out = []
    paths = [p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".flac")]
    for path in sorted(paths, key=lambda p: p.name):
        parts = path.stem.split("-")
        if (
            len(parts) != 7
            or parts[2] not in RAVDESS_EMOTIONS
            or parts[4] not in (RAVDESS_STATEMENTS)
        ):
            continue
        out.append(
            Clip(path, parts[6], RAVDESS_EMOTIONS[parts[2]], parts[3], RAVDESS_STATEMENTS[parts[4]])
        )
    return out


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-msa" / "voices"


def clip_file(folder: Path, clip: Clip) -> Path:
    return folder / f"{clip.stem}.npz"


def build(clips: list[Clip], folder: Path, threads: int = 1, progress: bool = True) -> dict:
    """Hear every clip not cached yet, or cached by another voice head; returns counts."""
    from tqdm import tqdm

    from edge_msa.data.spoken import Listener, stored_voice_head, voice_head_id
    from edge_msa.data.voice_corpus import load_audio_16k

    folder.mkdir(parents=True, exist_ok=True)
    head = voice_head_id()
    todo = [c for c in clips if not clip_file(folder, c).exists()]
    stale = [
        c
        for c in clips
        if clip_file(folder, c).exists() and stored_voice_head(clip_file(folder, c)) != head
    ]
    start = time.perf_counter()
    if todo or stale:
        listener = Listener(threads=threads)
        for clip in tqdm(todo + stale, desc="real voices", unit="clip", disable=not progress):
            heard = listener.hear(load_audio_16k(clip.path))
            target = clip_file(folder, clip)
            tmp = target.with_suffix(".tmp.npz")
            np.savez(
                tmp,
                stem=clip.stem,
                actor=clip.actor,
                emotion=clip.emotion,
                intensity=clip.intensity,
                statement=clip.statement,
                **heard,
            )
            tmp.rename(target)
    return {
        "clips": len(clips),
        "heard": len(todo),
        "reheard": len(stale),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def load(folder: Path, clips: list[Clip]) -> list[dict[str, object]]:
    """The cached clips of ``clips``, in order, as plain dicts; a missing one is an error."""
    out = []
    for clip in clips:
        with np.load(clip_file(folder, clip)) as z:
            out.append({k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files})
    return out


def out_of_fold_probs(bank: dict[str, np.ndarray], bank_names: list[str]) -> dict[str, np.ndarray]:
    """{file stem: (7,) probabilities} from the voice bank (its clips scored in
    grouped folds, never by a model that saw the speaker). ``bank_names`` are the
    bank's clip file names in its order (``bank["names"]`` when it has them)."""
    names = [str(n) for n in bank.get("names", bank_names)]
    if len(names) != len(bank["probs"]):
        raise ValueError(
            f"voice bank holds {len(bank['probs'])} clips, the data folder {len(names)}: "
            "rebuild the voice bank for this data folder"
        )
    return {Path(n).stem: p for n, p in zip(names, bank["probs"], strict=True)}
