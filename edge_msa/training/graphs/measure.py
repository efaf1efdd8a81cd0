"""Score candidate graphs as the evaluation does, on ONNX Runtime's CPU provider.

Each candidate runs through the product's own loaders (``TextEncoder``,
``FusionModel``) and :func:`edge_msa.evaluation.fusion_eval.evaluate_text`:
a temporary models folder holds the model's manifest with ``file`` pointing
at the candidate, so what is measured is exactly what the runtime would run
with that graph.

Text: the text model's own score (``eval text --encoder-only``). Fusion: the
fusion model given only the transcripts (``eval text``). Both on MOSI dev
(229 sentences) and MOSEI valid (1,861), against the recovered FP32 graph:
MAE, and how far each prediction moved.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edge_msa import models

SPLITS = {"mosi_dev": ("mosi/label.csv", "dev"), "mosei_valid": ("mosei/label.csv", "valid")}


@contextmanager
def models_with(graphs: dict[str, Path]):
    """A models root where ``graphs[name]`` is what ``name``'s manifest loads."""
    before = models.models_root()
    with tempfile.TemporaryDirectory(prefix="edge-msa-graphs-") as tmp:
        for other in before.path.iterdir():  # voice, face: as they are
            if other.is_dir() and other.name not in ("text", "fusion"):
                (Path(tmp) / other.name).symlink_to(other.resolve())
        for name in ("text", "fusion"):
            src = before.path / name
            dst = Path(tmp) / name
            dst.mkdir()
            for f in src.iterdir():
                if f.is_file() and not f.name.endswith(".onnx"):
                    (dst / f.name).symlink_to(f.resolve())
            manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
            graph = Path(graphs.get(name, src / manifest["file"])).resolve()
            manifest["file"] = graph.name
            (dst / "manifest.json").unlink()
            (dst / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
            (dst / graph.name).symlink_to(graph)
        models.set_root(tmp)
        try:
            yield Path(tmp)
        finally:
            models.set_root(before.path if before.source == "--models" else None)


def predictions(data: Path, graphs: dict[str, Path], encoder_only: bool) -> dict[str, dict]:
    """{split: {"mae", "pred", "truth"}} for the text model alone or the fusion model."""
    from edge_msa.evaluation.fusion_eval import evaluate_text

    out = {}
    with models_with(graphs):
        for key, (labels, split) in SPLITS.items():
            out[key] = _scored(evaluate_text(data / labels, split, encoder_only=encoder_only))
    return out


def speech_predictions(data: Path, graphs: dict[str, Path]) -> dict[str, dict]:
    """{"mosi_dev_speech": ...}: the fusion model on MOSI dev spoken by espeak-ng and heard
    as at run time, with the recognised transcript (``eval speech``): its audio branch too."""
    from edge_msa.evaluation.fusion_eval import evaluate_speech

    labels, split = SPLITS["mosi_dev"]
    with models_with(graphs):
        m = evaluate_speech(data / labels, split, text="simulated")
    return {"mosi_dev_speech": _scored(m)}


def _scored(result: dict) -> dict:
    """An evaluation's MAE and its per-row predictions, stds and labels."""
    mean, std, truth = result["_arrays"]
    return {"mae": float(result["mae"]), "pred": np.asarray(mean), "std": std, "truth": truth}


def against(reference: dict[str, dict], candidate: dict[str, dict]) -> dict[str, dict]:
    """Per split: the candidate's MAE, its change from the reference's, how far its
    predictions are from the reference's (mean and largest) and the largest change
    of a log-variance (twice the log of the published std's ratio)."""
    out = {}
    for key, ref in reference.items():
        got = candidate[key]
        moved = np.abs(got["pred"] - ref["pred"])
        out[key] = {
            "n": len(moved),
            "mae": round(got["mae"], 4),
            "mae_minus_fp32": round(got["mae"] - ref["mae"], 4),
            "pred_mean_abs_diff": round(float(moved.mean()), 4),
            "pred_max_abs_diff": round(float(moved.max()), 4),
            "log_var_max_abs_diff": round(
                float(np.abs(2 * np.log(got["std"] / ref["std"])).max()), 4
            ),
        }
    return out


def output_diffs(reference: Path, candidate: Path, feeds: list[dict]) -> dict[str, float]:
    """Largest |candidate - reference| per output over the feeds (inf for a NaN)."""
    from edge_msa.backends import create_session

    ref, got = create_session(reference, "cpu"), create_session(candidate, "cpu")
    names = [o.name for o in ref.get_outputs()]
    worst = dict.fromkeys(names, 0.0)
    for feed in feeds:
        for name, a, b in zip(names, ref.run(names, feed), got.run(names, feed), strict=True):
            diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
            worst[name] = max(worst[name], float(np.nan_to_num(diff, nan=np.inf).max()))
    return {k: round(v, 4) for k, v in worst.items()}


def cpu_ms(graph: Path, feeds: list[dict[str, np.ndarray]], repeats: int = 3) -> float:
    """Median ms per feed on one CPU thread (feeds one at a time, as the runtime runs)."""
    from edge_msa.backends import create_session

    session = create_session(graph, "cpu", threads=1, warmup=feeds[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for feed in feeds:
            session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000 / len(feeds))
    return round(float(np.median(times)), 3)


def size_mb(path: Path) -> float:
    return round(os.path.getsize(path) / 1e6, 2)


def copy_graph(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst
