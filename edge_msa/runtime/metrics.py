"""Prometheus metrics and a health endpoint for a running pipeline.

``/metrics`` serves the Prometheus text format, ``/healthz`` answers 200 only
while every source is up, no stage is stalled (:mod:`edge_msa.runtime.health`)
and, when MQTT is a sink, the broker is connected and the outbox writable
(503 otherwise, with the reasons as JSON). The HTTP server runs in its own
daemon thread; the pipeline's counters are sampled on the event loop once a
second, so the server thread never touches the pipeline, and the outbox's
depth is counted on the outbox's own thread, never on the loop.
Its own registry (not prometheus-client's global one) keeps two pipelines in
one process, as in tests, from colliding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from edge_msa import __version__
from edge_msa.config import Config
from edge_msa.runtime.health import assess
from edge_msa.runtime.pipeline import PipelineListener

if TYPE_CHECKING:
    from edge_msa.publishing.outbox import Outbox
    from edge_msa.runtime.pipeline import Pipeline
    from edge_msa.types import SentimentResult

log = logging.getLogger(__name__)

SAMPLE_EVERY_S = 1.0
# Stage latencies run from ~1 ms (VAD chunk) to seconds (Whisper on a 2-core CPU).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)


class Metrics(PipelineListener):
    def __init__(self, cfg: Config) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.cfg = cfg
        self.registry = r = CollectorRegistry()
        self.stage_seconds = Histogram(
            "edge_msa_stage_latency_seconds",
            "Time per call of a pipeline stage (total: end of utterance to result)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.results = Counter(
            "edge_msa_results", "Results handed to the sinks", ["polarity"], registry=r
        )
        self.published = Counter(
            "edge_msa_results_published", "Results acknowledged by the MQTT broker", registry=r
        )
        self.outbox_depth = Gauge(
            "edge_msa_outbox_depth", "Results waiting in the outbox for the broker", registry=r
        )
        self.frames = Counter("edge_msa_frames", "Video frames read from the sources", registry=r)
        self.frames_analysed = Counter(
            "edge_msa_frames_analysed", "Frames that went through the face stage", registry=r
        )
        self.frames_dropped = Counter(
            "edge_msa_frames_dropped",
            "Live frames replaced by a newer one while the face stage was busy",
            registry=r,
        )
        self.source_up = Gauge(
            "edge_msa_source_up", "1 while the source delivers, else 0", ["source"], registry=r
        )
        self.mqtt_connected = Gauge(
            "edge_msa_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.model_load = Gauge(
            "edge_msa_model_load_seconds", "Time to load every model at start", registry=r
        )
        self.healthy = Gauge("edge_msa_healthy", "1 when /healthz answers 200", registry=r)
        self.listening = Gauge(
            "edge_msa_listening", "1 while listening, 0 while muted (listen OFF)", registry=r
        )
        info = Gauge(
            "edge_msa_build_info",
            "Version and settings of this process",
            ["version", "device_id", "backend"],
            registry=r,
        )
        info.labels(__version__, cfg.device_id, cfg.runtime.backend).set(1)
        self.pipeline: Pipeline | None = None
        self.health: tuple[bool, dict[str, object]] = (False, {"reasons": ["loading models"]})
        self._seen = {"published": 0, "frames": 0, "frames_analysed": 0, "frames_dropped": 0}
        self._counting = False  # a count of the outbox is under way
        self._task: asyncio.Task[None] | None = None

    # -- PipelineListener (on the event loop) ----------------------------

    def stage(self, name: str, ms: float) -> None:
        self.stage_seconds.labels(name).observe(ms / 1000.0)

    def result(self, result: SentimentResult) -> None:
        self.results.labels(result.polarity).inc()

    # -- sampling --------------------------------------------------------

    def attach(self, pipeline: Pipeline, load_s: float) -> None:
        self.pipeline = pipeline
        pipeline.listeners.append(self)
        self.model_load.set(load_s)
        for name in pipeline.source_state:
            self.source_up.labels(name).set(0)
        self.sample()
        self._task = asyncio.create_task(self._sample_forever(), name="metrics")

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            try:
                self.sample()
            except Exception:  # metrics must never take the pipeline down
                log.warning("metrics sampling failed", exc_info=True)

    def sample(self) -> None:
        p = self.pipeline
        if p is None:
            return
        counts = {
            "published": p.publisher.published if p.publisher else 0,
            "frames": p.frames,
            "frames_analysed": p.frames_analysed,
            "frames_dropped": p.frames_dropped,
        }
        for key, counter in (
            ("published", self.published),
            ("frames", self.frames),
            ("frames_analysed", self.frames_analysed),
            ("frames_dropped", self.frames_dropped),
        ):
            counter.inc(max(counts[key] - self._seen[key], 0))
            self._seen[key] = counts[key]
        if p.outbox is not None:
            self._count_outbox(p.outbox)
        for name, state in p.source_state.items():
            self.source_up.labels(name).set(1 if state == "up" else 0)
        connected = p.publisher is not None and p.publisher.connected
        self.mqtt_connected.set(1 if connected else 0)
        self.listening.set(1 if p.listen.on else 0)
        healthy, body = assess(p, self.cfg)
        self.health = (healthy, body)  # one assignment: the server thread sees old or new
        self.healthy.set(1 if healthy else 0)

    def _count_outbox(self, outbox: Outbox) -> None:
        """Set the depth gauge once the outbox's thread has counted (it may be busy)."""
        if self._counting:
            return
        self._counting = True

        def counted(future) -> None:  # on the outbox's thread
            self._counting = False
            if future.exception() is None:
                self.outbox_depth.set(future.result())

        try:
            outbox.submit(outbox.count).add_done_callback(counted)
        except RuntimeError:  # closed: the run is over
            self._counting = False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` in a daemon thread."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.httpd = ThreadingHTTPServer((host, port), _handler(metrics))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", *self.httpd.server_address)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif path == "/healthz":
                ok, body = metrics.health
                data = json.dumps({"healthy": ok, **body}).encode()
                self._send(200 if ok else 503, "application/json", data)
            else:
                self._send(404, "text/plain", b"try /metrics or /healthz\n")

        def _send(self, code: int, ctype: str, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics http: " + format, *args)  # scrapes every 15 s would flood INFO

    return Handler
