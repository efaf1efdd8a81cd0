"""The fusion model: its inputs (``features``) and its ONNX runtime (``model``)."""

from edge_msa.fusion.features import FusionInputs
from edge_msa.fusion.model import FusionModel, FusionOutput

__all__ = ["FusionInputs", "FusionModel", "FusionOutput"]
