"""The fusion model's inputs: one definition for corpus building, training and serving.

Shapes (batch first, float32 unless noted):

- ``text`` (B, 385): :func:`text_feature` of the transcript, the MiniLM
  sentence embedding (:class:`edge_msa.encoders.text.TextEncoder`) and the
  text model's own score / 3; zeros when text is absent.
- ``audio`` (B, AUDIO_TOKENS, 384) and ``audio_mask`` (B, AUDIO_TOKENS):
  the Whisper encoder frames that cover the utterance, split into
  ceil(frames / ``AUDIO_STRIDE``) near-equal groups (about 80 ms a token) and
  averaged; longer utterances are split into ``AUDIO_TOKENS`` groups. The
  mask is 1 for real tokens.
- ``voice`` (B, 7): the voice-emotion head's probabilities over ``VOICE_EMOTIONS``.
- ``vision`` (B, VISION_TOKENS, 135) and ``vision_mask`` (B, VISION_TOKENS):
  per analysed frame, the expression CNN's 128-d embedding and its 7
  probabilities; at most ``VISION_TOKENS`` frames, evenly subsampled.
- ``present`` (B, 3): 1 where text, audio, vision are usable (modality order
  ``MODALITIES``); ``simulated`` (B, 1): 1 when the text is the recogniser's
  transcript (always at run time, whatever its confidence: the model refines
  it towards a real transcript), 0 for a real transcript (training's first
  flow, ``eval text``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_msa.types import TextPrediction

MODALITIES = ("text", "audio", "vision")
TEXT_EMBED_DIM = 384
TEXT_DIM = TEXT_EMBED_DIM + 1  # the embedding and the text model's score
AUDIO_DIM = 384
AUDIO_STRIDE = 4
AUDIO_TOKENS = 128  # 10.24 s at 80 ms a token; longer utterances are averaged down
VOICE_DIM = 7
FACE_EMBED_DIM = 128
VISION_DIM = FACE_EMBED_DIM + 7
VISION_TOKENS = 16


@dataclass
class FusionInputs:
    """One utterance's fusion inputs, unbatched; ``None`` marks an absent modality."""

    text: np.ndarray | None = None  # (385,) from :func:`text_feature`
    simulated: bool = False  # the text is an ASR transcript
    audio: np.ndarray | None = None  # (T, 384) from :func:`audio_tokens`
    voice: np.ndarray | None = None  # (7,)
    vision: np.ndarray | None = None  # (F, 135) from :func:`vision_tokens`


def text_feature(pred: TextPrediction) -> np.ndarray:
    """(385,): the sentence embedding and the text model's score / 3 (the fusion
    model's text head starts from that score; :mod:`edge_msa.training.fusion.net`
    says why)."""
    return np.append(pred.embedding, pred.mean / 3.0).astype(np.float32)


def audio_tokens(frames: np.ndarray, count: int) -> np.ndarray:
    """(T, 384) tokens from the first ``count`` of a (N, 384) encoder output."""
    x = np.asarray(frames, dtype=np.float32)[: max(count, 1)]
    groups = -(-len(x) // AUDIO_STRIDE)
    if groups > AUDIO_TOKENS:
        groups = AUDIO_TOKENS
    edges = np.linspace(0, len(x), groups + 1).round().astype(int)
    return np.stack([x[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:], strict=True)])


def vision_tokens(embeddings: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(F, 135) tokens from per-frame (N, 128) embeddings and (N, 7) probabilities."""
    x = np.concatenate([np.asarray(embeddings, np.float32), np.asarray(probs, np.float32)], axis=1)
    if len(x) > VISION_TOKENS:
        x = x[np.linspace(0, len(x) - 1, VISION_TOKENS).round().astype(int)]
    return x


def batch(items: list[FusionInputs]) -> dict[str, np.ndarray]:
    """Pad a list of utterances into the model's named inputs."""
    n = len(items)
    feed = {
        "text": np.zeros((n, TEXT_DIM), np.float32),
        "audio": np.zeros((n, AUDIO_TOKENS, AUDIO_DIM), np.float32),
        "audio_mask": np.zeros((n, AUDIO_TOKENS), np.float32),
        "voice": np.zeros((n, VOICE_DIM), np.float32),
        "vision": np.zeros((n, VISION_TOKENS, VISION_DIM), np.float32),
        "vision_mask": np.zeros((n, VISION_TOKENS), np.float32),
        "present": np.zeros((n, 3), np.float32),
        "simulated": np.zeros((n, 1), np.float32),
    }
    for i, it in enumerate(items):
        if it.text is not None:
            feed["text"][i] = it.text
            feed["present"][i, 0] = 1.0
            feed["simulated"][i, 0] = float(it.simulated)
        if it.audio is not None and len(it.audio):
            t = min(len(it.audio), AUDIO_TOKENS)
            feed["audio"][i, :t] = it.audio[:t]
            feed["audio_mask"][i, :t] = 1.0
            feed["present"][i, 1] = 1.0
            if it.voice is not None:
                feed["voice"][i] = it.voice
        if it.vision is not None and len(it.vision):
            f = min(len(it.vision), VISION_TOKENS)
            feed["vision"][i, :f] = it.vision[:f]
            feed["vision_mask"][i, :f] = 1.0
            feed["present"][i, 2] = 1.0
    return feed
