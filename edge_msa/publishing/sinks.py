"""Local sinks: JSON lines on stdout (nothing else goes there) or in a file.

Each sink is written by its own thread (:class:`SinkWriter`), so a slow or
full disk never holds up the event loop, and a sink that fails never stops
the others:

- a write that fails (a full disk, an I/O error) is reported in one line;
  the lines wait in memory (up to ``MAX_PENDING``) and are written again with
  growing delays, in order, once the sink takes them; a line is written whole
  or not at all (a partial line is cut off the file again);
- a closed stdout (the reader went away: ``| head``) is final: the writer says
  so in one line and calls ``on_gone``; the runtime then ends the run with
  exit 1. Standard output is pointed at /dev/null, so the interpreter's own
  flush at exit cannot fail with a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TextIO

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # lines a failing sink holds in memory; the oldest go first beyond
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
_CLOSE = object()


class SinkGone(Exception):
    """The sink cannot take anything any more (its reader closed the pipe)."""


class JsonlSink:
    """JSON lines on a text stream (stdout by default)."""

    name = "stdout"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def write_lines(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError as e:
            _silence_stdout(self.stream)
            raise SinkGone(f"{self.name} was closed ({e.strerror or e})") from None
        except OSError as e:
            if e.errno == errno.EPIPE:
                _silence_stdout(self.stream)
                raise SinkGone(f"{self.name} was closed ({e.strerror or e})") from None
            raise

    def write(self, payload: dict[str, object]) -> None:
        self.write_lines(json.dumps(payload) + "\n")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()


class JsonlFileSink(JsonlSink):
    """JSON lines appended to a file; a failed write leaves no partial line."""

    def __init__(self, path: Path) -> None:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.name = str(path)
        # Unbuffered: a failure is seen at once and the file's size says what is in it.
        self._file: BinaryIO = open(path, "ab", buffering=0)  # noqa: SIM115 (closed in close())

    def write_lines(self, text: str) -> None:
        data = text.encode("utf-8")
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no half line for a reader, nor for the retry
            raise

    def close(self) -> None:
        self._file.close()


class SinkWriter:
    """Writes one sink from its own thread: the event loop only queues lines."""

    def __init__(self, sink: JsonlSink, on_gone: Callable[[str], None] | None = None) -> None:
        self.sink = sink
        self.name = sink.name
        self.on_gone = on_gone
        self.lost = 0  # lines that never reached the sink
        self.gone = False
        self._q: queue.Queue = queue.Queue()
        self._pending: deque[str] = deque()
        self._failing: str | None = None  # why the last write failed
        self._delay = 0.0  # before the next try, while failing
        self._next_try = 0.0  # time.monotonic() of the next try
        self._thread = threading.Thread(target=self._run, name=f"sink {self.name}", daemon=True)
        self._thread.start()

    def write(self, payload: dict[str, object]) -> None:
        """Queue one result (from the event loop; never blocks)."""
        self._q.put(json.dumps(payload) + "\n")

    def close(self, timeout: float) -> int:
        """Write what waits (one last try for a failing sink) and close;
        returns how many lines never reached the sink."""
        self._q.put(_CLOSE)
        self._thread.join(timeout)
        if self._thread.is_alive():  # stuck in a write: what is queued is lost
            self.lost += len(self._pending) + self._q.qsize()
        return self.lost

    def _run(self) -> None:
        closing = False
        while not closing:
            timeout = max(self._next_try - time.monotonic(), 0) if self._pending else None
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                item = None
            while item is not None:
                if item is _CLOSE:
                    closing = True
                else:
                    self._hold(item)
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    item = None
            # A failing sink is tried again when its delay is over, and once at the end.
            if self._pending and (closing or time.monotonic() >= self._next_try):
                self._flush()
        if self._pending:
            self.lost += len(self._pending)
            log.warning(
                "%d result(s) were not written to %s before the end (%s)",
                len(self._pending), self.name, self._failing,
            )
        with contextlib.suppress(Exception):
            self.sink.close()

    def _hold(self, line: str) -> None:
        if self.gone:
            self.lost += 1
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.lost += 1
        self._pending.append(line)

    def _flush(self) -> None:
        try:
            self.sink.write_lines("".join(self._pending))
        except SinkGone as e:
            self.gone = True
            self.lost += len(self._pending)
            self._pending.clear()
            if self.on_gone is not None:
                self.on_gone(str(e))
            return
        except (OSError, ValueError) as e:  # ValueError: a stream closed under us
            why = getattr(e, "strerror", None) or str(e)
            if self._failing is None:
                log.error(
                    "cannot write to %s (%s): results for it wait in memory and are retried; "
                    "the other outputs go on", self.name, why,
                )
            self._failing = why
            self._delay = min(max(self._delay * 2, RETRY_FIRST_S), RETRY_MAX_S)
            self._next_try = time.monotonic() + self._delay
            return
        if self._failing is not None:
            log.info("%s takes results again (%d written)", self.name, len(self._pending))
        self._pending.clear()
        self._failing, self._delay = None, 0.0


def _silence_stdout(stream: TextIO) -> None:
    """Point the closed stdout at /dev/null: what is still buffered, and the
    interpreter's flush at exit, then go nowhere instead of failing."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
