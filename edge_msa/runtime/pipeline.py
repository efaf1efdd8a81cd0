"""The streaming runtime: sources -> VAD -> analysis -> sinks.

One asyncio task per stage, bounded queues between them. Sources run in
their own threads; audio is never dropped (a file source waits for room in
the queue), video frames may be (the newest wins). VAD and the models run in
single-thread executors so the event loop only moves data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from edge_msa import __version__
from edge_msa.config import Config
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.result import build_result
from edge_msa.publishing.sinks import JsonlSink
from edge_msa.runtime.analyzer import Analyzer
from edge_msa.sources.base import Source, SourceError
from edge_msa.types import AudioChunk, SentimentResult, Utterance, VideoFrame

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        sources: list[Source],
        segmenter,
        analyzer: Analyzer,
        outbox: Outbox | None,
        sinks: list[JsonlSink],
        model_name: str,
    ) -> None:
        self.cfg = cfg
        self.sources = sources
        self.segmenter = segmenter
        self.analyzer = analyzer
        self.outbox = outbox
        self.sinks = sinks
        self.model_name = model_name
        self.publisher = (
            MqttPublisher(cfg.mqtt, cfg.device_id, outbox, self.status)
            if outbox is not None
            else None
        )
        self.errors: list[str] = []
        self.results: list[SentimentResult] = []
        self.frames = 0
        self.source_state = {s.name: "starting" for s in sources}
        self.started = time.time()
        self._stop = threading.Event()
        self._vad_pool = ThreadPoolExecutor(1, thread_name_prefix="vad")
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="models")

    def request_stop(self) -> None:
        """Stop the sources; what was heard so far is still analysed and delivered."""
        self._stop.set()

    async def run(self) -> int:
        """Returns 0, or 1 when a source broke before its end."""
        audio_q: asyncio.Queue[AudioChunk | None] = asyncio.Queue(maxsize=64)
        utt_q: asyncio.Queue[Utterance | None] = asyncio.Queue(maxsize=16)
        if self.publisher is not None:
            self.publisher.start()
        n_audio = sum(1 for s in self.sources if s.has_audio)
        stages = [
            asyncio.create_task(self._segment(audio_q, utt_q, n_audio), name="segment"),
            asyncio.create_task(self._analyse(utt_q), name="analyse"),
        ]
        await asyncio.gather(*(self._run_source(s, audio_q) for s in self.sources))
        await asyncio.gather(*stages)
        await self._finish()
        return 1 if self.errors else 0

    async def _run_source(self, src: Source, audio_q: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()

        def emit(item: AudioChunk | VideoFrame) -> None:
            if isinstance(item, AudioChunk):
                asyncio.run_coroutine_threadsafe(audio_q.put(item), loop).result()
            else:
                loop.call_soon_threadsafe(self._on_frame, item)

        self.source_state[src.name] = "up"
        try:
            await asyncio.to_thread(src.run, emit, self._stop)
            self.source_state[src.name] = "ended"
        except SourceError as e:
            self._fail(src, str(e))
        except Exception as e:  # a bug or an unforeseen device error: say it, keep results
            log.debug("source crashed", exc_info=True)
            self._fail(src, f"{src.name} failed: {type(e).__name__}: {e}")
        finally:
            if src.has_audio:
                await audio_q.put(None)

    def _fail(self, src: Source, message: str) -> None:
        log.error("%s", message)
        self.errors.append(message)
        self.source_state[src.name] = "error"

    def _on_frame(self, frame: VideoFrame) -> None:
        # v0 has no vision encoder yet: frames are counted, not kept.
        self.frames += 1

    async def _segment(self, audio_q: asyncio.Queue, utt_q: asyncio.Queue, n_audio: int) -> None:
        loop = asyncio.get_running_loop()
        ended = 0
        while ended < n_audio:
            chunk = await audio_q.get()
            if chunk is None:
                ended += 1
                continue
            for utt in await loop.run_in_executor(self._vad_pool, self.segmenter.push, chunk):
                await utt_q.put(utt)
        for utt in self.segmenter.flush():
            await utt_q.put(utt)
        await utt_q.put(None)

    async def _analyse(self, utt_q: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while (utt := await utt_q.get()) is not None:
            analysis = await loop.run_in_executor(self._model_pool, self.analyzer.analyse, utt)
            latency = dict(analysis.latency_ms)
            latency["total"] = (time.monotonic() - utt.closed_at) * 1000.0
            transcript = analysis.transcript
            result = build_result(
                analysis.estimate,
                self.cfg.device_id,
                self.started + utt.t0,
                self.started + utt.t1,
                latency,
                self.model_name,
                transcript.text if transcript and self.cfg.output.include_transcript else None,
            )
            self._deliver(result, utt)

    def _deliver(self, result: SentimentResult, utt: Utterance) -> None:
        payload = result.to_payload()
        if self.outbox is not None:
            self.outbox.add(result.id, json.dumps(payload))
            self.publisher.notify()
        for sink in self.sinks:
            sink.write(payload)
        self.results.append(result)
        log.info(
            "utterance %.2f-%.2f s: score %+.2f ± %.2f (%s), text %s, %.0f ms",
            utt.t0, utt.t1, result.score, result.uncertainty, result.polarity,
            result.modalities["text"], result.latency_ms["total"],
        )

    async def _finish(self) -> None:
        for sink in self.sinks:
            sink.close()
        self._vad_pool.shutdown(wait=False)
        self._model_pool.shutdown(wait=False)
        if self.publisher is None:
            return
        left = await self.publisher.stop(self.cfg.runtime.flush_timeout_s)
        if left:
            log.warning(
                "%d result(s) not yet delivered stay in the outbox %s; they go out first at "
                "the next start, or with `edge-msa outbox flush`",
                left, self.outbox.path,
            )

    def status(self) -> dict[str, object]:
        return {
            "version": __version__,
            "device_id": self.cfg.device_id,
            "started": self.started,
            "sources": dict(self.source_state),
            "results": len(self.results),
            "frames": self.frames,
            "transcribe": self.cfg.asr.enabled,
        }
