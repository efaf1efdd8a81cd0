"""The streaming runtime: sources -> VAD / face stage -> analysis -> sinks.

One asyncio task per stage, all under one :class:`Supervisor`: a failure on
one utterance costs that utterance's modality (or, for fusion, the
utterance), the same stage failing on several in a row ends the run, and a
stage that dies never leaves the others waiting. Sources run in their own
threads (:mod:`edge_msa.runtime.feeds`), frames go through
:mod:`edge_msa.runtime.faces`, an utterance's last steps are in
:mod:`edge_msa.runtime.utterance`, results go out through
:mod:`edge_msa.runtime.delivery`. The VAD, the face stage and the utterance
models (fusion included) each run in a single-thread executor, never on the
event loop. Every time is on the run's one clock (:class:`StreamClock`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor

from edge_msa import __version__
from edge_msa.config import Config
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.sinks import JsonlSink
from edge_msa.runtime.analyzer import Analyzer, Heard
from edge_msa.runtime.delivery import Delivery, Span
from edge_msa.runtime.drafts import Hearing
from edge_msa.runtime.face_track import FaceSummary
from edge_msa.runtime.faces import FaceAnalysis, FaceStage
from edge_msa.runtime.feeds import MUTED, SourceFeeds, until_ended
from edge_msa.runtime.health import RECOGNISER, VAD, Progress
from edge_msa.runtime.listen import Listen
from edge_msa.runtime.supervisor import Supervisor, tell
from edge_msa.runtime.utterance import FaceOnly, UtteranceSteps
from edge_msa.sources.base import Source
from edge_msa.sources.clock import StreamClock
from edge_msa.types import SAMPLE_RATE, FaceObservation, SentimentResult, Utterance, VideoFrame

log = logging.getLogger(__name__)

__all__ = ["FaceStage", "Pipeline", "PipelineListener", "Span"]

# Stage timings kept per stage: enough for percentiles, bounded for months-long runs.
STAGE_MS_KEEP = 10_000
# Utterances waiting for analysis before the VAD waits too (audio then waits in its queue).
MAX_QUEUED_UTTERANCES = 16


class PipelineListener:
    """Watches the pipeline from the event loop (metrics, preview).

    Called inline on the loop, so a listener must return at once: hand
    anything slow (encoding, I/O) to its own thread. One that raises is
    said once and ignored.
    """

    def stage(self, name: str, ms: float) -> None:
        """One call of stage ``name`` took ``ms`` milliseconds."""

    def frame(self, frame: VideoFrame, face: FaceObservation | None) -> None:
        """A frame went through the face stage."""

    def result(self, result: SentimentResult) -> None:
        """A result was handed to the sinks."""


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        sources: list[Source],
        segmenter,
        analyzer: Analyzer | None,
        outbox: Outbox | None,
        sinks: list[JsonlSink],
        model_name: str,
        face_stage: FaceStage | None = None,
        sequential: bool = False,
        clock: StreamClock | None = None,
    ) -> None:
        self.cfg = cfg
        self.sources = sources
        self.segmenter = segmenter
        self.analyzer = analyzer
        self.face_stage = face_stage
        self.outbox = outbox
        self.sinks = sinks
        self.model_name = model_name
        # The run's one clock; by default (a pipeline built alone) it starts now.
        self.clock = clock or StreamClock.start()
        self.started = self.clock.wall0
        # Muted or not (--listen, or the control topic when MQTT is on); each stage's progress.
        self.listen = Listen(cfg.runtime.listen, controlled=outbox is not None)
        self.progress = Progress()
        self.publisher = (
            MqttPublisher(cfg.mqtt, cfg.device_id, outbox, self.status, self.listen)
            if outbox is not None
            else None
        )
        self.listeners: list[PipelineListener] = []
        # Milliseconds of the last STAGE_MS_KEEP calls of each stage, for `edge-msa bench`.
        self.stage_ms: dict[str, deque[float]] = defaultdict(
            lambda: deque(maxlen=STAGE_MS_KEEP)
        )
        # Lossless video only for a file played as fast as it decodes.
        self.lossless_video = not cfg.source.realtime and not any(
            getattr(s, "live", True) for s in sources
        )
        # One thread per stage. ``sequential`` is the bench's naive baseline: one
        # thread for everything, and an utterance's frames analysed only after
        # its speech, one stage after the other.
        self.sequential = sequential
        one = ThreadPoolExecutor(1, thread_name_prefix="stages") if sequential else None
        self._pools = {
            name: one or ThreadPoolExecutor(1, thread_name_prefix=name)
            for name in ("vad", "face", "models", "drafts")
        }
        self.feeds = SourceFeeds(
            sources, cfg.vision.max_fps, face_stage is not None, self.lossless_video,
            self._status_changed, self.listen, self.progress,
        )
        self.source_state = self.feeds.state  # the same dict: name -> state
        self.errors = self.feeds.errors  # what makes the exit status 1
        self.faces = FaceAnalysis(
            face_stage, self._pools["face"], self.lossless_video, sequential, self._record,
            self.listeners,
        )
        self.track = self.faces.track
        self.delivery = Delivery(
            cfg, self.clock, model_name, outbox, self.publisher, sinks, self.listeners,
            self._record, self._sink_gone,
        )
        self.supervisor = Supervisor(cfg.runtime.max_consecutive_failures, self.feeds.abort)
        self.steps = UtteranceSteps(
            analyzer, self._pools["models"], self.supervisor, self.delivery
        )
        self._last_result_t = float("-inf")
        # Stream time the VAD has heard up to (inf: no audio, or all of it heard).
        self._heard_until = float("-inf")
        self._in_speech = False
        # Recognition passes: drafts started in a pause (live and paced runs
        # only: a file read as fast as it decodes has no hangover to hide them
        # in), and the real ones when an utterance closes without a usable draft.
        early = cfg.asr.early_start and not self.lossless_video and not sequential
        # Bound late: a pipeline that only publishes status has no analyzer.
        self.hearing = Hearing(
            lambda audio: analyzer.hear(audio), self._pools["drafts"], self._pools["models"],
            cfg.asr.draft_pause_ms if early else None,
        )
        self.drafts = self.hearing.counts  # for `edge-msa bench`: time bought, work in vain
        # Utterances and face-only results to analyse, in time order.
        self._jobs: asyncio.Queue[tuple[Utterance, asyncio.Future | None] | FaceOnly | None] = (
            asyncio.Queue()
        )
        self._room = asyncio.Semaphore(MAX_QUEUED_UTTERANCES)

    @property
    def results(self) -> int:
        return self.delivery.results

    @property
    def frames(self) -> int:
        return self.feeds.frames

    @property
    def frames_analysed(self) -> int:
        return self.faces.analysed

    @property
    def frames_dropped(self) -> int:
        return self.feeds.frames_dropped + self.faces.dropped

    def request_stop(self) -> None:
        """Stop the sources; what was heard so far is still analysed and delivered."""
        self.feeds.stop.set()

    async def run(self) -> int:
        """Returns 0, or 1 when a source broke, a stage failed for good or a
        local output lost results."""
        self.delivery.start(asyncio.get_running_loop())
        if self.publisher is not None:
            self.publisher.start()
        n_audio = self.feeds.n_audio
        if not n_audio:
            self._heard_until = float("inf")
        spawn = self.supervisor.spawn
        await self.supervisor.wait([
            spawn(self.feeds.run(), "sources"),
            spawn(self._segment(n_audio), "segment"),
            spawn(self._faces(), "faces"),
            spawn(self._analyse(), "analyse"),
        ])
        await self._finish()
        return 1 if self.errors or self.supervisor.ended or self.delivery.lost else 0

    def _status_changed(self) -> None:
        if self.publisher is not None:
            self.publisher.status_changed()

    def _sink_gone(self, why: str) -> None:
        """A local output closed for good (stdout's reader went away): end the run."""
        log.error("%s: stopping; what was heard is still delivered to the other outputs", why)
        self.errors.append(why)
        self.request_stop()

    # -- audio: VAD and recognition -----------------------------------------

    async def _segment(self, n_audio: int) -> None:
        loop = asyncio.get_running_loop()
        async for chunk in until_ended(self.feeds.audio_q, n_audio):
            if chunk is MUTED:  # listening turned OFF: the utterance in flight ends here
                try:
                    closed = await loop.run_in_executor(
                        self._pools["vad"], self.segmenter.flush, None, "muted"
                    )
                except Exception as e:
                    self.supervisor.failed("vad", "the mute", e, "the words before it are lost")
                    closed = []
                for utt in closed:
                    await self._put_utterance(utt)
                self.hearing.after_audio(self.segmenter)  # a draft it did not close is outdated
                self._in_speech = False
                continue
            t = time.perf_counter()
            try:
                closed = await loop.run_in_executor(self._pools["vad"], self.segmenter.push, chunk)
            except Exception as e:
                self.progress.done(VAD)
                where = f"the audio at {chunk.t:.2f} s"
                self.supervisor.failed("vad", where, e, "that audio is skipped")
                continue
            self.progress.done(VAD)
            self.supervisor.ok("vad")
            self._record("vad", (time.perf_counter() - t) * 1000.0)
            for utt in closed:
                await self._put_utterance(utt)
            # Read here, on the loop, once the closed utterances are queued: the
            # segmenter itself changes in the VAD's thread.
            self._in_speech = self.segmenter.in_speech
            self._heard_until = chunk.t + len(chunk.samples) / SAMPLE_RATE
            # A pause long enough starts a draft; speech going on outdates it.
            self.hearing.after_audio(self.segmenter)
            self._maybe_face_only()
        if n_audio:
            try:
                closed = await loop.run_in_executor(self._pools["vad"], self.segmenter.flush)
            except Exception as e:
                self.supervisor.failed("vad", "the end of the audio", e, "its last words are lost")
                closed = []
            for utt in closed:
                await self._put_utterance(utt)
            self.hearing.after_audio(self.segmenter)  # a draft it did not close is outdated
        self._heard_until, self._in_speech = float("inf"), False
        self._jobs.put_nowait(None)

    async def _put_utterance(self, utt: Utterance) -> None:
        # Speech counts as a result for the face-only interval as soon as it is cut.
        self._last_result_t = max(self._last_result_t, utt.t1)
        # Its draft, if one started in the pause and speech did not outdate it.
        heard = self.hearing.take(utt)
        await self._room.acquire()  # released when the analysis takes it
        self._jobs.put_nowait((utt, heard))
        self.progress.arrived(RECOGNISER)

    # -- faces ---------------------------------------------------------------

    async def _faces(self) -> None:
        await self.faces.run(
            self.feeds.video_q, self.feeds.n_video, self.hearing.skip_frames,
            self._maybe_face_only,
        )
        self._jobs.put_nowait(None)  # the face-only results are all queued

    def _maybe_face_only(self) -> None:
        """Nobody spoke for a while but a face is in view: queue a result from it.

        Only up to where both streams have been analysed: from a file the face
        stage can run ahead of the VAD, which alone knows whether anyone spoke.
        A file that has ended (or broke) still has audio queued for the VAD, so
        its clock counts until the VAD has heard it all (then it is inf); only a
        lost device stops the audio clock, and then the frames go on alone.
        """
        audio_up = self.feeds.audio_up()
        t = min(self.faces.t, self._heard_until) if audio_up else self.faces.t
        interval = self.cfg.vision.visual_interval_s
        if not interval or math.isinf(t):
            return
        if self._last_result_t == float("-inf"):
            self._last_result_t = t  # the first interval starts with the first frame
        if (audio_up and self._in_speech) or t - self._last_result_t < interval:
            return
        span = Span(max(t - interval, self._last_result_t), t, time.monotonic())
        self._last_result_t = t
        face = self._face(span)
        if face is not None:
            self._jobs.put_nowait(FaceOnly(span, face))

    def _face(self, span: Span) -> FaceSummary | None:
        """The face over ``span``, and whether the face stage failed on all of it."""
        if self.face_stage is not None:
            failed, given = self.faces.track.failures(span.t0, span.t1)
            if given and failed == given:
                error = self.faces.last_error or RuntimeError("failed")
                self.supervisor.failed("face stage", str(span), error, "vision is absent",
                                       logged=True)
            elif given:
                self.supervisor.ok("face stage")
        return self.faces.track.summary(span.t0, span.t1, self.cfg.vision.min_face_ratio)

    def _video_ended(self) -> bool:
        return all(v == "ended" for v in self.feeds.video_states())

    # -- analysis ------------------------------------------------------------

    async def _analyse(self) -> None:
        loop = asyncio.get_running_loop()
        models = self._pools["models"]
        # Utterances come from the VAD, face-only results from both stages: the
        # work ends when both have said they are done.
        async for job in until_ended(self._jobs, 2):
            if isinstance(job, FaceOnly):
                await self.steps.finish(Heard.nothing(), job.face, job.span)
                continue
            self._room.release()
            utt, future = job
            span = Span(utt.t0, utt.t1, utt.closed_at)
            if future is None:  # no usable draft: the real pass, never behind an outdated one
                future = self.hearing.real(utt)
            if self.sequential:
                heard = await self.steps.heard(future, span)
                for face_args in await loop.run_in_executor(
                    models, self.faces.held, utt.t0, utt.t1
                ):
                    self.faces.add(*face_args)
            else:
                await self.faces.wait_for(utt.t1, self._video_ended)
                heard = await self.steps.heard(future, span)
            await self.steps.finish(heard, self._face(span), span)
            self.progress.done(RECOGNISER)  # delivered, or dropped with a line: not stuck

    def _record(self, stage: str, ms: float) -> None:
        self.stage_ms[stage].append(ms)
        for listener in self.listeners:
            tell(listener, "stage", stage, ms)

    async def _finish(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False)
        await self.delivery.finish()

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
