"""The graphs the GPU backends load (issue 16, TensorRT-ready graphs).

- none holds a node TensorRT cannot take (MatMulInteger, DynamicQuantizeLinear,
  ConvInteger): the text model's and the fusion model's GPU graphs (FP16 or
  static INT8 QDQ, as scripts/build_trt_graphs.py chose) and the face
  expression CNN's QDQ graph (its only graph);
- each matches its FP32 graph on ONNX Runtime's CPU provider within the limits
  the build rule chose it by (``OUTPUT_TOLERANCE``, edge_msa/training/graphs/
  build.py), on real inputs: sentences and fusion features from
  calibration/ (MOSI/MOSEI train) and hand-written sentences; the FP32 graphs
  are recovered from the shipped dynamic INT8 graphs, as the manifest's
  ``tensorrt.fp32`` says, and must hash to the sha256 recorded there;
- the backend layer picks the CPU graph for ``cpu`` (and for a GPU backend
  whose provider is missing) and the TensorRT graph for ``cuda``/``tensorrt``.

The MAE on MOSI dev and MOSEI valid is in each manifest's ``tensorrt`` key,
measured by scripts/build_trt_graphs.py (minutes, data sets needed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_msa.backends import create_session, model_file
from edge_msa.hashing import sha256_file
from edge_msa.models import model_dir
from edge_msa.training.graphs.build import OUTPUT_TOLERANCE
from edge_msa.training.graphs.measure import output_diffs
from tests.conftest import REPO

FORBIDDEN = {"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger"}
CPU = {"CPUExecutionProvider"}
GPU = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
OWN = {"own_mean", "own_log_var"}  # graphs exported before the own heads lack them
SENTENCES = [
    "i loved it",
    "uh",
    "it was okay i guess but the ending dragged on",
    "This movie was a complete waste of time, and the actors looked bored in every scene.",
]


def _manifest(name: str) -> dict:
    return json.loads((model_dir(name) / "manifest.json").read_text(encoding="utf-8"))


def _gpu_graph(name: str) -> Path:
    return model_file(model_dir(name), _manifest(name), "tensorrt", GPU)


def _gpu_graphs() -> dict[str, Path]:
    from edge_msa.vision.expression import MODEL_FILE

    return {
        "text": _gpu_graph("text"),
        "fusion": _gpu_graph("fusion"),
        "face": model_dir("face") / MODEL_FILE,  # QDQ: one graph for every backend
    }


# ------------------------------------------------------------------ nodes


@pytest.mark.parametrize("name", ["text", "fusion", "face"])
def test_no_graph_for_tensorrt_holds_dynamic_quantisation(name):
    onnx = pytest.importorskip("onnx", reason="reading graphs needs the train extra (onnx)")
    from edge_msa.training.graphs.dequantize import op_types

    path = _gpu_graphs()[name]
    ops = op_types(onnx.load(str(path)))
    assert not ops & FORBIDDEN, (path.name, ops & FORBIDDEN)
    # The name tells the TensorRT provider whether to enable INT8 (backends.providers_for):
    # it must say so exactly for the graphs that carry their own Q/DQ scales.
    assert (".int8." in path.name) == ("QuantizeLinear" in ops), path.name


def test_the_check_sees_dynamic_quantisation_in_the_cpu_graphs():
    onnx = pytest.importorskip("onnx", reason="reading graphs needs the train extra (onnx)")
    from edge_msa.training.graphs.dequantize import op_types

    for name in ("text", "fusion"):
        path = model_dir(name) / _manifest(name)["file"]
        assert {"MatMulInteger", "DynamicQuantizeLinear"} <= op_types(onnx.load(str(path)))


# ------------------------------------------------------------------ against FP32


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> dict[str, Path]:
    """FP32 graphs recovered from the shipped dynamic INT8 graphs, as the manifests say."""
    pytest.importorskip("onnx", reason="recovering FP32 needs the train extra (onnx)")
    from edge_msa.training.graphs.build import SPECS, recover_file

    out = tmp_path_factory.mktemp("fp32")
    paths = {}
    for name in ("text", "fusion"):
        manifest = _manifest(name)
        record = recover_file(
            model_dir(name) / manifest["file"], out / f"{SPECS[name].stem}.fp32.onnx"
        )
        assert record["sha256"] == manifest["tensorrt"]["fp32"]["sha256"], name
        assert not record["shipped"] and "NOT the pre-quantisation" in record["what"]
        paths[name] = out / record["file"]
    return paths


def test_text_graph_matches_fp32(fp32):
    from edge_msa.encoders.text import TextEncoder
    from edge_msa.training.graphs.calibration import text_feeds

    encoder = TextEncoder(model_dir("text"))
    feeds = text_feeds(REPO / _manifest("text")["tensorrt"]["calibration"]["file"])[:12]
    feeds += [encoder._feed([s]) for s in SENTENCES] + [encoder._feed(SENTENCES)]  # padded too
    worst = output_diffs(fp32["text"], _gpu_graph("text"), feeds)
    assert set(worst) == set(OUTPUT_TOLERANCE["text"])
    for name, diff in worst.items():
        assert diff <= OUTPUT_TOLERANCE["text"][name], (name, diff)


def test_fusion_graph_matches_fp32(fp32):
    from edge_msa.fusion.features import FusionInputs, batch, text_feature
    from edge_msa.training.graphs.calibration import CASES, fusion_feeds

    encoder_feeds = [batch([FusionInputs(text=text_feature(p))]) for p in _predict(SENTENCES)]
    calibration = REPO / _manifest("fusion")["tensorrt"]["calibration"]["file"]
    rows = fusion_feeds(calibration, 1)[: 2 * len(CASES)]  # every modality combination, twice
    feeds = rows + encoder_feeds + fusion_feeds(calibration, 8)[:2]
    worst = output_diffs(fp32["fusion"], _gpu_graph("fusion"), feeds)
    assert set(worst) in (set(OUTPUT_TOLERANCE["fusion"]), set(OUTPUT_TOLERANCE["fusion"]) - OWN)
    for name, diff in worst.items():
        assert diff <= OUTPUT_TOLERANCE["fusion"][name], (name, diff)


def _predict(sentences: list[str]):
    from edge_msa.encoders.text import TextEncoder

    return TextEncoder(model_dir("text")).predict_batch(sentences)


def test_face_graph_matches_fp32():
    from edge_msa.vision.expression import MODEL_FILE

    faces = np.load(REPO / "calibration" / "face_calibration.npz")["images"][::8]
    feed = {"image": faces.astype(np.float32)[:, None]}
    fp32 = create_session(model_dir("face") / "expression.fp32.onnx", "cpu")
    qdq = create_session(model_dir("face") / MODEL_FILE, "cpu")
    (a, _), (b, _) = fp32.run(None, feed), qdq.run(None, feed)

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # Measured 0.055 (0.3.0: every convolution INT8; 0.015 with the first three in FP32);
    # PublicTest accuracy INT8 0.680 against 0.682 (manifest).
    assert np.abs(softmax(a) - softmax(b)).max() <= 0.08
    assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.95


# ------------------------------------------------------------------ which graph runs


@pytest.mark.parametrize("name", ["text", "fusion"])
def test_backend_picks_the_graph(name):
    manifest, folder = _manifest(name), model_dir(name)
    cpu_graph, gpu_graph = folder / manifest["file"], folder / manifest["tensorrt"]["file"]
    assert cpu_graph != gpu_graph and cpu_graph.is_file() and gpu_graph.is_file()
    assert model_file(folder, manifest, "cpu", GPU) == cpu_graph
    for backend in ("cuda", "tensorrt"):
        assert model_file(folder, manifest, backend, GPU) == gpu_graph
        assert model_file(folder, manifest, backend, CPU) == cpu_graph  # provider missing
    only_cuda = {"CUDAExecutionProvider", "CPUExecutionProvider"}
    assert model_file(folder, manifest, "cuda", only_cuda) == gpu_graph
    assert model_file(folder, manifest, "tensorrt", only_cuda) == cpu_graph
    without = {k: v for k, v in manifest.items() if k != "tensorrt"}
    assert model_file(folder, without, "tensorrt", GPU) == cpu_graph  # a folder without one


def test_loaders_run_the_backend_graph(monkeypatch):
    import onnxruntime as ort

    from edge_msa import backends
    from edge_msa.encoders.text import TextEncoder
    from edge_msa.fusion.model import FusionModel

    # A missing provider warns once per process: keep this test's warning to itself.
    monkeypatch.setattr(backends, "_warned", set())

    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    for backend in ("cpu", "cuda"):
        text, fusion = TextEncoder(model_dir("text"), backend), FusionModel(None, backend)
        for model, name in ((text, "text"), (fusion, "fusion")):
            manifest = _manifest(name)
            want = manifest["tensorrt"]["file"] if backend == "cuda" and gpu else manifest["file"]
            assert model.graph == model_dir(name) / want


def test_manifests_record_the_choice():
    for name in ("text", "fusion"):
        manifest = _manifest(name)
        trt = manifest["tensorrt"]
        chosen = next(c for c in trt["candidates"].values() if c["file"] == trt["file"])
        for split in ("mosi_dev", "mosei_valid"):
            assert abs(chosen[split]["mae_minus_fp32"]) <= trt["tolerance_mae"] <= 0.005
        assert manifest["sha256"][trt["file"]]  # shipped and verified by doctor
        calibration = REPO / trt["calibration"]["file"]
        assert sha256_file(calibration) == trt["calibration"]["sha256"]
