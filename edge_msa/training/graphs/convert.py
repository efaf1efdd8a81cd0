"""From the recovered FP32 graph to the two TensorRT candidates.

**INT8 QDQ** (:func:`quantize_qdq`): ONNX Runtime's ``quantize_static`` in
QDQ format with what TensorRT's explicit quantisation takes: signed INT8
with zero points at 0 (symmetric activations and weights), weights per
output channel (``MatMul`` axis 1), Q/DQ only on the inputs of ``MatMul``
(TensorRT fuses the bias add and the following ops itself; a Q/DQ pair on a
``MatMul`` output would force INT8 rounding before the bias). Activation
ranges come from the calibration set (``calibration/``).

**FP16** (:func:`to_fp16`): every float initialiser and activation in half
precision with FP32 inputs and outputs (``keep_io_types``), through ONNX
Runtime's bundled copy of onnxconverter-common's converter; ops whose FP16
form loses range (``Exp``, ``Log``, ``Pow``, ``Sqrt``, ``ReduceSum`` ...)
stay FP32 (:data:`FP32_OPS`).

Large embedding tables stay out of INT8 (``Gather`` is not quantised) and
would leave the QDQ text graph at 70 MB in FP32; :func:`half_tables` stores
them in FP16 with a ``Cast`` after the lookup: exact to 2^-11 relative, and
what TensorRT would run in FP16 mode anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

# Kept in FP32 in the FP16 graph: reductions and transcendental ops whose
# inputs or results leave FP16's range or precision (variances, log-variances,
# masks of -1e9), plus the converter's own defaults.
FP32_OPS = ("Exp", "Log", "Pow", "Sqrt", "Reciprocal", "ReduceSum", "ReduceMean", "Einsum")
TABLE_MIN_ELEMENTS = 1 << 16  # Gather tables at least this large are stored in FP16


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def quantize_qdq(
    fp32: Path,
    out: Path,
    feeds: list[dict[str, np.ndarray]],
    method: str = "MinMax",
    per_channel: bool = True,
    activation_matmuls: bool = True,
    percentile: float = 99.999,
    exclude: tuple[str, ...] = (),
) -> dict:
    """Write the static INT8 QDQ graph; returns its recipe (for the manifest).

    ``activation_matmuls``: also quantise MatMuls of two activations (attention
    scores and context); False leaves them in float. ``exclude``: MatMuls whose
    name contains one of these strings stay in float (the layers INT8 hurts most).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32))
    inits = {t.name for t in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    excluded = [
        n.name
        for n in matmuls
        if any(e in n.name for e in exclude)
        or (not activation_matmuls and not set(n.input) & inits)
    ]
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        "OpTypesToExcludeOutputQuantization": ["MatMul"],
    }
    if method == "Percentile":
        extra["CalibPercentile"] = percentile
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    quantize_static(
        str(fp32),
        str(tmp),
        _Reader(feeds),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=per_channel,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=getattr(CalibrationMethod, method),
        extra_options=extra,
    )
    quantised = onnx.load(str(tmp))
    tmp.unlink()
    tables = half_tables(quantised)
    onnx.checker.check_model(quantised)
    onnx.save(quantised, str(out))
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "activations": "int8 symmetric, per tensor",
        "weights": "int8 symmetric, " + ("per output channel" if per_channel else "per tensor"),
        "quantised": "MatMul inputs"
        + ("" if activation_matmuls else " with a weight (attention MatMuls left in float)"),
        "float_matmuls": excluded,
        "calibration_method": method + (f" {percentile}" if method == "Percentile" else ""),
        "calibration_feeds": len(feeds),
        "fp16_tables": tables,
    }


def half_tables(model, min_elements: int = TABLE_MIN_ELEMENTS) -> list[str]:
    """Store large FP32 Gather tables in FP16, with a Cast back to FP32 after the lookup."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    done = []
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.data_type != onnx.TensorProto.FLOAT:
            continue
        if int(np.prod(table.dims)) < min_elements:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(table).astype(np.float16), table.name)
        table.CopyFrom(half)
        out = node.output[0]
        node.output[0] = out + "_fp16"
        nodes.append(
            helper.make_node("Cast", [node.output[0]], [out], name=f"{node.name}_to_fp32", to=1)
        )
        done.append(table.name)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return done


def to_fp16(fp32: Path, out: Path) -> dict:
    """Write the FP16 graph (FP32 inputs and outputs); returns its recipe."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(fp32))
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    OnnxModel(half).topological_sort()  # the converter appends its Casts at the end
    onnx.checker.check_model(half)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(out))
    present = sorted({n.op_type for n in model.graph.node} & set(FP32_OPS))
    return {
        "tool": "onnxruntime.transformers.float16.convert_float_to_float16 "
        "(onnxconverter-common's converter)",
        "keep_io_types": True,
        "fp32_ops": present,
    }
