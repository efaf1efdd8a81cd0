"""The voice head as one ONNX graph: standardisation folded into the linear layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_msa.types import VOICE_EMOTIONS

ONNX_NAME = "voice_head.onnx"


def export_onnx(model, dim: int, path: Path) -> None:
    """Standardisation folded into the linear layer: probs = softmax(x W' + b')."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scaler, lr = model[0], model[1]
    if list(lr.classes_) != list(range(len(VOICE_EMOTIONS))):
        raise RuntimeError(f"training data lacks a class: {lr.classes_}")
    weight = (lr.coef_ / scaler.scale_[None, :]).T.astype(np.float32)  # (D, 7)
    bias = (lr.intercept_ - (lr.coef_ / scaler.scale_) @ scaler.mean_).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["embedding", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "voice_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(VOICE_EMOTIONS)]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(VOICE_EMOTIONS)]),
        ],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8  # readable by onnxruntime >= 1.17, the declared floor
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))


def check_export(model, x: np.ndarray, path: Path) -> float:
    from edge_msa.backends import create_session

    session = create_session(path, "cpu", 1)
    (probs,) = session.run(["probs"], {"embedding": x.astype(np.float32)})
    return float(np.max(np.abs(probs - model.predict_proba(x))))
