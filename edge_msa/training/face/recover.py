"""A finished run's state folder rebuilt from a shipped FP32 graph, so that a later
run can start from the shipped model or be taught by it when its checkpoints are gone.

The export folds each BatchNorm into its convolution (weight W, bias b). The
bias-free convolution + BatchNorm of :class:`FaceNet` computes the same thing in
eval mode for any running statistics (m, v) when gamma = sqrt(v + eps) and
beta = b + m; taking (m, v) from training faces makes train mode start close too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_msa.config import ConfigError
from edge_msa.training.face.net import FaceNet, build_net, finished_run


def graph_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """The folded convolutions in graph order, and the other weights by name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i).copy() for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    folded = [(inits[n.input[1]], inits[n.input[2]]) for n in convs]
    named = {k.removeprefix("net."): v for k, v in inits.items() if k.startswith("net.")}
    return folded, named


@torch.no_grad()
def net_from_graph(path: Path, settings: dict, faces: torch.Tensor) -> FaceNet:
    """``settings``: the run's widths, reps, dropout, embed; ``faces``: standardised
    training crops (N, 1, 40, 40) for the running statistics."""
    net = build_net(settings).eval()
    folded, named = graph_weights(path)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    if len(convs) != len(folded):
        raise ConfigError(f"{path}: {len(folded)} convolutions, the config's net has {len(convs)}")
    x = faces
    weights = iter(folded)
    for module in net.features:
        if isinstance(module, nn.Conv2d):
            w, b = next(weights)
            module.weight.copy_(torch.from_numpy(w))
        elif isinstance(module, nn.BatchNorm2d):
            mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            module.weight.copy_(torch.sqrt(var + module.eps))
            module.bias.copy_(torch.from_numpy(b) + mean)
        x = module(x)
    rest = {k: torch.from_numpy(v) for k, v in named.items()}
    net.load_state_dict({**net.state_dict(), **rest})
    return net


def recover_state(model_dir: Path, state: Path, faces: torch.Tensor) -> None:
    """Write ``best.pt`` and ``history.json`` of the run that made ``model_dir`` (its
    FP32 graph and the config in its manifest) into ``state``."""
    if finished_run(state):
        raise ConfigError(f"{state} already holds a finished run; recover into an empty folder")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    graph = model_dir / "expression.fp32.onnx"
    net = net_from_graph(graph, manifest["config"], faces)
    state.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), state / "best.pt")
    record = {
        "args": manifest["config"],
        "recovered_from": f"{graph} ({manifest['name']} {manifest['version']})",
        **{k: manifest["training"][k] for k in ("best_epoch", "history")},
        "epoch": manifest["training"]["epochs_run"],
    }
    (state / "history.json").write_text(json.dumps(record, indent=1))
