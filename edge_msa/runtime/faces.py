"""The face stage's task: frames in, a timestamped track of faces out.

Frames are analysed in the face stage's own thread, never on the event
loop. A frame the stage fails on is recorded as failed (vision is absent
for the stretch it covers); a run of failures is logged once, when it
starts, and once more when frames are analysed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol

from edge_msa.runtime.face_track import FaceTrack
from edge_msa.runtime.feeds import until_ended
from edge_msa.runtime.supervisor import tell
from edge_msa.types import FaceObservation, VideoFrame

log = logging.getLogger(__name__)


class FaceStage(Protocol):
    timings: dict[str, float]  # the last frame's milliseconds per step

    def process(self, frame: VideoFrame) -> FaceObservation | None: ...


class FaceAnalysis:
    def __init__(
        self,
        face_stage: FaceStage | None,
        pool: Executor,
        lossless: bool,
        sequential: bool,
        record: Callable[[str, float], None],
        listeners: list,
    ) -> None:
        self.stage = face_stage
        self.pool = pool
        self.lossless = lossless
        # The bench's naive baseline: frames held, analysed only after their speech.
        self.sequential = sequential
        self.record = record
        self.listeners = listeners
        self.track = FaceTrack()
        self.t = float("-inf")  # capture time of the newest frame the stage is done with
        self.done = asyncio.Event()  # set when the face stage has caught up or ended
        self.analysed = 0
        self.dropped = 0  # frames skipped while speech was being recognised
        self.last_error: Exception | None = None  # the face stage's latest failure
        self._failed_in_row = 0
        self._held: deque[VideoFrame] = deque(maxlen=3000)

    async def run(
        self,
        video_q: asyncio.Queue,
        producers: int,
        hearing: Callable[[], bool],
        after_frame: Callable[[], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        async for frame in until_ended(video_q, producers):
            if self.sequential:
                self._held.append(frame)
                continue
            if hearing() and not self.lossless:
                # Speech is being recognised: it gets both cores. The frame is
                # past the end of the utterance being heard, so it loses nothing.
                self.dropped += 1
                self._caught_up(frame.t)
                continue
            obs, ms, error = await loop.run_in_executor(self.pool, self.analyse_frame, frame)
            self.add(frame.t, obs, ms, error)
            if error is None:
                for listener in self.listeners:
                    tell(listener, "frame", frame, obs)
            self._caught_up(frame.t)
            after_frame()
        self._caught_up(float("inf"))

    def _caught_up(self, t: float) -> None:
        self.t = t
        self.done.set()

    def analyse_frame(
        self, frame: VideoFrame
    ) -> tuple[FaceObservation | None, dict[str, float], Exception | None]:
        """The face stage on one frame (in its thread): the face, ms per step, the error."""
        assert self.stage is not None
        t = time.perf_counter()
        try:
            obs = self.stage.process(frame)
        except Exception as e:  # one bad frame must not stop the runtime
            return None, {}, e
        return obs, {"face": (time.perf_counter() - t) * 1000.0, **self.stage.timings}, None

    def add(
        self, t: float, obs: FaceObservation | None, ms: dict[str, float], error: Exception | None
    ) -> None:
        """Record one frame's outcome (on the loop)."""
        if error is not None:
            self.track.add_failure(t)
            self._failed(t, error)
            return
        if self._failed_in_row:
            log.info("face stage works again after %d failed frame(s)", self._failed_in_row)
            self._failed_in_row = 0
        for step, value in ms.items():
            self.record(step, value)
        self.analysed += 1
        self.track.add(t, obs)

    def _failed(self, t: float, error: Exception) -> None:
        self._failed_in_row += 1
        self.last_error = error
        if self._failed_in_row == 1:
            log.error(
                "face stage failed on the frame at %.2f s (%s: %s); vision is absent while it "
                "fails", t, type(error).__name__, error,
            )
            log.debug("face stage failure", exc_info=error)

    def held(self, t0: float, t1: float) -> list:
        """The naive baseline: an utterance's frames, analysed only now (in the pool)."""
        done = []
        while self._held and self._held[0].t <= t1:
            frame = self._held.popleft()
            if frame.t >= t0:
                done.append((frame.t, *self.analyse_frame(frame)))
        return done

    async def wait_for(self, t1: float, video_ended: Callable[[], bool]) -> None:
        """Let the face stage reach ``t1`` before an utterance is summarised.

        From a file it must (every sampled frame is analysed); from a live
        camera we wait at most a frame or two, never holding up the result.
        """
        if self.stage is None:
            return
        deadline = None if self.lossless else time.monotonic() + 0.2
        while self.t < t1 and not video_ended():
            self.done.clear()
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                await asyncio.wait_for(self.done.wait(), timeout)
            except asyncio.TimeoutError:
                return
