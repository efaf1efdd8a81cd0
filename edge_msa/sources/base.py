"""What every source shares: the error type, the callbacks and the backoff."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from edge_msa.types import AudioChunk, VideoFrame

Emit = Callable[[AudioChunk | VideoFrame], None]
# A source says "reconnecting" when it lost its device or stream and "up" when
# data flows again; called from the source's own thread.
StateFn = Callable[[str], None]

UP = "up"
RECONNECTING = "reconnecting"


def ignore_state(state: str) -> None:
    """The StateFn of a caller that does not watch the source's state."""


class SourceError(RuntimeError):
    """A source that cannot start or broke for good; the text is for the user."""


class Source(Protocol):
    name: str
    has_audio: bool
    has_video: bool

    def open(self) -> None:
        """Open the device or file now, raising SourceError with a fix."""

    def run(self, emit: Emit, stop: threading.Event, state: StateFn = ignore_state) -> None:
        """Blocking: emit chunks and frames until the end or ``stop``."""


class Backoff:
    """Delays between reconnection attempts: the first retry at once (a glitch
    often clears), then 0.5 s doubling up to ``max_s``; ``reset`` once data flows."""

    FIRST_S = 0.5

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self.failures = 0

    def fail(self) -> float:
        """Count a failure; returns how long to wait before the next attempt."""
        self.failures += 1
        if self.failures == 1:
            return 0.0
        return min(self.FIRST_S * 2 ** (self.failures - 2), self.max_s)

    def reset(self) -> None:
        self.failures = 0
