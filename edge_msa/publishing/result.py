"""From a fused estimate to the published message, and its JSON Schema."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from edge_msa.types import Estimate, SentimentResult

NEUTRAL_BAND = 0.5  # |score| below this is neutral: half a step on the 7-point MOSI scale


def polarity(score: float) -> str:
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")


def build_result(
    estimate: Estimate,
    device_id: str,
    wall_t0: float,
    wall_t1: float,
    latency_ms: dict[str, float],
    model: str,
    outputs: dict[str, dict[str, object]] | None = None,
    transcript: str | None = None,
) -> SentimentResult:
    return SentimentResult(
        id=str(uuid.uuid4()),
        device_id=device_id,
        t_start=iso_utc(wall_t0),
        t_end=iso_utc(wall_t1),
        score=estimate.score,
        polarity=polarity(estimate.score),
        uncertainty=estimate.std,
        modalities={k: v.value for k, v in estimate.modalities.items()},
        latency_ms=latency_ms,
        model=model,
        outputs=outputs or {},
        transcript=transcript,
    )


_OUTPUT = {
    "type": "object",
    "required": ["score", "std"],
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number", "minimum": -3, "maximum": 3},
        "std": {"type": "number", "minimum": 0},
        "emotion": {"type": "string"},
    },
}
_STATE = {"type": "string", "enum": ["present", "simulated", "imagined", "absent"]}

RESULT_SCHEMA: dict[str, object] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://edge-msa.invalid/schema/sentiment.json",
    "title": "edge-msa sentiment result",
    "description": "One message per utterance on <prefix>/<device_id>/sentiment.",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "id", "device_id", "t_start", "t_end", "score", "polarity",
        "uncertainty", "modalities", "latency_ms", "model", "outputs",
    ],
    "properties": {
        "id": {"type": "string", "description": "unique; consumers de-duplicate on it"},
        "device_id": {"type": "string"},
        "t_start": {"type": "string", "format": "date-time", "description": "UTC, ISO 8601"},
        "t_end": {"type": "string", "format": "date-time"},
        "score": {
            "type": "number",
            "minimum": -3,
            "maximum": 3,
            "description": "CMU-MOSI scale; the fused estimate from every modality that took part",
        },
        "polarity": {"type": "string", "enum": ["negative", "neutral", "positive"]},
        "uncertainty": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "standard deviation of the score (the fusion model's "
            "heteroscedastic heads, calibrated on validation data)",
        },
        "modalities": {
            "type": "object",
            "additionalProperties": False,
            "required": ["text", "audio", "vision"],
            "properties": {"text": _STATE, "audio": _STATE, "vision": _STATE},
        },
        "latency_ms": {
            "type": "object",
            "description": "per stage, and total from end of utterance to result",
            "additionalProperties": {"type": "number", "minimum": 0},
            "required": ["total"],
        },
        "model": {"type": "string"},
        "outputs": {
            "type": "object",
            "description": "each modality's own estimate, before fusion: its own head on its "
            "own input, before any cross-modal attention (text: the transcript's, or the one "
            "imagined from the voice when there is none); score and std on the MOSI scale, and "
            "its top emotion where the encoder has one. The fused estimate is the top-level score",
            "additionalProperties": False,
            "properties": {"text": _OUTPUT, "audio": _OUTPUT, "vision": _OUTPUT},
        },
        "transcript": {"type": "string", "description": "only when the user enables it"},
    },
}
