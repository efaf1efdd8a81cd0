"""Is the runtime healthy, and is any stage stuck?

Each watched stage keeps a ``StageClock``: work handed to it (``arrived``),
work it finished (``done``). A stage is stalled when it has work waiting and
has not finished anything for longer than ``runtime.stall_limit_s`` (counted
from its last progress, or from when work arrived while it was idle): audio
arrives but the VAD does not move, an utterance was cut but the recogniser
returns nothing, results wait but the connected publisher gets no PUBACK.
A stage with nothing to do is never stalled, however long it waits, so a
muted device or a quiet room reads as healthy.

``assess`` is the whole answer of ``/healthz``; ``stalls`` alone decides the
systemd watchdog (a broker that is down or a camera that is unplugged is
reported, but a restart would not fix it).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_msa.config import Config
    from edge_msa.runtime.pipeline import Pipeline

# The stages watched, in pipeline order (the publisher's clock lives on the publisher).
VAD, RECOGNISER, PUBLISHER = "vad", "recogniser", "publisher"


class StageClock:
    """When one stage last made progress and how much work waits for it; any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending = 0
        self._since = time.monotonic()  # last progress, or when work came to an idle stage

    def arrived(self, n: int = 1) -> None:
        with self._lock:
            if self.pending == 0:
                self._since = time.monotonic()
            self.pending += n

    def done(self, n: int = 1) -> None:
        with self._lock:
            self.pending = max(self.pending - n, 0)
            self._since = time.monotonic()

    def idle(self) -> None:
        """Nothing waits for the stage (it checked): any miscount is forgotten."""
        with self._lock:
            self.pending = 0
            self._since = time.monotonic()

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds without progress while work waits; 0 when the stage is idle."""
        with self._lock:
            if self.pending == 0:
                return 0.0
            return max((time.monotonic() if now is None else now) - self._since, 0.0)


class Progress:
    """The pipeline's stage clocks (the VAD's and the recogniser's)."""

    def __init__(self) -> None:
        self.stages = {VAD: StageClock(), RECOGNISER: StageClock()}

    def arrived(self, stage: str, n: int = 1) -> None:
        self.stages[stage].arrived(n)

    def done(self, stage: str, n: int = 1) -> None:
        self.stages[stage].done(n)


def stalls(pipeline: Pipeline, limit_s: float, now: float | None = None) -> dict[str, float]:
    """Stalled stage -> seconds without progress (empty: nothing is stuck)."""
    now = time.monotonic() if now is None else now
    clocks: dict[str, StageClock] = dict(pipeline.progress.stages)
    publisher = pipeline.publisher
    if publisher is not None and publisher.connected:  # a down broker is reported apart
        clocks[PUBLISHER] = publisher.progress
    out = {}
    for name, clock in clocks.items():
        waited = clock.stalled_for(now)
        if waited > limit_s:
            out[name] = round(waited, 1)
    return out


def assess(pipeline: Pipeline, cfg: Config) -> tuple[bool, dict[str, object]]:
    """(healthy, body) for ``/healthz``; on the event loop (no SQL, no I/O)."""
    p = pipeline
    connected = p.publisher is not None and p.publisher.connected
    reasons = [f"source {n} is {s}" for n, s in p.source_state.items() if s != "up"]
    if p.publisher is not None and not connected:
        reasons.append(f"mqtt broker {cfg.mqtt.host}:{cfg.mqtt.port} not connected")
    problem = p.outbox.problem if p.outbox is not None else None
    if problem is not None:  # results wait in memory: a restart would lose them
        reasons.append(f"outbox: {problem}")
    stalled = stalls(p, cfg.runtime.stall_limit_s)
    for stage, waited in stalled.items():
        reasons.append(f"{stage} has not progressed for {waited:.1f} s with work waiting")
    body: dict[str, object] = {
        "sources": dict(p.source_state),
        "mqtt": None if p.publisher is None else ("connected" if connected else "down"),
        "outbox_problem": problem,
        "stalled": sorted(stalled),
        "listen": p.listen.word,
        "reasons": reasons,
    }
    return not reasons, body
