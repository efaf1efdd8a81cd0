"""Recover an FP32 graph from a dynamically quantised one.

ONNX Runtime's ``quantize_dynamic`` writes, for each weight matrix ``W``::

    x -> DynamicQuantizeLinear -> (x_q, x_scale, x_zp)
    MatMulInteger(x_q, W_q, x_zp, W_zp) -> Cast(float) -> Mul(., x_scale * W_scale)

and, for embedding tables, ``Gather(W_q, ids) -> DequantizeLinear``. Both are
rewritten here to what they approximate: ``MatMul(x, W)`` and
``Gather(W, ids)`` with ``W = (W_q - W_zp) * W_scale`` as an FP32
initialiser. The activation quantisation disappears; the weights stay
exactly the shipped INT8 values (dequantised), so the result is *not* the
pre-quantisation training graph and is documented as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTISED_OPS = frozenset({"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger"})


@dataclass(frozen=True)
class Recovered:
    """What :func:`recover_fp32` rewrote."""

    matmuls: int  # MatMulInteger patterns turned into MatMul
    gathers: int  # Gather -> DequantizeLinear patterns turned into FP32 Gathers


class _Graph:
    """Producer/consumer maps and constant lookup over one ``GraphProto``."""

    def __init__(self, graph) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self._np = numpy_helper

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return self._np.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            from onnx import helper

            return self._np.to_array(helper.get_attribute_value(node.attribute[0]))
        return None

    def only_consumer(self, name: str, op_type: str):
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type:
            raise ValueError(f"{name}: expected one {op_type} consumer, got {users}")
        return users[0]


def dequantised(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32; per-column parameters broadcast on the last axis."""
    zp = np.zeros((), np.float32) if zero_point is None else zero_point.astype(np.float32)
    return ((q.astype(np.float32) - zp) * scale.astype(np.float32)).astype(np.float32)


def recover_fp32(model):
    """A copy of ``model`` with every dynamic-quantisation pattern dequantised (see module doc)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = _Graph(model.graph)
    new_nodes: dict[int, object] = {}  # id of the node replaced -> its replacement
    dropped: set[int] = set()
    new_inits = []
    matmuls = gathers = 0
    for node in list(model.graph.node):
        if node.op_type == "MatMulInteger":
            replacement, weight = _matmul(g, node)
            new_nodes[id(node)] = replacement
            new_inits.append(weight)
            cast = g.only_consumer(node.output[0], "Cast")
            dropped |= {id(cast), id(g.only_consumer(cast.output[0], "Mul"))}
            matmuls += 1
        elif node.op_type == "DequantizeLinear":
            source = g.producer.get(node.input[0])
            if source is None or source.op_type != "Gather" or source.input[0] not in g.inits:
                continue
            table = g.const(source.input[0])
            scale = g.const(node.input[1])
            zp = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if scale is None or scale.size != 1 or (zp is not None and zp.size != 1):
                raise ValueError(f"{node.name}: only per-tensor embedding tables are handled")
            name = source.input[0].removesuffix("_quantized")
            new_inits.append(numpy_helper.from_array(dequantised(table, scale, zp), name))
            gather = onnx.helper.make_node(
                "Gather", [name, source.input[1]], list(node.output), name=source.name,
                axis=next((a.i for a in source.attribute if a.name == "axis"), 0),
            )
            new_nodes[id(node)] = gather
            dropped.add(id(source))
            gathers += 1
    nodes = []
    for node in model.graph.node:
        if id(node) in dropped:
            continue
        nodes.append(new_nodes.get(id(node), node))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_inits)
    prune(model)
    left = sorted({n.op_type for n in model.graph.node} & QUANTISED_OPS)
    if left:
        raise ValueError(f"dynamic quantisation left after recovery: {left}")
    return model, Recovered(matmuls, gathers)


def _matmul(g: _Graph, node):
    """(MatMul node, FP32 weight initialiser) for one MatMulInteger pattern."""
    from onnx import helper, numpy_helper

    a_q, b_q = node.input[0], node.input[1]
    quant = g.producer.get(a_q)
    if quant is None or quant.op_type != "DynamicQuantizeLinear" or b_q not in g.inits:
        raise ValueError(f"{node.name}: not DynamicQuantizeLinear(x) x INT8 weight")
    if len(node.input) > 2 and node.input[2] != quant.output[2]:
        raise ValueError(f"{node.name}: activation zero point is not the dynamic one")
    cast = g.only_consumer(node.output[0], "Cast")
    mul = g.only_consumer(cast.output[0], "Mul")
    scale_name = next(i for i in mul.input if i != cast.output[0])
    scale_mul = g.producer.get(scale_name)
    if scale_mul is None or scale_mul.op_type != "Mul" or quant.output[1] not in scale_mul.input:
        raise ValueError(f"{node.name}: output scale is not x_scale * w_scale")
    w_scale = g.const(next(i for i in scale_mul.input if i != quant.output[1]))
    w_zp = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if w_scale is None:
        raise ValueError(f"{node.name}: weight scale is not a constant")
    weight = dequantised(g.const(b_q), w_scale, w_zp)
    name = b_q.removesuffix("_quantized")
    matmul = helper.make_node(
        "MatMul", [quant.input[0], name], list(mul.output), name=node.name.removesuffix("_quant")
    )
    return matmul, numpy_helper.from_array(weight, name)


def prune(model) -> None:
    """Drop nodes whose outputs nobody reads and initialisers no node reads."""
    graph = model.graph
    wanted = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in wanted for o in node.output):
            keep.append(node)
            wanted |= set(node.input)
            for attr in node.attribute:  # subgraphs (If/Loop) read names from outside
                for sub in [attr.g, *attr.graphs]:
                    wanted |= {i for n in sub.node for i in n.input}
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in wanted]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    values = [v for v in graph.value_info if v.name in wanted]
    del graph.value_info[:]
    graph.value_info.extend(values)


def op_types(model) -> set[str]:
    """Every op type in the graph, subgraphs included."""
    found: set[str] = set()
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                stack.extend([attr.g, *attr.graphs] if attr.HasField("g") else list(attr.graphs))
    return found
