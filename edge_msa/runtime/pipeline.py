"""The streaming runtime: sources -> VAD / face stage -> analysis -> sinks.

One asyncio task per stage, bounded queues between them. Sources run in
their own threads. Audio is never dropped (a file source waits for room in
the queue). Video frames are thinned to ``vision.max_fps`` by capture time;
from live sources the newest frame wins when the face stage is busy, so a
slow face path never holds up audio. A file played as fast as possible keeps
every sampled frame (the source waits), so file runs are reproducible. The
VAD, the face stage and the utterance models each run in a single-thread
executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from edge_msa import __version__
from edge_msa.config import Config
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.result import build_result
from edge_msa.publishing.sinks import JsonlSink
from edge_msa.runtime.analyzer import Analysis, Analyzer, Heard
from edge_msa.runtime.face_track import FaceTrack
from edge_msa.sources.base import Source, SourceError
from edge_msa.types import (
    SAMPLE_RATE,
    AudioChunk,
    FaceObservation,
    SentimentResult,
    Utterance,
    VideoFrame,
)

log = logging.getLogger(__name__)

# Stage timings kept per stage: enough for percentiles, bounded for months-long runs.
STAGE_MS_KEEP = 10_000


class FaceStage(Protocol):
    timings: dict[str, float]  # the last frame's milliseconds per step

    def process(self, frame: VideoFrame) -> FaceObservation | None: ...


class PipelineListener:
    """Watches the pipeline from the event loop (metrics, preview).

    Called inline on the loop, so a listener must return at once: hand
    anything slow (encoding, I/O) to its own thread.
    """

    def stage(self, name: str, ms: float) -> None:
        """One call of stage ``name`` took ``ms`` milliseconds."""

    def frame(self, frame: VideoFrame, face: FaceObservation | None) -> None:
        """A frame went through the face stage."""

    def result(self, result: SentimentResult) -> None:
        """A result was handed to the sinks."""


@dataclass(frozen=True)
class Span:
    """The stretch of stream time a result is about."""

    t0: float
    t1: float
    closed_at: float  # time.monotonic() when it was closed


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
        face_stage: FaceStage | None = None,
        sequential: bool = False,
    ) -> None:
        self.cfg = cfg
        self.sources = sources
        self.segmenter = segmenter
        self.analyzer = analyzer
        self.face_stage = face_stage
        self.outbox = outbox
        self.sinks = sinks
        self.model_name = model_name
        self.publisher = (
            MqttPublisher(cfg.mqtt, cfg.device_id, outbox, self.status)
            if outbox is not None
            else None
        )
        self.track = FaceTrack()
        self.errors: list[str] = []
        self.results = 0  # results handed to the sinks (a count: a list would grow forever)
        self.frames = 0
        self.frames_analysed = 0
        self.frames_dropped = 0  # live frames replaced by a newer one while the face stage was busy
        self.listeners: list[PipelineListener] = []
        # Milliseconds of the last STAGE_MS_KEEP calls of each stage, for `edge-msa bench`.
        self.stage_ms: dict[str, deque[float]] = defaultdict(
            lambda: deque(maxlen=STAGE_MS_KEEP)
        )
        self.source_state = {s.name: "starting" for s in sources}
        self.started = time.time()
        # Lossless video only for a file played as fast as it decodes.
        self.lossless_video = not cfg.source.realtime and not any(
            getattr(s, "live", True) for s in sources
        )
        self._face_t = float("-inf")  # capture time of the newest analysed frame
        self._face_done = asyncio.Event()  # set when the face stage has caught up or ended
        self._last_result_t = float("-inf")
        # Stream time the VAD has heard up to (inf: no audio, or all of it heard).
        self._heard_until = float("-inf")
        self._in_speech = False
        # The utterance recognised ahead of its close: its key and its future.
        self._draft: tuple[tuple[float, float, int], asyncio.Future[Heard]] | None = None
        self._hearing = 0  # recognition passes started and not yet done
        self.drafts = {"started": 0, "used": 0}  # for `edge-msa bench`: work done in vain
        self._stop = threading.Event()
        # One thread per stage. ``sequential`` is the bench's naive baseline: one
        # thread for everything, and an utterance's frames analysed only after
        # its speech, one stage after the other.
        self.sequential = sequential
        self._held: deque[VideoFrame] = deque(maxlen=3000)
        one = ThreadPoolExecutor(1, thread_name_prefix="stages") if sequential else None
        self._pools = {
            name: one or ThreadPoolExecutor(1, thread_name_prefix=name)
            for name in ("vad", "face", "models")
        }

    def request_stop(self) -> None:
        """Stop the sources; what was heard so far is still analysed and delivered."""
        self._stop.set()

    async def run(self) -> int:
        """Returns 0, or 1 when a source broke before its end."""
        audio_q: asyncio.Queue[AudioChunk | None] = asyncio.Queue(maxsize=64)
        video_q: asyncio.Queue[VideoFrame | None] = asyncio.Queue(maxsize=2)
        utt_q: asyncio.Queue[tuple[Utterance, asyncio.Future | None] | None] = asyncio.Queue(16)
        if self.publisher is not None:
            self.publisher.start()
        n_audio = sum(1 for s in self.sources if s.has_audio)
        if not n_audio:
            self._heard_until = float("inf")
        n_video = sum(1 for s in self.sources if s.has_video)
        stages = [
            asyncio.create_task(self._segment(audio_q, utt_q, n_audio), name="segment"),
            asyncio.create_task(self._faces(video_q, n_video), name="faces"),
            asyncio.create_task(self._analyse(utt_q), name="analyse"),
        ]
        await asyncio.gather(*(self._run_source(s, audio_q, video_q) for s in self.sources))
        await asyncio.gather(*stages)
        await self._finish()
        return 1 if self.errors else 0

    # -- sources -----------------------------------------------------------

    async def _run_source(self, src: Source, audio_q: asyncio.Queue, video_q: asyncio.Queue):
        loop = asyncio.get_running_loop()
        min_gap = 1.0 / self.cfg.vision.max_fps
        next_frame_t = float("-inf")

        def emit(item: AudioChunk | VideoFrame) -> None:
            nonlocal next_frame_t
            if isinstance(item, AudioChunk):
                asyncio.run_coroutine_threadsafe(audio_q.put(item), loop).result()
                return
            self.frames += 1
            if self.face_stage is None or item.t < next_frame_t:
                return
            next_frame_t = item.t + min_gap * 0.95  # slack for jittery capture times
            if self.lossless_video:
                asyncio.run_coroutine_threadsafe(video_q.put(item), loop).result()
            else:
                loop.call_soon_threadsafe(self._put_newest, video_q, item)

        def on_state(state: str) -> None:  # from the source's thread
            loop.call_soon_threadsafe(self._set_source_state, src, state)

        self.source_state[src.name] = "up"
        try:
            await asyncio.to_thread(src.run, emit, self._stop, on_state)
            self.source_state[src.name] = "ended"
        except SourceError as e:
            self._fail(src, str(e))
        except Exception as e:  # a bug or an unforeseen device error: say it, keep results
            log.debug("source crashed", exc_info=True)
            self._fail(src, f"{src.name} failed: {type(e).__name__}: {e}")
        finally:
            if src.has_audio:
                await audio_q.put(None)
            if src.has_video:
                await video_q.put(None)

    def _set_source_state(self, src: Source, state: str) -> None:
        """A running source lost its device or stream, or has it back."""
        if self.source_state[src.name] in ("ended", "error", state):
            return
        self.source_state[src.name] = state
        if self.publisher is not None:
            self.publisher.status_changed()

    def _fail(self, src: Source, message: str) -> None:
        log.error("%s", message)
        self.errors.append(message)
        self.source_state[src.name] = "error"

    # -- stages ------------------------------------------------------------

    async def _segment(self, audio_q: asyncio.Queue, utt_q: asyncio.Queue, n_audio: int) -> None:
        loop = asyncio.get_running_loop()
        async for chunk in _until_ended(audio_q, n_audio):
            t = time.perf_counter()
            closed = await loop.run_in_executor(self._pools["vad"], self.segmenter.push, chunk)
            self._record("vad", (time.perf_counter() - t) * 1000.0)
            for utt in closed:
                await self._put_utterance(utt_q, utt)
            # Read here, on the loop, once the closed utterances are queued: the
            # segmenter itself changes in the VAD's thread.
            self._in_speech = self.segmenter.in_speech
            self._heard_until = chunk.t + len(chunk.samples) / SAMPLE_RATE
            self._start_draft()
            self._maybe_face_only()
        for utt in self.segmenter.flush():
            await self._put_utterance(utt_q, utt)
        self._heard_until, self._in_speech = float("inf"), False
        await utt_q.put(None)

    async def _put_utterance(self, utt_q: asyncio.Queue, utt: Utterance) -> None:
        # Speech counts as a result for the face-only interval as soon as it is cut.
        self._last_result_t = max(self._last_result_t, utt.t1)
        draft, self._draft = self._draft, None
        if draft is not None and draft[0] != _key(utt):
            draft[1].cancel()  # outdated by speech that went on
            draft = None
        self.drafts["used"] += draft is not None
        await utt_q.put((utt, draft[1] if draft else None))

    def _start_draft(self) -> None:
        """Recognise the utterance the pause under way would close, during the hangover.

        Live and paced runs only: a file read as fast as it decodes has no
        hangover to hide the work in. A draft that speech outdates is dropped.
        """
        if self.lossless_video or not self.cfg.asr.early_start:
            return
        utt = self.segmenter.draft()
        if utt is None or (self._draft is not None and self._draft[0] == _key(utt)):
            return
        if self._draft is not None:
            self._draft[1].cancel()  # only stops it if it has not started
        self._draft = (_key(utt), self._hear(utt))
        self.drafts["started"] += 1

    def _hear(self, utt: Utterance) -> asyncio.Future[Heard]:
        self._hearing += 1
        heard = asyncio.get_running_loop().run_in_executor(
            self._pools["models"], self.analyzer.hear, utt.audio
        )
        heard.add_done_callback(self._heard)
        return heard

    def _heard(self, _: asyncio.Future) -> None:
        self._hearing -= 1

    async def _faces(self, video_q: asyncio.Queue, n_video: int) -> None:
        loop = asyncio.get_running_loop()
        async for frame in _until_ended(video_q, n_video):
            if self.sequential:
                self._held.append(frame)
                continue
            if self._hearing and not self.lossless_video:
                # Speech is being recognised: it gets both cores. The frame is
                # past the end of the utterance being heard, so it loses nothing.
                self.frames_dropped += 1
                self._face_t = frame.t
                self._face_done.set()
                continue
            obs, ms = await loop.run_in_executor(self._pools["face"], self._analyse_frame, frame)
            self._add_face(frame.t, obs, ms)
            for listener in self.listeners:
                listener.frame(frame, obs)
            self._face_t = frame.t
            self._face_done.set()
            self._maybe_face_only()
        self._face_t = float("inf")
        self._face_done.set()

    def _analyse_frame(self, frame: VideoFrame) -> tuple[FaceObservation | None, dict]:
        """The face stage on one frame (in its thread), and its ms per step."""
        t = time.perf_counter()
        try:
            obs = self.face_stage.process(frame)
        except Exception as e:  # one bad frame must not stop the runtime
            log.warning("face stage failed on a frame at %.2f s: %s", frame.t, e)
            obs = None
        return obs, {"face": (time.perf_counter() - t) * 1000.0, **self.face_stage.timings}

    def _add_face(self, t: float, obs: FaceObservation | None, ms: dict[str, float]) -> None:
        for step, value in ms.items():
            self._record(step, value)
        self.frames_analysed += 1
        self.track.add(t, obs)

    def _held_faces(self, t0: float, t1: float) -> list[tuple[float, FaceObservation | None, dict]]:
        """The naive baseline: an utterance's frames, analysed only now."""
        done = []
        while self._held and self._held[0].t <= t1:
            frame = self._held.popleft()
            if frame.t >= t0:
                done.append((frame.t, *self._analyse_frame(frame)))
        return done

    def _maybe_face_only(self) -> None:
        """Nobody spoke for a while but a face is in view: publish what it shows.

        Only up to where both streams have been analysed: from a file the face
        stage can run ahead of the VAD, which alone knows whether anyone spoke.
        A file that has ended (or broke) still has audio queued for the VAD, so
        its clock counts until the VAD has heard it all (then it is inf); only a
        lost device stops the audio clock, and then the frames go on alone.
        """
        audio_up = any(
            self.source_state[s.name] in ("up", "ended", "error")
            for s in self.sources
            if s.has_audio
        )
        t = min(self._face_t, self._heard_until) if audio_up else self._face_t
        interval = self.cfg.vision.visual_interval_s
        if not interval or math.isinf(t):
            return
        if self._last_result_t == float("-inf"):
            self._last_result_t = t  # the first interval starts with the first frame
        if (audio_up and self._in_speech) or t - self._last_result_t < interval:
            return
        span = Span(max(t - interval, self._last_result_t), t, time.monotonic())
        self._last_result_t = t
        face = self.track.summary(span.t0, span.t1, self.cfg.vision.min_face_ratio)
        if face is not None:
            self._deliver(self.analyzer.face_only(face), span)

    async def _analyse(self, utt_q: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        models = self._pools["models"]
        while (item := await utt_q.get()) is not None:
            utt, heard = item
            if heard is None:
                heard = self._hear(utt)
            if self.sequential:
                await heard
                for face_args in await loop.run_in_executor(
                    models, self._held_faces, utt.t0, utt.t1
                ):
                    self._add_face(*face_args)
            else:
                await self._wait_for_faces(utt.t1)
            face = self.track.summary(utt.t0, utt.t1, self.cfg.vision.min_face_ratio)
            analysis = await loop.run_in_executor(models, self.analyzer.fuse, await heard, face)
            self._deliver(analysis, Span(utt.t0, utt.t1, utt.closed_at))

    async def _wait_for_faces(self, t1: float) -> None:
        """Let the face stage reach the utterance's end before it is summarised.

        From a file it must (every sampled frame is analysed); from a live
        camera we wait at most a frame or two, never holding up the result.
        """
        if self.face_stage is None:
            return
        deadline = None if self.lossless_video else time.monotonic() + 0.2
        while self._face_t < t1 and not all(v == "ended" for v in self._video_states()):
            self._face_done.clear()
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                await asyncio.wait_for(self._face_done.wait(), timeout)
            except asyncio.TimeoutError:
                return

    def _video_states(self) -> list[str]:
        return [self.source_state[s.name] for s in self.sources if s.has_video] or ["ended"]

    # -- results -----------------------------------------------------------

    def _deliver(self, analysis: Analysis, span: Span) -> None:
        latency = dict(analysis.latency_ms)
        latency["total"] = (time.monotonic() - span.closed_at) * 1000.0
        for stage, ms in latency.items():
            self._record(stage, ms)
        transcript = analysis.transcript
        result = build_result(
            analysis.estimate,
            self.cfg.device_id,
            self.started + span.t0,
            self.started + span.t1,
            latency,
            self.model_name,
            analysis.outputs,
            transcript.text if transcript and self.cfg.output.include_transcript else None,
        )
        payload = result.to_payload()
        self._store(result.id, payload)
        for sink in self.sinks:
            sink.write(payload)
        self.results += 1
        for listener in self.listeners:
            listener.result(result)
        log.info(
            "result %.2f-%.2f s: score %+.2f ± %.2f (%s), text %s, audio %s, vision %s, %.0f ms",
            span.t0, span.t1, result.score, result.uncertainty, result.polarity,
            *result.modalities.values(), latency["total"],
        )

    def _record(self, stage: str, ms: float) -> None:
        self.stage_ms[stage].append(ms)
        for listener in self.listeners:
            listener.stage(stage, ms)

    def _put_newest(self, q: asyncio.Queue, item: VideoFrame) -> None:
        """Drop the oldest waiting frame rather than fall behind."""
        if q.full():
            q.get_nowait()
            self.frames_dropped += 1
        q.put_nowait(item)

    def _store(self, id: str, payload: dict[str, object]) -> None:
        if self.outbox is None:
            return
        # Never fails: an unwritable outbox keeps the result in memory (and says so).
        self.outbox.add(id, json.dumps(payload))
        self.publisher.notify()

    async def _finish(self) -> None:
        for sink in self.sinks:
            sink.close()
        for pool in self._pools.values():
            pool.shutdown(wait=False)
        if self.publisher is None:
            return
        left = await self.publisher.stop(self.cfg.runtime.flush_timeout_s)
        self.outbox.persist()  # a last try for results held in memory
        lost = self.outbox.memory_ids()
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

    def status(self) -> dict[str, object]:
        return {
            "version": __version__,
            "device_id": self.cfg.device_id,
            "started": self.started,
            "sources": dict(self.source_state),
            "results": self.results,
            "frames": self.frames,
            "frames_analysed": self.frames_analysed,
            "frames_dropped": self.frames_dropped,
            "transcribe": self.cfg.asr.enabled,
        }


def _key(utt: Utterance) -> tuple[float, float, int]:
    return utt.t0, utt.t1, len(utt.audio)


async def _until_ended(q: asyncio.Queue, sources: int):
    """The items of ``q`` until each of ``sources`` producers has sent its None."""
    ended = 0
    while ended < sources:
        item = await q.get()
        if item is None:
            ended += 1
        else:
            yield item

