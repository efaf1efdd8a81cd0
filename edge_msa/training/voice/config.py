"""The voice head's training config (``configs/voice.toml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_msa.training.settings import Strict, default_data


class VoiceConfig(Strict):
    kind: Literal["voice"] = "voice"
    data: str = Field(default_factory=default_data)  # holds emodb/ (and ravdess/)
    out: str = "models/voice"
    cache: str = "/tmp/edge_msa_voice_cache"  # embeddings per clip, reused by later runs
    threads: int = 1
    # EmoDB speakers kept out of everything (e.g. ["03", "08"]), to measure from outside.
    exclude_speakers: list[str] = []
    # EmoDB speakers scored by a model selected and fitted without them; the
    # final model still uses every speaker.
    holdout_speakers: list[str] = []
    c: float | None = None  # fix C instead of the LOSO grid search
    prosody: bool = False  # with c: add prosody
    ravdess: bool = False  # with c: train on RAVDESS too
    context: int | None = None  # fix the context K (0: none) instead of choosing
    nested: bool = True  # the nested LOSO estimate (honest, costs a grid per speaker)
    augment: bool = True  # speed-perturbed and noisy views of each training clip
