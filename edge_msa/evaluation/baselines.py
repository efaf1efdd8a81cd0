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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_msa.types import Estimate, ModalityState

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
