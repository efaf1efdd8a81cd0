"""Train the fusion architecture from MMSA feature pickles (MOSI, MOSEI, SIMS).

``aligned_50.pkl``, ``unaligned_50.pkl`` and ``unaligned_39.pkl`` hold a dict
of ``train`` / ``valid`` / ``test``, each a dict of arrays: ``id``,
``raw_text``, ``text`` (N, L, D) features, ``text_bert`` (token ids, unused
here), ``audio`` (N, La, Da), ``vision`` (N, Lv, Dv), ``audio_lengths`` and
``vision_lengths`` (absent in aligned files: then every step counts),
``regression_labels`` and, for SIMS, ``regression_labels_T/A/V``. Feature
sizes are read from the file.

Mapping to the model: the text features are mean-pooled over their non-pad
steps into the text vector; audio and vision steps are the audio and vision
tokens with masks from their lengths; there is no voice-emotion input (one
zero column). Flow 2 is text absent (the MIA imagines it from audio and
vision): MMSA has no ASR transcripts. Only ``train`` and ``valid`` are read.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

REQUIRED = ("text", "audio", "vision", "regression_labels")


def read_pickle(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with open(path, "rb") as f:
        data = pickle.load(f)
    for split in ("train", "valid"):
        if split not in data:
            raise ValueError(f"{path}: no {split!r} split (has: {', '.join(data)})")
        missing = [k for k in REQUIRED if k not in data[split]]
        if missing:
            raise ValueError(f"{path}: split {split!r} lacks {', '.join(missing)}")
    return data


def _mask(x: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    steps = np.arange(x.shape[1])[None, :]
    if lengths is None:
        return np.ones(x.shape[:2], np.float32)
    lengths = np.clip(np.asarray(lengths).reshape(-1).astype(int), 1, x.shape[1])
    return (steps < lengths[:, None]).astype(np.float32)


def to_feed(split: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All rows of one split as a full-modality feed, and the labels."""
    text = np.nan_to_num(np.asarray(split["text"], np.float32))
    audio = np.nan_to_num(np.asarray(split["audio"], np.float32))
    vision = np.nan_to_num(np.asarray(split["vision"], np.float32))
    n = len(text)
    nonpad = np.abs(text).sum(-1) > 0
    pooled = (text * nonpad[..., None]).sum(1) / np.maximum(nonpad.sum(1, keepdims=True), 1)
    feed = {
        "text": pooled.astype(np.float32),
        "audio": audio,
        "audio_mask": _mask(audio, split.get("audio_lengths")),
        "voice": np.zeros((n, 1), np.float32),
        "vision": vision,
        "vision_mask": _mask(vision, split.get("vision_lengths")),
        "present": np.ones((n, 3), np.float32),
        "simulated": np.zeros((n, 1), np.float32),
    }
    return feed, np.asarray(split["regression_labels"], np.float32).reshape(-1)


def _without_text(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        **feed,
        "text": np.zeros_like(feed["text"]),
        "present": feed["present"] * np.array([0, 1, 1], np.float32),
    }


def mmsa_data(cfg):
    """(batcher, validation feeds, model dims) for :func:`edge_msa.training.fusion.loop.train`."""
    path = Path(cfg.data.mmsa_file or "")
    if not path.is_file():
        raise FileNotFoundError(f"data.mmsa_file: {path} is not a file")
    data = read_pickle(path)
    train, y_train = to_feed(data["train"])
    valid, y_valid = to_feed(data["valid"])
    dims = {
        "text_dim": train["text"].shape[1],
        "audio_dim": train["audio"].shape[2],
        "vision_dim": train["vision"].shape[2],
        "voice_dim": 1,
        "text_score": False,  # MMSA text features carry no text model score
    }

    def batcher(rows: np.ndarray, rng: np.random.Generator):
        f1 = {k: v[rows].copy() for k, v in train.items()}
        for m, key in ((1, "audio_mask"), (2, "vision_mask")):
            drop = rng.random(len(rows)) < cfg.p_drop_modality
            f1["present"][drop, m] = 0.0
            f1[key] *= rng.random(f1[key].shape) >= rng.uniform(0, cfg.max_frame_drop)
            f1[key][drop] = 0.0
        return f1, _without_text(f1), y_train[rows], np.ones(len(rows), bool)

    batcher.speech = np.ones(len(y_train), bool)
    valid_feeds = {
        path.stem: {"present": (valid, y_valid), "absent": (_without_text(valid), y_valid)}
    }
    return batcher, valid_feeds, dims


def write_example(path: Path, n: int = 48, seed: int = 0, sizes=(768, 5, 20)) -> None:
    """A small pickle with the real MMSA key layout (random features), for tests."""
    rng = np.random.default_rng(seed)
    dt, da, dv = sizes

    def split(m: int) -> dict[str, np.ndarray]:
        labels = rng.uniform(-3, 3, m).astype(np.float32)
        text = rng.normal(size=(m, 50, dt)).astype(np.float32)
        text[:, :, 0] += labels[:, None]  # a learnable signal
        return {
            "id": np.array([f"clip{i}" for i in range(m)]),
            "raw_text": np.array(["a sentence"] * m),
            "text": text,
            "text_bert": np.zeros((m, 3, 50), np.float32),
            "audio": rng.normal(size=(m, 375, da)).astype(np.float32),
            "vision": rng.normal(size=(m, 500, dv)).astype(np.float32),
            "audio_lengths": rng.integers(50, 375, m),
            "vision_lengths": rng.integers(50, 500, m),
            "regression_labels": labels,
            "classification_labels": (labels > 0).astype(np.float32),
        }

    with open(path, "wb") as f:
        pickle.dump({"train": split(n), "valid": split(n // 2), "test": split(n // 2)}, f)
