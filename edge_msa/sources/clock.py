"""The run's one clock: a UTC wall time and a monotonic time taken together.

It is taken before the sources open and shared by every source and the
pipeline. Stream times are seconds on the monotonic clock since that anchor
(a file keeps its media time), and a result's wall time is ``wall0 + t``.
The models load after the anchor, so their loading time is not added to
live results' times (it was, when results used a start time taken after
loading).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamClock:
    wall0: float  # time.time() at the anchor (UTC seconds)
    mono0: float  # time.monotonic() at the same instant

    @classmethod
    def start(cls) -> StreamClock:
        # The wall clock read between two monotonic reads: the anchor is off by
        # at most half the (microseconds) gap between them.
        m0 = time.monotonic()
        wall = time.time()
        m1 = time.monotonic()
        return cls(wall, (m0 + m1) / 2)

    def now(self) -> float:
        """Stream time now."""
        return time.monotonic() - self.mono0

    def wall(self, t: float) -> float:
        """UTC seconds of stream time ``t``."""
        return self.wall0 + t
