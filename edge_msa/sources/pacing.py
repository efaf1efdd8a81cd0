"""A paced file's audio and video, released by their times rather than the file's order.

A container hands its streams on in its own order, not by time. The demo
stores its first 14 s of audio ahead of any video; the MP4 demuxer then
gives packets by file position while their times are within 1 s of each
other, and a frame-threaded decoder holds a few frames more: the video came
out about 1.15 s after the audio of the same instant. Paced in that order,
each item when its own time came, every frame arrived that late, and an
utterance's analysis waited for frames of its end that were still in the
file (the 200 ms of ``FaceAnalysis.wait_for`` on every utterance).

Here each decoded item waits in its stream's queue and the earliest is
released when its time comes on the run's clock, once every other stream has
an item queued (or has ended): until then decoding goes on at full speed,
since another stream may still hold something earlier. An audio chunk is
released when its last sample is due, as a microphone hands a block over; a
frame when it is due, as a camera captures it. A stream with nothing queued
holds the others up only so long: while decoding has run less than
``MAX_REORDER_S`` ahead (memory: a file decodes far faster than it plays) and
for at most ``MAX_LATE_S`` past the held item's time (a live stream comes at
its own pace: its audio must not wait long for video that stalled).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from edge_msa.sources.base import Emit
from edge_msa.types import AudioChunk, VideoFrame

# Past the MP4 demuxer's 1 s of position-first order and a decoder's few frames.
MAX_REORDER_S = 2.0
# A file's items are never that late (decoding runs ahead); a live stream's can be.
MAX_LATE_S = 0.5

Make = Callable[[], AudioChunk | VideoFrame]  # the item, built when released


class Pacer:
    """Merges the streams' items by time and releases each when it is due.

    ``due(t)`` is the ``time.monotonic()`` at which source time ``t`` is due.
    Each stream's items must be pushed in their time order (a decoder's
    output is).
    """

    def __init__(
        self,
        streams: Iterable[str],
        due: Callable[[float], float],
        emit: Emit,
        stop: threading.Event,
    ) -> None:
        self.due = due
        self.emit = emit
        self.stop = stop
        self._queues: dict[str, deque[tuple[float, Make]]] = {s: deque() for s in streams}
        self._ended: set[str] = set()
        self._newest = float("-inf")  # the latest time pushed, of any stream

    def push(self, stream: str, t: float, make: Make) -> None:
        """Queue an item due at source time ``t``; release what can go now."""
        self._queues[stream].append((t, make))
        self._newest = max(self._newest, t)
        self._release()

    def end(self) -> None:
        """Every stream has ended: release the rest, each when it is due."""
        self._ended.update(self._queues)
        self._release()

    def _release(self) -> None:
        while not self.stop.is_set():
            waiting = [(q[0][0], s) for s, q in self._queues.items() if q]
            if not waiting:
                return
            t, stream = min(waiting)
            delay = self.due(t) - time.monotonic()
            known = all(q or s in self._ended for s, q in self._queues.items())
            if not known and self._newest - t < MAX_REORDER_S and delay > -MAX_LATE_S:
                return  # decode on: a stream with nothing queued may have an earlier item
            if delay > 0 and self.stop.wait(delay):
                return  # stopped: what was not due yet has not happened
            self.emit(self._queues[stream].popleft()[1]())
