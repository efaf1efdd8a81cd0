"""The face training's config (``configs/face.toml``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

from pydantic import Field, field_validator

from edge_msa.training.settings import Strict, default_data, expand


class FaceConfig(Strict):
    kind: Literal["face"] = "face"
    data: str = Field(default_factory=default_data)
    train_file: str = "fer2013/fer2013_Training.npz"  # relative to data
    select_file: str = "fer2013/fer2013_PublicTest.npz"  # selection only, never trained on
    state_dir: str = "build/face"  # checkpoints and history (resumable)
    out: str = "models/face"
    calibration: str = "calibration/face_calibration.npz"  # INT8 calibration faces
    epochs: int = 30
    # Anneal over wall-clock minutes instead of epochs (a loaded machine still
    # finishes the schedule); the manifest records the epochs it got.
    time_budget_min: float | None = None
    batch_size: int = 128
    lr: float = 0.1
    warmup: float = 0.04  # fraction of the schedule
    weight_decay: float = 5e-4
    dropout: float = 0.2
    widths: list[int] = [16, 32, 64, 128]
    reps: list[int] = [1, 2, 2, 2]
    # A linear layer from the last stage to an embedding of this size (the fusion
    # reads 128 values, edge_msa/fusion/features.py FACE_EMBED_DIM); none: the pooled stage.
    embed: int | None = None
    label_smoothing: float = 0.1
    class_weight_power: float = 0.3
    erase_p: float = 0.25
    cutmix: float = Field(0.0, ge=0.0, le=1.0)  # share of batches mixed by CutMix
    # Share of faces seen as through another camera (lower resolution, blur or
    # sharpening, gamma, noise; data.degrade); teachers read the clean face.
    camera: float = Field(0.0, ge=0.0, le=1.0)
    # Range of the crop's scale (above 1 the face looks smaller): wider than FER2013's
    # own spread for crops framed otherwise (a tighter or a looser face box).
    zoom: tuple[float, float] = (0.9, 1.1)
    # A finished run's state folder whose best checkpoint this run starts from (a
    # warm restart: use a lower `lr`); scripts/recover_face_state.py rebuilds one
    # from a shipped model folder.
    init: str | None = None
    # Finished runs' state folders whose best checkpoints teach this one (distillation);
    # `distill` is their share of the loss, `distill_t` the softening temperature.
    teachers: list[str] = []
    distill: float = Field(0.5, ge=0.0, le=1.0)
    distill_t: float = Field(4.0, gt=0.0)
    seed: int = 0
    limit: int = 0  # train on the first N faces only (smoke tests)
    threads: int = 2
    # Average with the mirrored face inside the graph (twice the convolutions; +1.7 points
    # of PublicTest accuracy for the wide net).
    flip: bool = False
    fp32_convs: int = 3  # leave the first N convolutions in FP32

    @field_validator("zoom")
    @classmethod
    def _zoom_range(cls, zoom: tuple[float, float]) -> tuple[float, float]:
        if not 0 < zoom[0] <= zoom[1]:
            raise ValueError(f"zoom must be [low, high] with 0 < low <= high, not {list(zoom)}")
        return zoom

    def args(self) -> SimpleNamespace:
        """The settings with paths resolved, and ``record``: what checkpoints keep."""
        return SimpleNamespace(
            **{
                **self.model_dump(),
                "data": expand(self.data),
                "state": expand(self.state_dir),
                "out": expand(self.out),
                "calibration": expand(self.calibration),
                "teachers": [expand(t) for t in self.teachers],
                "init": expand(self.init) if self.init else None,
            },
            record=self.model_dump(),
        )
