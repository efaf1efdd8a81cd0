"""Backend selection: the provider lists, and a real session on the CPU."""

import logging

import numpy as np

from edge_msa.backends import create_session, providers_for
from edge_msa.encoders.voice import default_model_dir

CPU = "CPUExecutionProvider"


def test_cpu_is_cpu_only(tmp_path):
    assert providers_for("cpu", {CPU, "CUDAExecutionProvider"}, tmp_path / "m.onnx") == [CPU]


def test_missing_gpu_provider_falls_back_with_one_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert providers_for("cuda", {CPU}, tmp_path / "m.onnx") == [CPU]
    warnings = [r for r in caplog.records if "CUDAExecutionProvider" in r.getMessage()]
    assert len(warnings) == 1 and "onnxruntime-gpu" in warnings[0].getMessage()


def test_tensorrt_options(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_MSA_TRT_CACHE", str(tmp_path / "cache"))
    available = {CPU, "CUDAExecutionProvider", "TensorrtExecutionProvider"}
    (trt, opts), cuda, cpu = providers_for("tensorrt", available, tmp_path / "face.int8.onnx")
    assert (trt, cuda, cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU)
    assert opts["trt_int8_enable"] and opts["trt_fp16_enable"]
    assert opts["trt_engine_cache_path"] == str(tmp_path / "cache")
    (_, fp), *_ = providers_for("tensorrt", available, tmp_path / "head.onnx")
    assert not fp["trt_int8_enable"]


def test_real_session_falls_back_and_runs():
    path = default_model_dir() / "voice_head.onnx"
    session = create_session(path, "cuda", threads=1)
    assert session.get_providers() == [CPU]
    name = session.get_inputs()[0].name
    width = session.get_inputs()[0].shape[1]
    probs = session.run(None, {name: np.zeros((2, width), np.float32)})[0]
    assert probs.shape == (2, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_speech_recognition_device_follows_the_backend():
    import ctranslate2

    from edge_msa.encoders.asr import ctranslate2_device

    assert ctranslate2_device("cpu") == ("cpu", "int8")
    expected = ("cuda", "int8_float16") if ctranslate2.get_cuda_device_count() else ("cpu", "int8")
    assert ctranslate2_device("cuda") == expected
