"""The one place that decides how an ONNX model runs.

Every ONNX model in the project is opened through :func:`create_session`:

- ``cpu``: ONNX Runtime's CPU provider (the default);
- ``cuda``: the CUDA provider, CPU as fallback for unsupported nodes;
- ``tensorrt``: ONNX Runtime's TensorRT provider, with FP16 (and INT8 for
  QDQ models, whose scales come from the graph), engines cached on disk so
  that only the first start on a device pays for the build.

GPU providers are only asked for when chosen. When the installed ONNX Runtime
lacks one, the session falls back to the CPU with one warning naming what is
missing. Thread counts are set per model, and one warm-up run at load keeps
lazy initialisation out of the first real call.

Which graph of a model folder runs is decided here too (:func:`model_file`):
the manifest's ``file`` on the CPU (the text and fusion models' dynamic INT8,
the fastest there), and on ``cuda``/``tensorrt`` the manifest's
``tensorrt.file`` when it names one: a static INT8 QDQ or FP16 graph without
the ``MatMulInteger``/``DynamicQuantizeLinear`` nodes TensorRT cannot take
(``scripts/build_trt_graphs.py``, ``docs/tensorrt.md``). A GPU backend whose
provider is not installed runs on the CPU, so it gets the CPU graph.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Backend = Literal["cpu", "cuda", "tensorrt"]

DEFAULT_ENGINE_CACHE = Path("~/.cache/edge-msa/trt").expanduser()
PROVIDER = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# ONNX Runtime's CPU layout transformer (NCHWc, for convolutions, which these graphs
# lack) crashes the process at load on the FP16 fusion graph (onnxruntime 1.32,
# AVX-512); FP16 graphs only meet the CPU in checks and CPU fallbacks.
FP16_DISABLED_OPTIMIZERS = ["NchwcTransformer"]
_warned: set[str] = set()


def runs_on(backend: Backend, available: set[str]) -> Backend:
    """The backend that will really run: ``backend``, or ``cpu`` when its provider is missing."""
    return backend if backend == "cpu" or PROVIDER[backend] in available else "cpu"


def model_file(
    folder: str | Path, manifest: dict, backend: Backend = "cpu", available: set[str] | None = None
) -> Path:
    """The graph of a model folder that ``backend`` runs (see the module doc);
    ``available``: the installed providers (default: this onnxruntime's)."""
    folder = Path(folder)
    gpu = (manifest.get("tensorrt") or {}).get("file")
    if gpu and backend != "cpu":
        if available is None:
            import onnxruntime as ort

            available = set(ort.get_available_providers())
        if runs_on(backend, available) != "cpu":
            return folder / gpu
    return folder / manifest["file"]


def providers_for(backend: Backend, available: set[str], model: Path) -> list:
    """The provider list (with options) for ``backend``, given what is installed."""
    cpu = "CPUExecutionProvider"
    if backend == "cpu":
        return [cpu]
    wanted = PROVIDER[backend]
    if wanted not in available:
        if wanted not in _warned:
            _warned.add(wanted)
            log.warning(
                "--backend %s: %s is not in this onnxruntime build (%s); running on the CPU. "
                "Install onnxruntime-gpu (on Jetson: the JetPack wheel)",
                backend, wanted, ", ".join(sorted(available)),
            )
        return [cpu]
    if backend == "cuda":
        return ["CUDAExecutionProvider", cpu]
    cache = Path(os.environ.get("EDGE_MSA_TRT_CACHE", DEFAULT_ENGINE_CACHE))
    cache.mkdir(parents=True, exist_ok=True)
    trt = {
        "trt_fp16_enable": True,
        "trt_int8_enable": ".int8." in model.name,  # QDQ graphs carry their own scales
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
    }
    return [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider", cpu]


def create_session(
    path: str | Path,
    backend: Backend = "cpu",
    threads: int = 1,
    warmup: dict[str, np.ndarray] | None = None,
):
    """Open an ONNX Runtime session with explicit thread counts.

    ``warmup`` is one set of inputs run once at load so that the first real
    call does not pay for lazy initialisation.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {path} not found; is the repository's models/ complete?")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    providers = providers_for(backend, set(ort.get_available_providers()), path)
    disabled = FP16_DISABLED_OPTIMIZERS if ".fp16." in path.name else None
    session = ort.InferenceSession(
        str(path), sess_options=opts, providers=providers, disabled_optimizers=disabled
    )
    if warmup is not None:
        session.run(None, warmup)
    return session
