"""Export the text model: FP32 ONNX, INT8 (per-tensor and per-channel, the better
on MOSI dev ships), latency, parity with PyTorch, and the std temperature."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from edge_msa.training.manifest import rounded
from edge_msa.training.text.data import Split, length_sorted_batches, pad_batch
from edge_msa.training.text.fit import log, predict_torch, split_metrics
from edge_msa.training.text.model import ExportWrapper, TextSentimentModel

ONNX_NAME = "text_sentiment.int8.onnx"
# Fraction of a Gaussian within one standard deviation of its mean.
ONE_SIGMA_MASS = 0.6827


def export_onnx(model: TextSentimentModel, path: Path) -> None:
    wrapper = ExportWrapper(model).eval()
    ids, mask = pad_batch([[101, 2023, 2003, 2307, 102], [101, 2919, 102]])
    torch.onnx.export(
        wrapper,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding", "mean", "log_var"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "embedding": {0: "batch"},
            "mean": {0: "batch"},
            "log_var": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )


def quantize(fp32: Path, out: Path, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)


def ort_session(path: Path, threads: int = 1):
    from edge_msa.backends import create_session

    return create_session(path, "cpu", threads)


def predict_onnx(sess, split: Split, batch: int = 32) -> dict[str, np.ndarray]:
    n = len(split.ids)
    mean, log_var = np.zeros(n, np.float32), np.zeros(n, np.float32)
    emb = np.zeros((n, 384), np.float32)
    for idx in length_sorted_batches(split.ids, batch):
        ids, mask = pad_batch([split.ids[i] for i in idx])
        e, m, lv = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        emb[idx], mean[idx], log_var[idx] = e, m, lv
    return {"mean": mean, "log_var": log_var, "embedding": emb}


def batch1_metrics(path: Path, devs: list[Split]) -> dict:
    # Dynamic INT8 picks activation scales per call, so batch composition
    # shifts outputs slightly; batch 1 is what streaming inference sees.
    sess = ort_session(path)
    return {
        d.name: split_metrics(predict_onnx(sess, d, batch=1)["mean"], d) for d in devs
    }


def ms_per_sentence(sess, split: Split, n: int = 200) -> float:
    """Median latency at batch 1 on the session's threads."""
    times = []
    for seq in split.ids[:n]:
        ids, mask = pad_batch([seq])
        feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


# ---------------------------------------------------------------- calibration


def fit_temperature(preds: list[dict[str, np.ndarray]], devs: list[Split]) -> float:
    """Scale so that ONE_SIGMA_MASS of pooled dev labels lie within ±1 std."""
    z = np.concatenate(
        [
            np.abs(d.labels - p["mean"]) / np.exp(0.5 * p["log_var"])
            for p, d in zip(preds, devs, strict=True)
        ]
    )
    return float(np.quantile(z, ONE_SIGMA_MASS))


def coverage(pred: dict[str, np.ndarray], labels: np.ndarray, temperature: float) -> dict:
    std = np.exp(0.5 * pred["log_var"]) * temperature
    err = np.abs(labels - pred["mean"])
    return {
        "within_1std": float(np.mean(err <= std)),
        "within_2std": float(np.mean(err <= 2 * std)),
        "mean_std": float(np.mean(std)),
    }


def export_and_measure(
    model: TextSentimentModel, args: SimpleNamespace, devs: list[Split]
) -> tuple[dict, float, dict]:
    """Export FP32, quantize INT8 (per-tensor and per-channel), measure all."""
    args.export_work.mkdir(parents=True, exist_ok=True)
    fp32 = args.export_work / "text_sentiment.fp32.onnx"
    export_onnx(model, fp32)
    variants = {"fp32": fp32}
    for per_channel in (False, True):
        q = args.export_work / f"text_sentiment.int8{'.pc' if per_channel else ''}.onnx"
        quantize(fp32, q, per_channel)
        variants["int8_per_channel" if per_channel else "int8_per_tensor"] = q
    results: dict[str, dict] = {}
    preds: dict[str, list[dict[str, np.ndarray]]] = {}
    for name, path in variants.items():
        sess = ort_session(path, threads=1)
        preds[name] = [predict_onnx(sess, d) for d in devs]
        results[name] = {
            d.name: split_metrics(p["mean"], d) for p, d in zip(preds[name], devs, strict=True)
        }
        results[name]["ms_per_sentence_b1_t1"] = ms_per_sentence(sess, devs[0])
        results[name]["size_mb"] = path.stat().st_size / 1e6
        log(f"{name}: " + json.dumps(rounded(results[name])))
    # Choose the INT8 flavour on MOSI dev, the selection set.
    chosen = min(
        ("int8_per_tensor", "int8_per_channel"), key=lambda k: results[k][devs[0].name]["mae"]
    )
    shutil.copyfile(variants[chosen], args.out / ONNX_NAME)
    results["int8_batch1"] = batch1_metrics(variants[chosen], devs)
    log("int8_batch1: " + json.dumps(rounded(results["int8_batch1"])))
    check_torch_parity(model, variants["fp32"], devs[0])
    return results, chosen, preds[chosen]


def check_torch_parity(model: TextSentimentModel, fp32: Path, split: Split) -> None:
    ref = predict_torch(model, split)["mean"]
    got = predict_onnx(ort_session(fp32), split)["mean"]
    diff = float(np.max(np.abs(ref - got)))
    log(f"torch vs onnx fp32 max |mean diff| = {diff:.2e}")
    if diff > 1e-3:
        raise RuntimeError(f"ONNX export disagrees with torch by {diff}")
