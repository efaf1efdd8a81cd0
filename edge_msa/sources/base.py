"""What every source shares: the error type and the emit callback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from edge_msa.types import AudioChunk, VideoFrame

Emit = Callable[[AudioChunk | VideoFrame], None]


class SourceError(RuntimeError):
    """A source that cannot start or broke for good; the text is for the user."""


class Source(Protocol):
    name: str
    has_audio: bool
    has_video: bool

    def open(self) -> None:
        """Open the device or file now, raising SourceError with a fix."""

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Blocking: emit chunks and frames until the end or ``stop``."""
