"""The fusion training's config (``configs/fusion.toml``): data, model, losses, schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_msa.training.settings import Strict as _Strict
from edge_msa.training.settings import default_data, load


class SplitSpec(_Strict):
    labels: str  # relative to data.root
    split: str
    limit: int | None = None


class RealVoicesConfig(_Strict):
    """RAVDESS speech clips heard through the runtime's audio path
    (:mod:`edge_msa.data.voices`, :mod:`edge_msa.training.fusion.voices`): the
    fusion learns to follow the voice when the words carry no sentiment."""

    ravdess: str = "ravdess_speech"  # relative to data.root: Actor_XX/*.flac
    cache: str | None = None  # default ~/.cache/edge-msa/voices
    # Validation actors (checkpoint selection only, never a test); the rest train.
    valid_actors: list[str] = ["15", "16", "17", "18"]
    # Valence target per RAVDESS emotion word on the MOSI scale [-3, 3]; an
    # emotion not listed (surprised: either valence) is left out. Why 1.5:
    # docs/models.md (fusion) and edge_msa/training/fusion/voices.py.
    valence: dict[str, float] = {
        "happy": 1.5,
        "neutral": 0.0,
        "calm": 0.0,
        "sad": -1.5,
        "angry": -1.5,
        "fearful": -1.5,
        "disgust": -1.5,
    }
    # The text beside each clip row, drawn per use: the clip's own ASR
    # transcript, another neutral training sentence, or none.
    p_own_text: float = Field(0.4, ge=0.0, le=1.0)
    p_neutral_text: float = Field(0.4, ge=0.0, le=1.0)
    p_no_text: float = Field(0.2, ge=0.0, le=1.0)
    neutral_below: float = Field(0.5, gt=0.0)  # |label| below this: a neutral sentence
    repeats: int = Field(1, ge=1)  # each (balanced) clip row this many times per epoch
    balance: bool = True  # negative, neutral, positive clips the same weight
    valid_weight: float = Field(1.0, ge=0.0)  # each RAVDESS validation case in the score

    @model_validator(mode="after")
    def _text_mix(self) -> RealVoicesConfig:
        total = self.p_own_text + self.p_neutral_text + self.p_no_text
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"p_own_text + p_neutral_text + p_no_text must be 1, got {total}")
        return self


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
    # Rows labelled with a class (MELD): learn its score (edge_msa/data/labels.py
    # MELD_SCORES) or, "interval", any score inside its range (MELD_RANGES).
    meld_target: Literal["score", "interval"] = "score"
    # With "interval": a polar class allows any score from this strength on.
    meld_polar_from: float = Field(1.0, ge=0.0, le=3.0)
    mmsa_file: str | None = None  # source = "mmsa": an MMSA feature pickle
    # Real voices (RAVDESS) beside the joint corpus; absent: off.
    real_voices: RealVoicesConfig | None = None


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
    # Validate and keep an exponential moving average of the weights (0: the
    # weights themselves): single epochs swing by 0.02-0.03 MAE on MOSI dev.
    ema_decay: float = Field(0.0, ge=0, lt=1)
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
