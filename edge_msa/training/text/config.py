"""The text training's config (``configs/text.toml``).

A run is one or more stages (``[[stages]]``); each fine-tunes from the one
before it (its ``WORK/stageK/finetuned.pt``), the first from MiniLM or
``init``. Only the last stage is exported and described in the manifest, with
the stage before it as ``init_history``. The shipped model is two stages: two
epochs at encoder lr 3e-5, then one at 1e-5 that also sees the recognised
transcripts of the spoken corpus.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Literal

from pydantic import Field, field_validator

from edge_msa.data.folds import parse_fold
from edge_msa.training.settings import Strict, default_data, expand


class TextStage(Strict):
    epochs: int = Field(2, ge=1)
    lr: float = 3e-5
    head_lr: float = 1e-3
    # Spoken corpus cache (edge-msa corpus spoken): also train on the recognised
    # transcripts of its train sentences, and report MOSI dev on them.
    asr_corpus: str | None = None


class TextConfig(Strict):
    kind: Literal["text"] = "text"
    data: str = Field(default_factory=default_data)
    out: str = "models/text"
    work: str = "/tmp/edge_msa_text"  # checkpoints, the FP32 export, frozen.json
    max_len: int = 64
    batch_size: int = 32
    evals_per_epoch: int = 2
    frozen_epochs: int = 30
    skip_frozen: bool = False
    reuse_frozen: bool = False  # reuse WORK/frozen.json
    freeze_layers: int = 0  # freeze embeddings + this many bottom layers
    seed: int = 0
    threads: int = 2  # torch threads for training
    init: str | None = None  # the first stage starts from this finetuned.pt, not MiniLM
    limit: int | None = None  # rows per split (smoke tests)
    # A cross-fitting model (edge_msa.data.folds): train without the videos of
    # fold K of N, for the fusion training's text features.
    fold: str | None = None
    # MELD train (conversation) joins the training set, its sentiment as a score
    # (edge_msa.data.labels.MELD_SCORES); MELD dev joins the selection.
    meld: bool = False
    # How MELD's classes are learned: "score" (L1 to MELD_SCORES) or "interval"
    # (L1 to the class's range: negative <= -1, neutral within +-0.25, positive
    # >= +1), which leaves the strength of a polar utterance free.
    meld_target: Literal["score", "interval"] = "score"
    # Auxiliary cross-entropy heads on MELD's sentiment and emotion (weight each).
    meld_heads: float = Field(0.0, ge=0.0)
    stages: list[TextStage] = Field(default_factory=lambda: [TextStage()], min_length=1)

    @field_validator("fold")
    @classmethod
    def _fold(cls, v: str | None) -> str | None:
        if v is not None:
            parse_fold(v)
        return v

    def stage_args(self) -> list[SimpleNamespace]:
        """One flat settings object per stage, with the names the trainer reads."""
        work = expand(self.work)
        out = []
        for k, stage in enumerate(self.stages, start=1):
            init = expand(self.init) if self.init and k == 1 else None
            if k > 1:
                init = work / f"stage{k - 1}" / "finetuned.pt"
            last = k == len(self.stages)
            out.append(
                SimpleNamespace(
                    data=expand(self.data),
                    out=expand(self.out),
                    work=work / f"stage{k}",
                    export_work=work,
                    stage=k,
                    last=last,
                    epochs=stage.epochs,
                    lr=stage.lr,
                    head_lr=stage.head_lr,
                    asr_corpus=expand(stage.asr_corpus) if stage.asr_corpus else None,
                    init=init,
                    batch_size=self.batch_size,
                    max_len=self.max_len,
                    evals_per_epoch=self.evals_per_epoch,
                    frozen_epochs=self.frozen_epochs,
                    # The frozen baseline belongs to the manifest, which the last stage writes.
                    skip_frozen=self.skip_frozen or not last,
                    reuse_frozen=self.reuse_frozen,
                    frozen_cache=work / "frozen.json",
                    freeze_layers=self.freeze_layers,
                    seed=self.seed,
                    threads=self.threads,
                    limit=self.limit,
                    fold=parse_fold(self.fold) if self.fold else None,
                    meld=self.meld,
                    meld_heads=self.meld_heads,
                    meld_target=self.meld_target,
                )
            )
        return out


def settings_of(args: SimpleNamespace) -> dict:
    """A stage's settings for the manifest, paths as strings."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
