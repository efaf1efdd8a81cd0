"""Joint corpus: labelled sentences paired with faces and voices by sentiment.

There is no public multimodal corpus with audio and video here, so the fusion
model learns from an approximation, built like this (per sentence of a
MOSI/MOSEI label file):

- **text**: the real transcript's MiniLM embedding and score (from the shipped
  text encoder; for training sentences, with ``data.text_folds``, from the
  cross-fitting fold model that never saw their video, see
  :mod:`edge_msa.data.folds`) and the label (MOSI scale, the only label
  used for training);
- **speech**, where the spoken corpus has the sentence
  (:mod:`edge_msa.data.spoken`): the espeak-ng rendering's audio tokens
  and the ASR transcript's embedding with its state (present / simulated /
  absent). espeak-ng speaks without emotion: this audio carries the words;
- **voice emotion**: the probabilities of an EmoDB or RAVDESS clip (leave-one-
  speaker-out, :func:`edge_msa.data.banks.voice_bank`) whose acted
  emotion matches the sentence's polarity, joined to the audio;
- **vision**: a short sequence (4-16 frames) of augmented variants of one
  FER2013 face whose expression matches the polarity (FER Training faces for
  training, PublicTest faces for validation and evaluation).

With ``[data.real_voices]`` the fusion training adds RAVDESS clips (real
voices on neutral words, a valence target from the acted emotion) beside these
sentences: :mod:`edge_msa.training.fusion.voices` says how.

Polarity: positive for labels >= 0.5, negative for <= -0.5, else neutral.
With probability ``disagree`` (default 0.2) the face, and independently the
voice, come from a polarity drawn at random instead, so that the model learns
that the other modalities are noisy witnesses.

What it cannot show: real co-occurrence of words, voice and face in one
person (the three come from different people and data sets); intensity (a
face is picked by polarity only); emotional prosody in the same audio as the
words. Numbers on this corpus measure how the model combines and replaces
modalities, not how it will score real multimodal video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_msa.data import banks, spoken
from edge_msa.data.folds import fold_of
from edge_msa.data.labels import LabelRow
from edge_msa.fusion.features import TEXT_DIM, text_feature
from edge_msa.hashing import sha256_prefix
from edge_msa.models import load_manifest

POLARITIES = ("negative", "neutral", "positive")


def polarity(label: float) -> int:
    return 2 if label >= 0.5 else 0 if label <= -0.5 else 1


def drop_words(text: str, rate: float, rng: np.random.Generator) -> str:
    """LNLN-style random missing words: each word removed with probability ``rate``."""
    words = text.split()
    return " ".join(w for w in words if rng.random() >= rate)


class TextBank:
    """Sentence features of one text model (the shipped one by default), cached
    by text and model file."""

    def __init__(
        self, model_dir: Path | None = None, cache: Path | None = None, threads: int | None = None
    ) -> None:
        from edge_msa.encoders.text import TextEncoder, default_model_dir

        model_dir = Path(model_dir or default_model_dir())
        self.encoder = TextEncoder(model_dir, threads=threads or os.cpu_count() or 1)
        self.manifest = load_manifest(model_dir, "edge-msa train text --config configs/text.toml")
        model_file = model_dir / self.manifest["file"]
        sha = sha256_prefix(model_file)
        self.path = (cache or banks.cache_root()) / f"text_{sha}_{TEXT_DIM}.npz"
        self.rows: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as z:
                self.rows = dict(zip(z["texts"].tolist(), z["embeddings"], strict=True))

    def embed(self, texts: list[str], ids: list[str] | None = None) -> np.ndarray:
        """(N, TEXT_DIM); ``ids`` (the rows' ids) matter only to :class:`FoldedTextBank`."""
        missing = sorted({t for t in texts if t not in self.rows})
        if missing:
            preds = self.encoder.predict_batch(missing, batch_size=64)
            self.rows.update({t: text_feature(p) for t, p in zip(missing, preds, strict=True)})
        if not texts:
            return np.zeros((0, TEXT_DIM), np.float32)
        return np.stack([self.rows[t] for t in texts]).astype(np.float32)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self.rows)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")  # parallel runs save too
        np.savez(tmp, texts=np.array(texts), embeddings=np.stack([self.rows[t] for t in texts]))
        tmp.rename(self.path)


class FoldedTextBank:
    """Cross-fitted features (:mod:`edge_msa.data.folds`): each row's text is
    scored by the fold model trained without that row's video."""

    def __init__(self, model_dirs: list[Path], cache: Path | None = None) -> None:
        from edge_msa.config import ConfigError

        for d in model_dirs:
            if not (Path(d) / "manifest.json").is_file():
                raise ConfigError(
                    f"data.text_folds: {d} holds no text model; train the folds with "
                    f"scripts/train_text_fold.sh K {len(model_dirs)} (K = 0..{len(model_dirs) - 1})"
                )
        banks_ = [TextBank(d, cache) for d in model_dirs]
        folds = [b.manifest.get("fold") or {} for b in banks_]
        count = len(banks_)
        if sorted(f.get("index", -1) for f in folds) != list(range(count)) or any(
            f.get("count") != count for f in folds
        ):
            raise ConfigError(
                f"data.text_folds: need the {count} models of folds 0/{count}..{count - 1}/"
                f"{count} (scripts/train_text_fold.sh), got folds {folds}"
            )
        self.banks = {f["index"]: b for f, b in zip(folds, banks_, strict=True)}
        self.count = count

    def embed(self, texts: list[str], ids: list[str] | None = None) -> np.ndarray:
        if ids is None or len(ids) != len(texts):
            raise ValueError("cross-fitted text features need each text's row id")
        out = np.zeros((len(texts), TEXT_DIM), np.float32)
        fold = np.array([fold_of(i, self.count) for i in ids], dtype=int)
        for k, bank in self.banks.items():
            rows = np.flatnonzero(fold == k)
            if rows.size:
                out[rows] = bank.embed([texts[i] for i in rows])
        return out

    def save(self) -> None:
        for bank in self.banks.values():
            bank.save()


@dataclass
class Sentences:
    """One split's sentences with their text and (where spoken) speech features."""

    ids: list[str]
    labels: np.ndarray  # (N,) float32
    text: np.ndarray  # (N, TEXT_DIM) real transcript
    text_dropped: np.ndarray  # (N, TEXT_DIM) transcript with 10-50% of words dropped
    speech: np.ndarray  # (N,) index into the speech arrays, -1 when not spoken
    asr_text: np.ndarray = field(default_factory=lambda: np.zeros((0, TEXT_DIM), np.float32))
    asr_state: np.ndarray = field(default_factory=lambda: np.zeros(0, "<U9"))
    audio: list[np.ndarray] = field(default_factory=list)  # (T, 384) float16 each
    voice_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    ranges: np.ndarray | None = None  # (N, 2) scores each label allows (LabelRow.label_range)

    def __len__(self) -> int:
        return len(self.ids)

    def label_ranges(self) -> np.ndarray:
        """(N, 2) float32 [low, high] per row; a score's range is the score."""
        if self.ranges is not None:
            return self.ranges
        return np.stack([self.labels, self.labels], axis=1)


def load_sentences(
    rows: list[LabelRow],
    spoken_folder: Path | None,
    texts: TextBank | FoldedTextBank,
    seed: int = 0,
) -> Sentences:
    rng = np.random.default_rng(seed)
    heard = spoken.load(spoken_folder, [r.id for r in rows]) if spoken_folder else []
    if heard:
        _check_voice_head(heard, spoken_folder)
    by_id = {h["id"]: h for h in heard}
    dropped = [drop_words(r.text, rng.uniform(0.1, 0.5), rng) for r in rows]
    speech = np.full(len(rows), -1)
    spoken_rows = [h for r in rows if (h := by_id.get(r.id)) is not None]
    for k, i in enumerate(i for i, r in enumerate(rows) if r.id in by_id):
        speech[i] = k
    asr = [str(h.get("asr_text", "")) for h in spoken_rows]
    ids = [r.id for r in rows]
    return Sentences(
        ids=ids,
        labels=np.array([r.label for r in rows], np.float32),
        text=texts.embed([r.text for r in rows], ids),
        text_dropped=texts.embed(dropped, ids),
        speech=speech,
        asr_text=texts.embed(asr, [str(h["id"]) for h in spoken_rows]),
        asr_state=np.array([str(h.get("asr_state", "absent")) for h in spoken_rows], "<U9"),
        audio=[h["audio_tokens"] for h in spoken_rows],
        voice_probs=np.stack([h["voice_probs"] for h in spoken_rows]).astype(np.float32)
        if spoken_rows
        else np.zeros((0, 7), np.float32),
    )


def _check_voice_head(heard: list[dict], folder: Path) -> None:
    """The cached voice probabilities must come from the shipped voice head."""
    from edge_msa.config import ConfigError

    head = spoken.voice_head_id()
    stale = sum(h.get("voice_head") != head for h in heard)
    if stale:
        raise ConfigError(
            f"{folder}: {stale} sentences carry voice probabilities from another voice head; "
            "run `edge-msa corpus spoken` for this split again (it re-hears only those)"
        )


class Witnesses:
    """Faces and voices drawn to match (or, at rate ``disagree``, not) a polarity."""

    def __init__(self, faces: dict, voices: dict, disagree: float = 0.2) -> None:
        self.face_tokens = faces["tokens"]
        self.face_pools = banks.polarity_pools(
            banks.face_names(faces["labels"]), banks.FACE_POLARITY
        )
        self.voice_probs = voices["probs"]
        self.voice_pools = banks.polarity_pools(voices["emotions"], banks.VOICE_POLARITY)
        self.disagree = disagree

    def _pick(self, pools: dict, label: float, rng: np.random.Generator) -> int:
        pol = polarity(label)
        if rng.random() < self.disagree:
            pol = int(rng.integers(3))
        pool = pools[POLARITIES[pol]]
        return int(pool[rng.integers(len(pool))])

    def face(self, label: float, rng: np.random.Generator, frames: int | None = None) -> np.ndarray:
        """(F, 135) float32: augmented variants of one face, F in 4..16."""
        idx = self._pick(self.face_pools, label, rng)
        count = frames or int(rng.integers(4, 17))
        variants = self.face_tokens[idx, rng.integers(self.face_tokens.shape[1], size=count)]
        return variants.astype(np.float32)

    def voice(self, label: float, rng: np.random.Generator) -> np.ndarray:
        return self.voice_probs[self._pick(self.voice_pools, label, rng)]


def spoken_folder_for(labels_file: Path, split: str, cache: Path | None = None) -> Path | None:
    folder = spoken.corpus_folder(cache or spoken.default_cache(), Path(labels_file), split)
    return folder if folder.is_dir() else None
