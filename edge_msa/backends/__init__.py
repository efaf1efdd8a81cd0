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
_warned: set[str] = set()


def providers_for(backend: Backend, available: set[str], model: Path) -> list:
    """The provider list (with options) for ``backend``, given what is installed."""
    cpu = "CPUExecutionProvider"
    if backend == "cpu":
        return [cpu]
    wanted = "CUDAExecutionProvider" if backend == "cuda" else "TensorrtExecutionProvider"
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
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    if warmup is not None:
        session.run(None, warmup)
    return session
