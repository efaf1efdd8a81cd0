"""The v0 fusion baseline, kept for the ablation table: precision-weighted mean.

The runtime fused like this until the fusion model replaced it; the
evaluation runs it on the same inputs to show what the fusion model adds.

Each modality branch gives a mean and a standard deviation (heteroscedastic
head, calibrated on dev data). The fused estimate is the inverse-variance
weighted mean, and its std is ``1/sqrt(sum of precisions)``. With nothing
usable the result is the prior: the MOSI label distribution, roughly
N(0, 1.5^2), flagged by every modality being ``absent``.

A ``simulated`` text (a low-confidence transcript) counts with its std
widened by ``SIMULATED_STD_FACTOR``: ASR transcripts lose 16-19% MAE against
real ones (DESIGN.md §10), so we widen by about that much.

The branches' own estimates: the text model's mean and std
(``TextEncoder.predict``), and for the voice and the face the expected value
of a per-class valence under the emotion probabilities, with a std of the
spread of those valences plus a base term. The runtime computes none of
these: they live here, with the baseline that uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_msa.types import FACE_EMOTIONS, VOICE_EMOTIONS, Estimate, ModalityState

# Sentiment on the MOSI scale [-3, 3] implied by each acted voice emotion.
# MOSI labels the opinion, not the voice: anger and disgust are clear
# negatives, sadness and fear milder ones, boredom a slight negative,
# happiness a clear positive. The voice head's manifest records these (its
# ``settings.valence``), so the baseline reads what the head shipped with.
VOICE_VALENCE = {
    "anger": -2.0,
    "boredom": -0.5,
    "disgust": -2.0,
    "fear": -1.5,
    "happiness": 2.0,
    "sadness": -1.5,
    "neutral": 0.0,
}
# Audio-only models on MOSI reach an MAE of about 1.4, a Gaussian sigma of
# about 1.75: the voice alone is a weak witness of sentiment, whatever the
# head's confidence. The class spread is added on top of this floor.
VOICE_BASE_STD = 1.5
# A face's valence per FER2013 class (angry, disgust, fear, happy, sad,
# surprise, neutral): the usual valence order of the basic emotions (e.g.
# Russell's circumplex), scaled so a clearly happy face reads "positive" (+2)
# and an angry or disgusted one "negative" (-2). The base variance says that
# even a certain expression is a loose proxy for what the person means (posed
# faces, and a smile is not an opinion), so the face never outweighs a
# confident transcript.
FACE_VALENCE = np.array([-2.0, -2.0, -1.5, 2.0, -1.5, 0.5, 0.0], dtype=np.float64)
FACE_BASE_VARIANCE = 1.0

assert len(FACE_VALENCE) == len(FACE_EMOTIONS) and set(VOICE_VALENCE) == set(VOICE_EMOTIONS)

PRIOR_MEAN = 0.0
PRIOR_STD = 1.5
SIMULATED_STD_FACTOR = 1.2
SCORE_MIN, SCORE_MAX = -3.0, 3.0


@dataclass(frozen=True)
class ModalityEstimate:
    mean: float
    std: float
    state: ModalityState


def fuse(
    estimates: dict[str, ModalityEstimate], states: dict[str, ModalityState]
) -> Estimate:
    """``states`` names every modality; ``estimates`` only those that gave a number."""
    weights, weighted = 0.0, 0.0
    for est in estimates.values():
        if est.state is ModalityState.ABSENT:
            continue
        std = est.std * (SIMULATED_STD_FACTOR if est.state is ModalityState.SIMULATED else 1.0)
        precision = 1.0 / max(std, 1e-3) ** 2
        weights += precision
        weighted += precision * est.mean
    if weights == 0.0:
        return Estimate(PRIOR_MEAN, PRIOR_STD, dict(states))
    score = min(max(weighted / weights, SCORE_MIN), SCORE_MAX)
    return Estimate(score, 1.0 / math.sqrt(weights), dict(states))


def expected_valence(
    probs: np.ndarray, valence: np.ndarray, base_variance: float
) -> tuple[float, float]:
    """Mean and std of the per-class ``valence`` under ``probs`` (normalised here),
    the std widened by ``base_variance``; the mean clipped to the MOSI scale."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    mean = float(p @ valence)
    spread = float(p @ (valence - mean) ** 2)
    return min(max(mean, SCORE_MIN), SCORE_MAX), math.sqrt(spread + base_variance)


def face_valence(probs: np.ndarray) -> tuple[float, float]:
    """A face's valence and std from its expression probabilities (FER2013 order)."""
    return expected_valence(probs, FACE_VALENCE, FACE_BASE_VARIANCE)


class VoiceValence:
    """An utterance's valence and std from the voice head's probabilities, with the
    per-class valences and base std recorded in the head's manifest."""

    def __init__(self, settings: dict | None = None) -> None:
        settings = settings or {"valence": VOICE_VALENCE, "base_std": VOICE_BASE_STD}
        self.valence = np.array([float(settings["valence"][e]) for e in VOICE_EMOTIONS])
        self.base_std = float(settings["base_std"])

    @classmethod
    def shipped(cls) -> VoiceValence:
        from edge_msa.encoders.voice import default_model_dir
        from edge_msa.models import load_manifest

        manifest = load_manifest(default_model_dir(), "edge-msa train voice")
        return cls(manifest["settings"])

    def __call__(self, probs: np.ndarray) -> tuple[float, float]:
        return expected_valence(probs, self.valence, self.base_std**2)
