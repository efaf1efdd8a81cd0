"""Feature banks of labelled faces and voices, for the joint corpus.

Face bank: every FER2013 face in a few augmented variants (shift, scale,
rotation, flip, brightness, contrast, noise), run through the shipped
expression CNN: the per-frame vision tokens the runtime would see.

Voice bank: every EmoDB and RAVDESS clip (ravdess_speech's 18 actors, the
voice head's training clips) through the runtime's audio path (one Whisper
encoder pass, the voice stage's embedding), and emotion probabilities from a
logistic regression fitted on the head's grouped folds (people held out in
blocks, the head's C and augmented views), so no clip is scored by a head that
saw its speaker: the shipped head would be
over-confident on its own training clips and the fusion model would learn to
over-trust the voice.

Both are cached (keyed by the model file's sha256) outside the repo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_msa.hashing import sha256_prefix
from edge_msa.types import FACE_EMOTIONS, VOICE_EMOTIONS

# Which emotions stand for which sentiment polarity when pairing by sentiment.
FACE_POLARITY = {
    "negative": ("angry", "disgust", "fear", "sad"),
    "neutral": ("neutral",),
    "positive": ("happy",),
}  # surprise is left out: it goes either way
VOICE_POLARITY = {
    "negative": ("anger", "disgust", "fear", "sadness", "boredom"),
    "neutral": ("neutral",),
    "positive": ("happiness",),
}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-msa" / "banks"


def _sha8(path: Path) -> str:
    return sha256_prefix(path)


def augment(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One camera-like variant of a 48x48 grey face."""
    import cv2

    angle, scale = rng.uniform(-10, 10), rng.uniform(0.9, 1.1)
    m = cv2.getRotationMatrix2D((24, 24), angle, scale)
    m[:, 2] += rng.uniform(-3, 3, size=2)
    out = cv2.warpAffine(face.astype(np.float32), m, (48, 48), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = out * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25) + rng.normal(0, 4, out.shape)
    return np.clip(out, 0, 255)


def face_bank(npz: Path, variants: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """``tokens`` (N, variants, 135) float16 and ``labels`` (N,) for a FER2013 npz."""
    from tqdm import tqdm

    from edge_msa.vision.expression import MODEL_FILE, ExpressionModel, default_model_dir

    model_file = default_model_dir() / MODEL_FILE
    cache = cache_root() / f"face_{Path(npz).stem}_{variants}_{seed}_{_sha8(model_file)}.npz"
    if cache.exists():
        return dict(np.load(cache))
    with np.load(npz) as z:
        images, labels = z["images"], z["labels"]
    model = ExpressionModel(threads=os.cpu_count() or 1)
    rng = np.random.default_rng(seed)
    tokens = np.zeros((len(images), variants, 135), np.float16)
    for start in tqdm(range(0, len(images), 256), desc=f"faces {Path(npz).stem}", unit="batch"):
        chunk = images[start : start + 256]
        for k in range(variants):
            faces = np.stack([augment(f, rng) for f in chunk]) if k else chunk
            probs, emb = model.predict_faces(faces)
            tokens[start : start + len(chunk), k] = np.concatenate([emb, probs], axis=1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, tokens=tokens, labels=labels.astype(np.int64))
    return {"tokens": tokens, "labels": labels}


def _voice_clips(data: Path) -> list[tuple[Path, str, str]]:
    """(path, speaker, emotion) for EmoDB and RAVDESS (the voice head's clips)."""
    from edge_msa.data.voice_corpus import emodb_files, emodb_label, ravdess_training_clips

    clips = [(p, *emodb_label(p)) for p in emodb_files(data / "emodb")]
    return clips + ravdess_training_clips(data)


def voice_clip_names(data: Path) -> list[str]:
    """The voice bank's clip file names in its order (for a bank saved without them)."""
    return [p.name for p, _, _ in _voice_clips(data)]


def voice_bank(data: Path) -> dict[str, np.ndarray]:
    """``probs`` (N, 7) from folds without the clip's speaker and ``emotions`` (N,)
    str, with the shipped head's recipe (its C, augmented views and grouped
    folds, models/voice/manifest.json)."""
    from edge_msa.encoders.voice import default_model_dir
    from edge_msa.models import load_manifest

    head = default_model_dir() / "voice_head.onnx"
    cache = cache_root() / f"voice_{_sha8(head)}.npz"
    if cache.exists():
        return dict(np.load(cache))
    from edge_msa.data.spoken import Listener
    from edge_msa.data.voice_augment import augment
    from edge_msa.data.voice_corpus import VOICE_RECIPE, load_audio_16k

    manifest = load_manifest(default_model_dir(), VOICE_RECIPE)
    settings = manifest["settings"]
    folds = int(manifest.get("config", {}).get("folds", 6))
    views = ("", *settings.get("augment", ()))
    clips = _voice_clips(data)
    listener = Listener(threads=os.cpu_count() or 1)
    v = listener.voice
    emb = np.zeros((len(views), len(clips), v.embedding_dim), np.float32)
    for i, (path, _, _) in enumerate(clips):
        original = load_audio_16k(path)
        for j, view in enumerate(views):
            audio = augment(original, view, path.name) if view else original
            frames = None if v.trunk else listener.asr.recognise(audio, transcribe=False)[1]
            emb[j, i] = v.embedding(frames, audio)
    speakers = np.array([c[1] for c in clips])
    y = np.array([VOICE_EMOTIONS.index(c[2]) for c in clips])
    per_corpus = bool(manifest.get("config", {}).get("balance_corpora", False))
    probs = _grouped_probs(emb, y, speakers, float(settings["C"]), folds, per_corpus)
    out = {
        "probs": probs.astype(np.float32),
        "emotions": np.array([c[2] for c in clips]),
        "names": np.array([c[0].name for c in clips]),  # the real voices match by file name
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def _grouped_probs(
    views: np.ndarray,
    y: np.ndarray,
    speakers: np.ndarray,
    c: float,
    folds: int,
    per_corpus: bool = True,
) -> np.ndarray:
    """``views`` (V, N, D): the clips (view 0) and their augmented views, which
    only ever join the training folds; the folds are the voice head's (each
    corpus's people in ``folds`` blocks, fold i holding out block i of both)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from edge_msa.data.voice_corpus import balanced_weights, group_folds

    corpus = np.array(["ravdess" if s.startswith("ravdess") else "emodb" for s in speakers])
    fold = group_folds(speakers, corpus, folds)
    probs = np.zeros((len(y), len(VOICE_EMOTIONS)))
    for f in np.unique(fold):
        test = fold == f
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        w = balanced_weights(y[~test], corpus[~test], per_corpus)
        model.fit(
            np.concatenate(views[:, ~test]),
            np.tile(y[~test], len(views)),
            logisticregression__sample_weight=np.tile(w, len(views)),
        )
        probs[np.ix_(test, model.classes_)] = model.predict_proba(views[0, test])
    return probs


def polarity_pools(names: np.ndarray, table: dict[str, tuple[str, ...]]) -> dict[str, np.ndarray]:
    """Indices of the bank entries whose emotion stands for each polarity."""
    return {pol: np.flatnonzero(np.isin(names, emos)) for pol, emos in table.items()}


def face_names(labels: np.ndarray) -> np.ndarray:
    return np.array(FACE_EMOTIONS)[labels]
