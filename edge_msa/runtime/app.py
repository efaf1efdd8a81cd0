"""Builds the pipeline from a Config and runs it until the media ends or a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from edge_msa import __version__
from edge_msa.config import Config
from edge_msa.publishing.outbox import Outbox, OutboxError
from edge_msa.publishing.outbox_lock import RUN
from edge_msa.publishing.sinks import JsonlFileSink, JsonlSink
from edge_msa.runtime.analyzer import Analyzer
from edge_msa.runtime.health import stalls
from edge_msa.runtime.pipeline import Pipeline
from edge_msa.runtime.sdnotify import Systemd
from edge_msa.sources import SourceError, StreamClock, build_sources

log = logging.getLogger(__name__)

EXIT_USAGE = 2  # bad config, a source that cannot open, an unusable state dir


async def run(cfg: Config) -> int:
    shutdown = Shutdown()
    shutdown.install()
    # The run's one clock, before any source opens: live results are timed by
    # when their speech was captured, not by when the models finished loading.
    clock = StreamClock.start()
    try:
        sources = build_sources(cfg.source, clock)
        for src in sources:
            await asyncio.to_thread(src.open)
        outbox = open_outbox(cfg) if "mqtt" in cfg.output.sinks else None
    except (SourceError, OutboxError) as e:
        log.error("%s", e)
        return EXIT_USAGE
    if not any(s.has_audio for s in sources):
        log.warning("no audio in %s: text and audio are absent", ", ".join(s.name for s in sources))
    # Up before the models load, so that /healthz already answers (503, loading).
    try:
        metrics = start_metrics(cfg)
    except OSError as e:
        log.error(
            "metrics server cannot listen on %s:%d (%s); pick another --metrics-port",
            cfg.runtime.metrics_host, cfg.runtime.metrics_port, e.strerror or e,
        )
        return EXIT_USAGE
    try:
        return await _load_and_run(cfg, sources, outbox, metrics, shutdown, clock)
    finally:
        if metrics is not None:
            await metrics[0].stop()
            metrics[1].stop()
        if outbox is not None:
            outbox.close()


async def _load_and_run(
    cfg: Config, sources, outbox: Outbox | None, metrics, shutdown: Shutdown, clock: StreamClock
) -> int:
    log.info("loading models")
    t = time.perf_counter()
    try:
        segmenter, analyzer, face_stage, model_name = await asyncio.to_thread(
            load_models, cfg, any(s.has_video for s in sources)
        )
    except (OSError, RuntimeError, ValueError) as e:
        log.error("cannot load the models: %s", e)
        return EXIT_USAGE
    load_s = time.perf_counter() - t
    if shutdown.requested:
        log.info("stopped before the first frame was read")
        return 0
    try:
        sinks = local_sinks(cfg)
    except OSError as e:
        log.error("--output-file %s cannot be opened (%s)", cfg.output.jsonl_file,
                  e.strerror or e)
        return EXIT_USAGE
    pipeline = Pipeline(
        cfg, sources, segmenter, analyzer, outbox, sinks, model_name, face_stage, clock=clock
    )
    if metrics is not None:
        metrics[0].attach(pipeline, load_s)
    try:
        preview = start_preview(cfg, face_stage is not None)
    except OSError as e:
        log.error("--preview-out %s cannot be written (%s)", cfg.output.preview_file, e)
        return EXIT_USAGE
    if preview is not None:
        pipeline.listeners.append(preview)
    shutdown.attach(pipeline)
    log.info("models loaded in %.1f s; running", load_s)
    # READY=1 now; WATCHDOG=1 while no stage is stalled (when systemd asks for them).
    systemd = Systemd(lambda: stalls(pipeline, cfg.runtime.stall_limit_s))
    systemd.ready()
    try:
        return await pipeline.run()
    finally:
        await systemd.close()
        if preview is not None:
            await asyncio.to_thread(preview.close)


def start_preview(cfg: Config, has_faces: bool):
    """A Preview when ``--preview-out`` or a usable ``--preview`` asks for one, else None."""
    out = cfg.output
    if out.preview_file is None and not out.preview_window:
        return None
    if not has_faces:
        log.warning("preview: no frames are analysed (no video, or --no-vision); nothing to show")
        return None
    window = out.preview_window
    if window:
        from edge_msa.runtime.preview import gui_problem

        problem = gui_problem()
        if problem:
            log.warning("%s", problem)
            window = False
    if out.preview_file is None and not window:
        return None
    from edge_msa.runtime.preview import Preview

    preview = Preview(out.preview_file, cfg.vision.max_fps, window)
    preview.open()
    return preview


def start_metrics(cfg: Config):
    """(Metrics, MetricsServer) when ``runtime.metrics_port`` is set, else None."""
    if not cfg.runtime.metrics_port:
        return None
    from edge_msa.runtime.metrics import Metrics, MetricsServer

    metrics = Metrics(cfg)
    server = MetricsServer(metrics, cfg.runtime.metrics_host, cfg.runtime.metrics_port)
    server.start()
    return metrics, server


def open_outbox(cfg: Config) -> Outbox:
    # Held for the run (outbox.lock): `edge-msa outbox flush` then leaves delivery to us.
    return Outbox(Path(cfg.runtime.state_dir).expanduser() / "outbox.sqlite", lock=RUN)


def local_sinks(cfg: Config) -> list[JsonlSink]:
    sinks: list[JsonlSink] = []
    if "jsonl" in cfg.output.sinks:
        sinks.append(JsonlSink())
    if cfg.output.jsonl_file is not None:
        sinks.append(JsonlFileSink(cfg.output.jsonl_file))
    return sinks


def load_models(cfg: Config, has_video: bool = True, naive: bool = False):
    """Every model is loaded once, here, before the first frame is read.

    ``naive``: the baseline of `edge-msa bench --baseline`: FP32 speech and
    expression models, and the whole frame searched for faces every time.
    """
    from edge_msa.segmentation.segmenter import Segmenter
    from edge_msa.segmentation.vad import SileroVad

    v = cfg.vad
    segmenter = Segmenter(
        SileroVad(backend=cfg.runtime.backend),
        threshold=v.threshold,
        min_speech_ms=v.min_speech_ms,
        hangover_ms=v.hangover_ms,
        max_utterance_s=v.max_utterance_s,
        pad_ms=v.pad_ms,
    )
    backend = cfg.runtime.backend
    asr = text = voice = None
    if cfg.asr.enabled or cfg.voice.enabled:
        from edge_msa.encoders.asr import SpeechRecognizer
        from edge_msa.encoders.asr_window import FULL_WINDOW, window_policy

        a = cfg.asr
        # The naive baseline keeps Whisper's fixed 30 s window.
        window = FULL_WINDOW if naive else window_policy(a.window, a.window_margin_s,
                                                         a.window_fallback)
        asr = SpeechRecognizer(
            a.beam_size, a.threads, a.present_min_logprob, a.absent_min_no_speech, backend, naive,
            window,
        )
    if cfg.asr.enabled:
        from edge_msa.encoders import text as text_mod

        text = text_mod.TextEncoder(
            cfg.text.model_dir or text_mod.default_model_dir(), backend, cfg.text.threads
        )
    if cfg.voice.enabled:
        from edge_msa.encoders import voice as voice_mod

        voice = voice_mod.VoiceEncoder(voice_mod.default_model_dir(), backend, cfg.voice.threads)
        if asr is not None and not naive:
            warn_other_window(asr.window, voice)
    face = load_face_stage(cfg, naive) if cfg.vision.enabled and has_video else None
    from edge_msa.fusion.model import FusionModel

    fusion = FusionModel(backend=backend, threads=1)
    names = [obj.name for obj in (fusion, text, voice) if obj is not None]
    if face is not None:
        names.append(face.expression.name)
    model_name = " ".join([f"edge-msa-{__version__}", *names])
    return segmenter, Analyzer(fusion, asr, text, voice), face, model_name


def warn_other_window(window, voice) -> None:
    """The voice head and fusion model read the encoder's frames: heard through
    another window than they were trained on, their inputs shift."""
    from edge_msa.encoders.asr_window import window_settings

    if voice.asr_window is not None and window_settings(window) != voice.asr_window:
        log.warning(
            "asr.window differs from the window the voice head was trained on (%s): voice and "
            "fusion scores may be off; remove asr.window from the config to use it",
            voice.asr_window,
        )


def load_face_stage(cfg: Config, naive: bool = False):
    from edge_msa.vision.detector import FaceDetector
    from edge_msa.vision.expression import FP32_FILE, MODEL_FILE, ExpressionModel, FaceStage
    from edge_msa.vision.tracker import PrimaryFaceTracker

    backend, threads = cfg.runtime.backend, cfg.vision.threads
    return FaceStage(
        FaceDetector(backend=backend, threads=threads),
        PrimaryFaceTracker(),
        ExpressionModel(backend=backend, threads=threads, file=FP32_FILE if naive else MODEL_FILE),
        full_every=1 if naive else 5,
        align=cfg.vision.align,
    )


class Shutdown:
    """SIGTERM and SIGINT, from the start of the run.

    The first stops the sources: the utterance in flight and those queued are
    still analysed and delivered, then the outbox is flushed for up to
    ``runtime.flush_timeout_s``. Before the pipeline exists there is nothing to
    finish: it stops once the step under way (opening, loading) is done. A
    second signal exits at once with 128 + its number.
    """

    def __init__(self) -> None:
        self.requested = False
        self.pipeline: Pipeline | None = None
        self._signals = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def attach(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        if self.requested:
            pipeline.request_stop()

    def _on_signal(self, signum: int) -> None:
        # Runs on the event loop, between its callbacks: never inside an outbox
        # write. Even so the outbox (SQLite, WAL, synchronous=FULL) survives any exit.
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.warning("second signal (%s): exiting now; undelivered results stay in the "
                        "outbox for the next start", name)
            os._exit(128 + signum)
        self.requested = True
        if self.pipeline is None:
            log.info("%s: stopping once the step under way is done (again: exit now)", name)
            return
        log.info("%s: finishing the utterance in flight and flushing (again: exit now)", name)
        self.pipeline.request_stop()
