"""Sources into the pipeline: each source runs in its own thread and hands
its chunks and frames to the stages' queues on the event loop.

Audio is never dropped: a source thread waits for room in the audio queue.
Video frames are thinned to ``vision.max_fps`` by capture time; from live
sources the newest frame wins when the face stage is busy, so a slow face
path never holds up audio. A file played as fast as possible keeps every
sampled frame (the source waits), so file runs are reproducible.

No hand-off waits forever: when the run is aborted (a stage died, or failed
too often) the stages no longer take items, so a waiting source thread gives
its item up, sees the stop request and returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from edge_msa.runtime.health import VAD, Progress
from edge_msa.runtime.listen import Listen
from edge_msa.sources.base import Source, SourceError
from edge_msa.types import AudioChunk, VideoFrame

log = logging.getLogger(__name__)

HANDOFF_POLL_S = 0.1  # how often a waiting source thread looks for an abort


class Muted:
    """In the audio queue: listening turned OFF, the utterance in flight ends here
    (what was heard before is still analysed; nothing after it is kept)."""


MUTED = Muted()


class SourceFeeds:
    """Runs the sources; owns the queues into the stages and each source's state."""

    def __init__(
        self,
        sources: list[Source],
        max_fps: float,
        want_frames: bool,
        lossless_video: bool,
        on_state_change: Callable[[], None],
        listen: Listen | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.sources = sources
        self.listen = listen or Listen()  # muted: chunks and frames are dropped on arrival
        self.progress = progress or Progress()
        self.min_gap = 1.0 / max_fps
        self.want_frames = want_frames  # False: no face stage, frames are only counted
        self.lossless_video = lossless_video
        self.on_state_change = on_state_change
        self.state = {s.name: "starting" for s in sources}
        self.errors: list[str] = []
        self.frames = 0
        self.frames_dropped = 0  # live frames replaced by a newer one while the face stage was busy
        self.stop = threading.Event()  # sources stop; what they handed on is still analysed
        self.aborted = threading.Event()  # the stages are gone: hand-offs give up
        self._aborted = asyncio.Event()  # the same, for waits on the event loop
        self.audio_q: asyncio.Queue[AudioChunk | Muted | None] = asyncio.Queue(maxsize=64)
        self._pending: set[asyncio.Future] = set()  # hand-offs of MUTED waiting for room
        self.video_q: asyncio.Queue[VideoFrame | None] = asyncio.Queue(maxsize=2)

    @property
    def n_audio(self) -> int:
        return sum(1 for s in self.sources if s.has_audio)

    @property
    def n_video(self) -> int:
        return sum(1 for s in self.sources if s.has_video)

    def abort(self) -> None:
        """Stop the sources and let every waiting hand-off go (call on the loop)."""
        self.stop.set()
        self.aborted.set()
        self._aborted.set()

    async def run(self) -> None:
        """Until every source has ended (or broke, or was stopped)."""
        loop = asyncio.get_running_loop()

        def listen_changed(on: bool) -> None:  # in whichever thread changed it
            if not on and self.n_audio:
                loop.call_soon_threadsafe(self._put_muted)

        self.listen.on_change.append(listen_changed)
        try:
            await asyncio.gather(*(self._run_source(s) for s in self.sources))
        finally:
            self.listen.on_change.remove(listen_changed)

    def _put_muted(self) -> None:
        """After the chunks already queued: they were heard before the mute."""
        try:
            self.audio_q.put_nowait(MUTED)
        except asyncio.QueueFull:
            task = asyncio.ensure_future(self.unless_aborted(self.audio_q.put(MUTED)))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _run_source(self, src: Source) -> None:
        loop = asyncio.get_running_loop()
        next_frame_t = float("-inf")

        def emit(item: AudioChunk | VideoFrame) -> None:  # in the source's thread
            nonlocal next_frame_t
            if not self.listen.admits():  # muted: nothing is analysed or kept
                return
            if isinstance(item, AudioChunk):
                self.progress.arrived(VAD)  # work for the VAD, for the stall check
                self._put_from_thread(self.audio_q, item, loop)
                return
            self.frames += 1
            if not self.want_frames or item.t < next_frame_t:
                return
            next_frame_t = item.t + self.min_gap * 0.95  # slack for jittery capture times
            if self.lossless_video:
                self._put_from_thread(self.video_q, item, loop)
            else:
                loop.call_soon_threadsafe(self._put_newest, item)

        def on_state(state: str) -> None:  # from the source's thread
            loop.call_soon_threadsafe(self._set_state, src, state)

        self.state[src.name] = "up"
        try:
            await asyncio.to_thread(src.run, emit, self.stop, on_state)
            self.state[src.name] = "ended"
        except SourceError as e:
            self._fail(src, str(e))
        except Exception as e:  # a bug or an unforeseen device error: say it, keep results
            log.debug("source crashed", exc_info=True)
            self._fail(src, f"{src.name} failed: {type(e).__name__}: {e}")
        finally:
            # The stages count their producers' ends; after an abort nobody listens.
            if src.has_audio:
                await self.unless_aborted(self.audio_q.put(None))
            if src.has_video:
                await self.unless_aborted(self.video_q.put(None))

    def _put_from_thread(self, q: asyncio.Queue, item: object, loop) -> None:
        """Wait (in the source's thread) until ``q`` takes ``item``, or the run is aborted."""
        if self.aborted.is_set():
            return
        future = asyncio.run_coroutine_threadsafe(q.put(item), loop)
        while True:
            try:
                future.result(HANDOFF_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                if self.aborted.is_set() or loop.is_closed():
                    future.cancel()  # a put still waiting for room puts nothing
                    return
            except concurrent.futures.CancelledError:
                return

    async def unless_aborted(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """Await ``coro`` unless the run is aborted first (it is then cancelled);
        True when it completed."""
        task = asyncio.ensure_future(coro)
        if self._aborted.is_set():
            task.cancel()
            return False
        stop = asyncio.ensure_future(self._aborted.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
        return task.done() and not task.cancelled()

    def _put_newest(self, item: VideoFrame) -> None:
        """Drop the oldest waiting frame rather than fall behind."""
        q = self.video_q
        if q.full():
            q.get_nowait()
            self.frames_dropped += 1
        q.put_nowait(item)

    def _set_state(self, src: Source, state: str) -> None:
        """A running source lost its device or stream, or has it back."""
        if self.state[src.name] in ("ended", "error", state):
            return
        self.state[src.name] = state
        self.on_state_change()

    def _fail(self, src: Source, message: str) -> None:
        log.error("%s", message)
        self.errors.append(message)
        self.state[src.name] = "error"

    def video_states(self) -> list[str]:
        return [self.state[s.name] for s in self.sources if s.has_video] or ["ended"]

    def audio_up(self) -> bool:
        """Whether an audio source still sets the pace (only a lost device does not)."""
        return any(
            self.state[s.name] in ("up", "ended", "error") for s in self.sources if s.has_audio
        )


async def until_ended(q: asyncio.Queue, producers: int):
    """The items of ``q`` until each of ``producers`` has sent its None."""
    ended = 0
    while ended < producers:
        item = await q.get()
        if item is None:
            ended += 1
        else:
            yield item
