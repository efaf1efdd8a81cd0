"""The one place that decides how an ONNX model runs.

Every ONNX model in the project is opened through :func:`create_session`.
GPU providers are only asked for when chosen; when they are missing the
session falls back to the CPU with one warning naming what is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Backend = Literal["cpu", "cuda", "tensorrt"]

_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


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

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    available = set(ort.get_available_providers())
    wanted = _PROVIDERS[backend]
    providers = [p for p in wanted if p in available]
    if wanted[0] not in available:
        log.warning(
            "backend %r asked for but %s is not available in this onnxruntime build; using CPU",
            backend,
            wanted[0],
        )
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    if warmup is not None:
        session.run(None, warmup)
    return session
