"""The voice head's training config (``configs/voice.toml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_msa.training.settings import Strict, default_data


class VoiceConfig(Strict):
    kind: Literal["voice"] = "voice"
    # holds emodb/ and, when present, ravdess_speech/ (Actor_XX/*.flac) and ravdess/
    data: str = Field(default_factory=default_data)
    out: str = "models/voice"
    cache: str = "/tmp/edge_msa_voice_cache"  # embeddings per clip, reused by later runs
    threads: int = 1
    # People kept out of everything: EmoDB speakers ("03") or RAVDESS actors ("ravdess15").
    exclude_speakers: list[str] = []
    # People scored by a model selected and fitted without them (the same
    # names); the final model still uses everyone.
    holdout_speakers: list[str] = []
    # Grouped CV: each corpus's people cut into this many blocks (fold i holds
    # out block i of both corpora).
    folds: int = 6
    # Each class of each corpus the same total weight (else each class overall).
    balance_corpora: bool = True
    c: float | None = None  # fix C instead of the grid search
    prosody: bool = False  # with c: add prosody
    context: int | None = None  # fix the context K (0: none) instead of choosing
    nested: bool = False  # the nested grouped-CV estimate (C chosen inside each fold; slow)
    augment: bool = True  # speed-perturbed, noisy and band-limited views of each training clip
    # 0: pool the recogniser's last encoder layer (heads before 0.6.0); N: the output
    # of encoder block N, run by a trunk graph shipped beside the head (trunk.py).
    trunk_layers: int = Field(default=0, ge=0, le=4)
