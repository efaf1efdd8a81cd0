"""Cross-fitting folds over videos, shared by the text model and the fusion training.

The fusion model learns how far to trust the text model's score. Trained on
the score of sentences the text model was fine-tuned on (in-sample MAE 0.59
on MOSI train against 0.81 on dev), it learns to trust it too much. So the
text features of training sentences come from fold models
(``scripts/train_text_fold.sh K N``: ``edge-msa train text --set fold=K/N``),
each trained without one fold of videos: every training sentence is scored
by a model that never saw its speaker, as the validation and run-time
sentences are.
"""

from __future__ import annotations

import zlib

# MOSI and MOSEI row ids start with the 11-character YouTube video id
# (``03bSnISJMiM_1``, ``-3g5yACwYnA_82_7645``); a video is one speaker.
VIDEO_ID_CHARS = 11


def video_of(row_id: str) -> str:
    return row_id[:VIDEO_ID_CHARS]


def fold_of(row_id: str, count: int) -> int:
    """The fold (0..count-1) of a row's video; stable across runs and machines."""
    return zlib.crc32(video_of(row_id).encode()) % count


def parse_fold(spec: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), with 0 <= K < N and N >= 2."""
    try:
        index, count = (int(p) for p in spec.split("/"))
    except ValueError:
        raise ValueError(f"fold {spec!r}: expected K/N, such as 0/2") from None
    if count < 2 or not 0 <= index < count:
        raise ValueError(f"fold {spec!r}: need 0 <= K < N and N >= 2")
    return index, count
