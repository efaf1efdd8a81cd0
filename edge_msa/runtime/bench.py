"""`edge-msa bench`: the whole pipeline on a media file, measured.

Two runs of the same file with the same loaded models: one paced at
wall-clock speed, as a camera and microphone would deliver it, for the
latencies a person feels (end of utterance to the result arriving at an MQTT
subscriber); one as fast as possible, for the real-time factor and the face
frames analysed per second. When the ``mosquitto`` binary is installed the
results go through a real broker on a free loopback port and "publish" is
measured to the subscriber; without it they stop at the pipeline's hand-off.

``--baseline`` measures a naive configuration in the same invocation: FP32
speech and expression models; every stage on one thread, one after the
other: when an utterance closes, its speech is recognised, then its frames
go through the face stage (the whole frame searched on each), then fusion.

After the runs, the utterances whose recognition the paced run used are
recognised again, each through the configured encoder window and through
Whisper's full 30 s window, one after the other on the same loaded model:
what the window saves, on the same audio (issue 16).
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import av
import numpy as np

from edge_msa.config import Config, load_config
from edge_msa.encoders.asr_window import FULL_WINDOW
from edge_msa.publishing.outbox import Outbox
from edge_msa.runtime.app import load_models
from edge_msa.runtime.pipeline import Pipeline, PipelineListener
from edge_msa.sources import DEMO_CLIP, build_sources
from edge_msa.types import SentimentResult

STAGES = (
    "vad", "asr", "voice", "text", "face", "face_detect", "face_expression", "fusion", "publish"
)
# What the baseline's report keeps, and the ratios printed against it.
COMPARED = ("eou_to_publish_ms_p50", "eou_to_publish_ms_p95", "face_fps", "rtf")


async def bench(
    media: str | None = None, plot: str | None = None, baseline: bool = False
) -> dict[str, object]:
    media = media or str(DEMO_CLIP)
    with _broker() as port:
        report, stage_ms = await _measure(media, port, naive=False)
        # Peak memory of the optimised runs, before the baseline loads its own models.
        report["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if plot:
            from edge_msa.plots import latency_png

            latency_png({k: v for k, v in stage_ms.items() if v}, Path(plot) / "latency.png")
        if baseline:
            base, _ = await _measure(media, port, naive=True)
            report["baseline"] = {k: base.get(k) for k in (*COMPARED, "asr_ms_p50", "face_ms_p50")}
            report["speedup_vs_baseline"] = _ratio(
                base["eou_to_publish_ms_p50"], report["eou_to_publish_ms_p50"]
            )
            report["speedup_vs_baseline_p95"] = _ratio(
                base["eou_to_publish_ms_p95"], report["eou_to_publish_ms_p95"]
            )
            report["rtf_ratio_vs_baseline"] = _ratio(base["rtf"], report["rtf"])
    report["model_mb"] = _model_sizes()
    return report


async def _measure(
    media: str, port: int | None, naive: bool
) -> tuple[dict[str, object], dict[str, list[float]]]:
    paced_cfg = _config(media, port, realtime=True, naive=naive)
    sources = _open(paced_cfg)
    models = load_models(paced_cfg, any(s.has_video for s in sources), naive)
    segmenter, analyzer, face, name = models
    heard = _Recorded(analyzer)
    paced, _, eou = await _run(paced_cfg, sources, (segmenter, heard, face, name), port, naive)
    fast_cfg = _config(media, port, realtime=False, naive=naive)
    fast, fast_s, _ = await _run(fast_cfg, _open(fast_cfg), models, port, naive)
    duration = _duration(media)
    report: dict[str, object] = {
        "media": media,
        "media_s": round(duration, 2),
        "results": len(eou),
        "broker": port is not None,
        "eou_to_publish_ms_p50": _pct(eou, 50),
        "eou_to_publish_ms_p95": _pct(eou, 95),
        # Frames the face stage gets through per second of its one thread, in the
        # fast run while speech is recognised beside it: its capacity. The wall
        # rate below is capped by the sampling (vision.max_fps per media second).
        "face_fps": round(1000.0 / float(np.mean(fast.stage_ms["face"])), 1)
        if fast.stage_ms.get("face") else 0.0,
        "face_frames_per_wall_s": round(fast.frames_analysed / fast_s, 1),
        "rtf": round(fast_s / duration, 3),
        # Recognition started in a pause (paced run): used by its utterance, or
        # outdated by speech going on (and of those, how many had begun: work in vain).
        "drafts_started": paced.drafts.started,
        "drafts_used": paced.drafts.used,
        "drafts_outdated": paced.drafts.outdated,
        "drafts_outdated_ran": paced.drafts.outdated_ran,
        # How long before its utterance closed a used draft began (the time it can buy).
        "drafts_head_start_ms_p50": _pct(list(paced.drafts.head_start_ms), 50),
    }
    for stage in STAGES:
        if paced.stage_ms.get(stage):
            report[f"{stage}_ms_p50"] = _pct(paced.stage_ms[stage], 50)
            report[f"{stage}_ms_p95"] = _pct(paced.stage_ms[stage], 95)
    if not naive and analyzer.asr is not None:
        report.update(_window_check(report, heard, len(paced.stage_ms.get("asr", ()))))
    return report, paced.stage_ms


class _Recorded:
    """The analyzer, keeping the audio of each utterance whose recognition a
    result used (a used draft's or the real pass's; not an outdated draft's)."""

    def __init__(self, analyzer) -> None:
        self.analyzer = analyzer
        self._heard: dict[int, tuple[object, np.ndarray]] = {}  # id(Heard) -> (it, audio)
        self.used: list[np.ndarray] = []

    def __getattr__(self, name: str):
        return getattr(self.analyzer, name)

    def hear(self, audio: np.ndarray):  # in the drafts' or the models' thread
        heard = self.analyzer.hear(audio)
        self._heard[id(heard)] = (heard, audio)  # holding it keeps its id unique
        return heard

    def fuse(self, heard, face):  # in the models' thread, once per result
        entry = self._heard.pop(id(heard), None)
        if entry is not None and "asr" in heard.latency_ms:
            self.used.append(entry[1])
        return self.analyzer.fuse(heard, face)


def _window_check(report: dict[str, object], heard: _Recorded, in_run: int) -> dict[str, object]:
    """The paced run's utterances recognised again, through the configured
    window and the full 30 s one, alternately first so neither gets the
    warmer caches: ``asr_ms_p50`` (in the run) against ``asr_window_ms_p50``
    (full window, same audio); ``asr_rerun_ms_p50`` is the configured window
    beside it, without the run's other stages on the cores."""
    asr, transcribe = heard.analyzer.asr, heard.analyzer.text is not None
    fitted: list[float] = []
    full: list[float] = []
    for i, audio in enumerate(heard.used):
        order = ((fitted, None), (full, FULL_WINDOW))
        for times, window in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            asr.recognition(audio, transcribe, window)
            times.append((time.perf_counter() - start) * 1000.0)
    heard.used.clear()
    heard._heard.clear()
    window_p50 = _pct(full, 50)
    return {
        "asr_utterances": in_run,
        "asr_window_utterances": len(full),
        "asr_window_ms_p50": window_p50,
        "asr_window_ms_p95": _pct(full, 95),
        "asr_rerun_ms_p50": _pct(fitted, 50),
        "asr_window_ratio": round(float(report.get("asr_ms_p50", math.nan)) / window_p50, 3)
        if full else math.nan,
    }


def _open(cfg: Config) -> list:
    sources = build_sources(cfg.source)
    for src in sources:
        src.open()
    return sources


def _config(media: str, port: int | None, realtime: bool, naive: bool) -> Config:
    cli = {
        "source": {"media": media, "realtime": realtime},
        "output": {"sinks": ["mqtt"] if port else []},
        "mqtt": {"port": port or 1883, "prefix": "edge-msa-bench"},
        "runtime": {"log_level": "WARNING"},
        "asr": {"early_start": not naive},
    }
    return load_config(None, cli)


class _Arrivals(PipelineListener):
    """End of utterance to publish, per result: the pipeline's own latency up
    to the hand-off, plus the time until the subscriber has it."""

    def __init__(self) -> None:
        self.handed: dict[str, tuple[float, float]] = {}  # id -> (hand-off time, ms so far)
        self.arrived: dict[str, float] = {}

    def result(self, result: SentimentResult) -> None:
        if "asr" in result.latency_ms or "voice" in result.latency_ms:  # not face-only
            self.handed[result.id] = (time.monotonic(), result.latency_ms["total"])

    def eou_to_publish(self, broker: bool) -> list[float]:
        if not broker:
            return [ms for _, ms in self.handed.values()]
        return [
            ms + (self.arrived[i] - t) * 1000.0
            for i, (t, ms) in self.handed.items()
            if i in self.arrived
        ]

    def publish_ms(self) -> list[float]:
        return [(self.arrived[i] - t) * 1000.0 for i, (t, _) in self.handed.items()
                if i in self.arrived]


async def _run(cfg: Config, sources, models, port: int | None, naive: bool):
    """The finished pipeline, the run's wall time and each result's end of
    utterance to publish, in ms."""
    segmenter, analyzer, face, name = models
    if face is not None:
        face.tracker.reset()
    arrivals = _Arrivals()
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db") if port else None
        pipeline = Pipeline(
            cfg, sources, segmenter, analyzer, outbox, [], name, face, sequential=naive
        )
        pipeline.listeners.append(arrivals)
        listen = asyncio.create_task(_subscribe(cfg, arrivals)) if port else None
        start = time.perf_counter()
        await pipeline.run()
        wall = time.perf_counter() - start
        if listen is not None:
            await _wait_for(lambda: set(arrivals.handed) <= set(arrivals.arrived), 10.0)
            listen.cancel()
            with suppress(asyncio.CancelledError):
                await listen
            outbox.close()
    pipeline.stage_ms["publish"] = arrivals.publish_ms()
    return pipeline, wall, arrivals.eou_to_publish(port is not None)


async def _subscribe(cfg: Config, arrivals: _Arrivals) -> None:
    import aiomqtt

    topic = f"{cfg.mqtt.prefix}/{cfg.device_id}/sentiment"
    async with aiomqtt.Client("127.0.0.1", cfg.mqtt.port) as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            arrivals.arrived[json.loads(message.payload)["id"]] = time.monotonic()


async def _wait_for(done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@contextmanager
def _broker():
    """A private Mosquitto on a free loopback port, or None when it is not installed."""
    exe = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    if exe is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _duration(media: str) -> float:
    with av.open(media) as c:
        return (c.duration or 0) / av.time_base


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def _ratio(baseline: object, ours: object) -> float:
    return round(float(baseline) / float(ours), 2) if ours else float("nan")


def _model_sizes() -> dict[str, float]:
    from edge_msa.models import SHIPPED, model_dir, whisper_dir

    # The files the runtime loads: the FP32 expression model is only a reference.
    sizes = {
        name: sum(f.stat().st_size for f in model_dir(name).glob("*.onnx") if ".fp32" not in f.name)
        for name in SHIPPED
    }
    sizes["whisper"] = (whisper_dir() / "model.bin").stat().st_size
    return {k: round(v / 2**20, 2) for k, v in sorted(sizes.items())}


def format_report(report: dict[str, object]) -> str:
    width = max(len(k) for k in report)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in report.items())
