"""Results out: the published message, the outbox, the local sinks, the listeners.

A result is stored in the outbox before anything else sees it, then queued
for each local sink (written by the sink's own thread, see
:mod:`edge_msa.publishing.sinks`), then shown to the listeners. Times come
from the run's one clock: a result's wall time is the anchor plus its
stream time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_msa.config import Config
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.result import build_result
from edge_msa.publishing.sinks import JsonlSink, SinkWriter
from edge_msa.runtime.analyzer import Analysis
from edge_msa.runtime.supervisor import tell
from edge_msa.sources.clock import StreamClock
from edge_msa.types import SentimentResult

log = logging.getLogger(__name__)

SINK_CLOSE_S = 5.0  # at the end, how long the local sinks get to write what waits


@dataclass(frozen=True)
class Span:
    """The stretch of stream time a result is about."""

    t0: float
    t1: float
    closed_at: float  # time.monotonic() when it was closed

    def __str__(self) -> str:
        return f"the utterance at {self.t0:.2f}-{self.t1:.2f} s"


class Delivery:
    def __init__(
        self,
        cfg: Config,
        clock: StreamClock,
        model_name: str,
        outbox: Outbox | None,
        publisher: MqttPublisher | None,
        sinks: list[JsonlSink],
        listeners: list,
        record: Callable[[str, float], None],
        on_sink_gone: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.model_name = model_name
        self.outbox = outbox
        self.publisher = publisher
        self.sinks = sinks
        self.listeners = listeners
        self.record = record
        self.on_sink_gone = on_sink_gone
        self.writers: list[SinkWriter] = []
        self.results = 0  # results handed to the sinks (a count: a list would grow forever)
        self.lost = 0  # results a local sink never got

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """One writer thread per local sink; a closed one is reported on the loop."""

        def gone(why: str) -> None:  # from the writer's thread
            loop.call_soon_threadsafe(self.on_sink_gone, why)

        self.writers = [SinkWriter(sink, gone) for sink in self.sinks]

    def deliver(self, analysis: Analysis, span: Span) -> SentimentResult:
        latency = dict(analysis.latency_ms)
        latency["total"] = (time.monotonic() - span.closed_at) * 1000.0
        for stage, ms in latency.items():
            self.record(stage, ms)
        transcript = analysis.transcript
        result = build_result(
            analysis.estimate,
            self.cfg.device_id,
            self.clock.wall(span.t0),
            self.clock.wall(span.t1),
            latency,
            self.model_name,
            analysis.outputs,
            transcript.text if transcript and self.cfg.output.include_transcript else None,
        )
        payload = result.to_payload()
        self._store(result.id, payload)
        for writer in self.writers:
            writer.write(payload)
        self.results += 1
        for listener in self.listeners:
            tell(listener, "result", result)
        log.info(
            "result %.2f-%.2f s: score %+.2f ± %.2f (%s), text %s, audio %s, vision %s, %.0f ms",
            span.t0, span.t1, result.score, result.uncertainty, result.polarity,
            *result.modalities.values(), latency["total"],
        )
        return result

    def _store(self, id: str, payload: dict[str, object]) -> None:
        if self.outbox is None or self.publisher is None:
            return
        # Never fails: an unwritable outbox keeps the result in memory (and says so).
        # On the outbox's own thread (an fsync can take a second); the publisher's
        # next read of what is pending comes after it there.
        self.outbox.add_soon(id, json.dumps(payload))
        self.publisher.notify()

    async def finish(self) -> None:
        """The local sinks write what waits; the outbox is flushed up to its deadline."""
        closing = [asyncio.to_thread(w.close, SINK_CLOSE_S) for w in self.writers]
        self.lost = sum(await asyncio.gather(*closing))
        if self.publisher is None or self.outbox is None:
            return
        left = await self.publisher.stop(self.cfg.runtime.flush_timeout_s)
        await self.outbox.call(self.outbox.persist)  # a last try for results held in memory
        lost = await self.outbox.call(self.outbox.memory_ids)
        if left > len(lost):
            log.warning(
                "%d result(s) not yet delivered stay in the outbox %s; they go out first at "
                "the next start, or with `edge-msa outbox flush`",
                left - len(lost), self.outbox.path,
            )
        if lost:
            log.error(
                "%d result(s) were neither delivered nor stored (outbox %s) and end with this "
                "process%s: %s",
                len(lost), self.outbox.problem,
                " (the local sinks have them)" if self.sinks else "", " ".join(lost),
            )
