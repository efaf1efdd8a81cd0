"""Inference backends: what ONNX Runtime (and CTranslate2) can run on here."""

from __future__ import annotations

from edge_msa.config import Config
from edge_msa.doctor.report import Check

_PROVIDER = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_FIX = {
    "cuda": "install onnxruntime-gpu matching this CUDA (on Jetson: the JetPack wheel)",
    "tensorrt": "install TensorRT and an onnxruntime-gpu built with it (on Jetson: JetPack)",
}


def check_backends(cfg: Config) -> list[Check]:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return [
            Check(
                "FAIL",
                "backend cpu",
                f"onnxruntime cannot be imported ({e})",
                "pip install onnxruntime (scripts/setup.sh does)",
            )
        ]
    available = set(ort.get_available_providers())
    chosen = cfg.runtime.backend
    checks = [
        Check(
            "ok",
            "backend cpu",
            f"onnxruntime {ort.__version__}; providers: {', '.join(sorted(available))}",
        )
    ]
    gpus = _cuda_devices()
    for backend, provider in _PROVIDER.items():
        name = f"backend {backend}"
        if provider in available:
            detail = f"{provider} available; CUDA devices seen by CTranslate2: {gpus}"
            if backend == "tensorrt":
                detail += f"; tensorrt python: {_tensorrt_version()}"
            checks.append(Check("ok", name, detail))
        elif backend == chosen:
            # Not fatal: the runtime falls back to the CPU, but slower than the user expects.
            checks.append(
                Check(
                    "warn",
                    name,
                    f"{provider} not in this onnxruntime build; --backend {backend} "
                    "will run on the CPU",
                    _FIX[backend],
                )
            )
        else:
            checks.append(
                Check("ok", name, f"not available (only --backend {backend} needs {provider})")
            )
    return checks


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # no CTranslate2 or no CUDA runtime: zero devices for our purposes
        return 0


def _tensorrt_version() -> str:
    try:
        import tensorrt  # type: ignore[import-not-found]

        return str(tensorrt.__version__)
    except Exception:
        return "not installed"
