"""The fusion model at run time: one ONNX graph through the backend layer.

Inputs are :mod:`edge_msa.fusion.features`; the graph returns the fused mean
and log-variance, each modality's token's mean and log-variance after
fusion, the fusion weights (text, audio, vision, fused query), whether the
text was imagined and each modality's own mean and log-variance: its own
head on its own input before any cross-modal attention (``own_*``). The
published per-modality estimates are the own ones; a graph exported before
the own heads existed has none, and then the fused tokens' stand in.
``temperature`` (fitted on validation data, in the manifest) scales the
fused std so that about 68% of validation labels fall within ±1σ;
``temperature_text_alone`` replaces it when the text is the only modality
(fitted on the text-only validation cases); ``own_temperature`` does the
same for each own head.
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

OUTPUTS = ("mean", "log_var", "weights", "text_imagined")
OWN = ("own_mean", "own_log_var")
BEFORE_OWN = ("modality_mean", "modality_log_var")  # graphs exported before the own heads


def default_model_dir() -> Path:
    return models_subdir("fusion")


@dataclass(frozen=True)
class FusionOutput:
    score: float
    std: float
    # (mean, std) of each modality that took part: its own estimate, before fusion
    modality: dict[str, tuple[float, float]]
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
        self.temperature_alone = float(manifest.get("temperature_text_alone", self.temperature))
        own_temperature = manifest.get("own_temperature", {})
        self.own_temperature = {
            m: float(own_temperature.get(m, self.temperature)) for m in MODALITIES
        }
        # The backend's graph: dynamic INT8 on the CPU, the TensorRT-ready one on a GPU.
        self.graph = model_file(model_dir, manifest, backend)
        self._session = create_session(self.graph, backend, threads, warmup=batch([FusionInputs()]))
        names = {o.name for o in self._session.get_outputs()}
        self._per_modality = OWN if set(OWN) <= names else BEFORE_OWN

    def predict(self, inputs: FusionInputs) -> FusionOutput:
        return self.predict_batch([inputs])[0]

    def predict_batch(self, items: list[FusionInputs]) -> list[FusionOutput]:
        feed = batch(items)
        names = [*OUTPUTS, *self._per_modality]
        mean, log_var, weights, imagined, m_mean, m_log_var = self._session.run(names, feed)
        out = []
        for i, it in enumerate(items):
            took_part = (
                it.text is not None or bool(imagined[i]),
                feed["present"][i, 1] > 0,
                feed["present"][i, 2] > 0,
            )
            alone = took_part[0] and not any(took_part[1:])
            out.append(
                FusionOutput(
                    score=float(mean[i]),
                    std=_std(log_var[i], self.temperature_alone if alone else self.temperature),
                    modality={
                        m: (float(m_mean[i, k]), _std(m_log_var[i, k], self.own_temperature[m]))
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


def _std(log_var: float, temperature: float) -> float:
    return math.sqrt(math.exp(float(log_var))) * temperature
