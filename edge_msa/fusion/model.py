"""The fusion model at run time: one ONNX graph through the backend layer.

Inputs are :mod:`edge_msa.fusion.features`; the graph returns the fused mean
and log-variance, each modality's own mean and log-variance, the fusion
weights (text, audio, vision, fused query) and whether the text was
imagined. ``temperature`` (fitted on validation data, in the manifest)
scales every std so that about 68% of validation labels fall within ±1σ.
With nothing usable the graph answers from its learned query alone: the
prior of the training labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edge_msa.fusion.features import MODALITIES, FusionInputs, batch
from edge_msa.models import load_manifest
from edge_msa.models import model_dir as models_subdir

OUTPUTS = ("mean", "log_var", "modality_mean", "modality_log_var", "weights", "text_imagined")


def default_model_dir() -> Path:
    return models_subdir("fusion")


@dataclass(frozen=True)
class FusionOutput:
    score: float
    std: float
    modality: dict[str, tuple[float, float]]  # (mean, std) of each modality that took part
    weights: dict[str, float]  # share of each modality (and "fused") in the score
    text_imagined: bool


class FusionModel:
    def __init__(
        self, model_dir: Path | str | None = None, backend: str = "cpu", threads: int = 1
    ) -> None:
        from edge_msa.backends import create_session, model_file

        model_dir = Path(model_dir or default_model_dir())
        manifest = load_manifest(model_dir, "edge-msa train --config FILE")
        self.name = f"{manifest['name']}@{manifest['version']}"
        self.temperature = float(manifest["temperature"])
        # The backend's graph: dynamic INT8 on the CPU, the TensorRT-ready one on a GPU.
        self.graph = model_file(model_dir, manifest, backend)
        self._session = create_session(
            self.graph, backend, threads, warmup=batch([FusionInputs()])
        )

    def predict(self, inputs: FusionInputs) -> FusionOutput:
        return self.predict_batch([inputs])[0]

    def predict_batch(self, items: list[FusionInputs]) -> list[FusionOutput]:
        feed = batch(items)
        mean, log_var, m_mean, m_log_var, weights, imagined = self._session.run(list(OUTPUTS), feed)
        out = []
        for i, it in enumerate(items):
            took_part = (
                it.text is not None or bool(imagined[i]),
                feed["present"][i, 1] > 0,
                feed["present"][i, 2] > 0,
            )
            out.append(
                FusionOutput(
                    score=float(mean[i]),
                    std=self._std(log_var[i]),
                    modality={
                        m: (float(m_mean[i, k]), self._std(m_log_var[i, k]))
                        for k, m in enumerate(MODALITIES)
                        if took_part[k]
                    },
                    weights={
                        m: float(w) for m, w in zip((*MODALITIES, "fused"), weights[i], strict=True)
                    },
                    text_imagined=bool(imagined[i]),
                )
            )
        return out

    def _std(self, log_var: float) -> float:
        return math.sqrt(math.exp(float(log_var))) * self.temperature
