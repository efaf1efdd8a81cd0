"""Whether the device listens: the state behind ``--listen`` and the MQTT control topic.

While it is off, the sources' audio chunks and frames are dropped as they
arrive (nothing is analysed or kept); a result already being computed is
still delivered. The state is read from the sources' threads and changed
from the event loop (a ``listen/set`` message), so it sits behind a lock.

At start, a retained ``OFF`` on the control topic must win over the first
chunk: when MQTT is on, the sources wait (at most ``DECIDE_WAIT_S``) until
the publisher has read the topic, or found it cannot reach the broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DECIDE_WAIT_S = 5.0  # a broker that neither answers nor refuses: go on with the start state

ON, OFF = "ON", "OFF"


def parse(payload: bytes | str) -> bool | None:
    """``ON``/``OFF`` (any case, surrounding blanks ignored) as True/False; else None."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    word = text.strip().upper()
    return True if word == ON else False if word == OFF else None


class Listen:
    def __init__(self, on: bool = True, controlled: bool = False) -> None:
        """``controlled``: an MQTT control topic may override ``on`` at start."""
        self._lock = threading.Lock()
        self._on = on
        self._decided = threading.Event()
        if not controlled:
            self._decided.set()
        self.dropped = 0  # chunks and frames dropped while off
        self.changed_at = time.time()
        # Called with the new state after each change, in the thread that changed it.
        self.on_change: list[Callable[[bool], None]] = []

    @property
    def on(self) -> bool:
        with self._lock:
            return self._on

    @property
    def word(self) -> str:
        return ON if self.on else OFF

    def set(self, on: bool, why: str) -> bool:
        """Change the state; True when it changed (then one log line says so and why)."""
        with self._lock:
            changed, self._on = self._on != on, on
            if changed:
                self.changed_at = time.time()
        self._decided.set()
        if changed:
            if on:
                log.info("listening again (%s)", why)
            else:
                log.info(
                    "listening OFF (%s): audio and frames are dropped until it is ON again", why
                )
            for callback in list(self.on_change):
                callback(on)
        return changed

    def decide(self) -> None:
        """The start state is final: the control topic held nothing, or cannot be read now."""
        self._decided.set()

    @property
    def decided(self) -> bool:
        return self._decided.is_set()

    def admits(self, wait_s: float = DECIDE_WAIT_S) -> bool:
        """From a source's thread: keep this chunk or frame? Waits for the start state once."""
        if not self._decided.is_set():
            self._decided.wait(wait_s)
            self._decided.set()  # waited once: the next chunk does not wait again
        with self._lock:
            if not self._on:
                self.dropped += 1
            return self._on
