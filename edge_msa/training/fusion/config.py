"""The fusion training's config (``configs/fusion.toml``): data, model, losses, schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_msa.training.settings import Strict as _Strict
from edge_msa.training.settings import default_data, load


class SplitSpec(_Strict):
    labels: str  # relative to data.root
    split: str
    limit: int | None = None


class DataConfig(_Strict):
    source: Literal["corpus", "mmsa"] = "corpus"
    root: str = Field(default_factory=default_data)
    train: list[SplitSpec] = [
        SplitSpec(labels="mosei/label.csv", split="train"),
        SplitSpec(labels="mosi/label.csv", split="train"),
    ]
    valid: list[SplitSpec] = [
        SplitSpec(labels="mosi/label.csv", split="dev"),
        SplitSpec(labels="mosei/label.csv", split="valid"),
    ]
    faces_train: str = "fer2013/fer2013_Training.npz"
    faces_valid: str = "fer2013/fer2013_PublicTest.npz"
    spoken_cache: str | None = None
    # Cross-fitting text models (scripts/train_text_fold.sh K N): the training
    # sentences' text features come from the fold model that never saw their
    # video, so the fusion learns how far to trust the text score out of sample.
    # Empty: the shipped text model scores everything.
    text_folds: list[str] = []
    disagree: float = Field(0.2, ge=0.0, le=1.0)
    mmsa_file: str | None = None  # source = "mmsa": an MMSA feature pickle


class ModelConfig(_Strict):
    width: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    mia: bool = True
    gate: bool = True
    audio_layers: int = 1


class LossConfig(_Strict):
    modality: float = 0.5
    # The own heads (each modality alone, before fusion: what a result's
    # outputs.<modality> publishes); None: the same weight as ``modality``.
    own: float | None = Field(None, ge=0.0)
    mia: float = 1.0
    distill: float = 1.0
    rnc: float = 0.1
    rnc_temperature: float = 0.5


class TrainConfig(_Strict):
    kind: Literal["fusion"] = "fusion"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    p_text_absent: float = 0.3
    p_drop_modality: float = 0.3
    p_words_dropped: float = 0.2
    # Half of the spoken rows keep the rendering's own voice: with a voice that
    # always matches the label the model learns to trust it, and espeak-ng's flat
    # voice (what `eval speech` hears) then pulls scores down.
    p_own_voice: float = 0.5
    max_frame_drop: float = 0.5
    out: str = "runs/fusion"
    export: str | None = "models/fusion"


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The config in ``path``; a bad field is a ConfigError naming it."""
    return load(TrainConfig, path, overrides)
