"""Speech recognised before its utterance closes: drafts, and the real passes.

When the VAD has heard ``asr.draft_pause_ms`` of a pause, the utterance it
will close if the pause lasts is known (:meth:`Segmenter.draft`), and the
slow audio side (:meth:`Analyzer.hear`) can start during the rest of the
hangover. That draft is *current* while the pause lasts; if speech goes on it
is *outdated*: its result is never used, and a pass already running cannot
be cancelled, so it must cost as little as possible:

- drafts run in their own thread, the real passes (an utterance with no
  usable draft) in the models' thread: a real pass starts at once, never
  queued behind an outdated draft (the Whisper model has a worker for each,
  so CTranslate2 does not queue it either);
- a draft starts only when no other pass is in flight, so at most two
  passes (one outdated, one real) ever share the two cores, and a draft
  never slows the real pass of the utterance before it;
- only the current draft and the real passes make the face stage skip
  frames: while an outdated draft runs, the person is still speaking and
  their frames belong to the utterance.

Everything here runs on the event loop; ``Pass.running`` alone is written
in the worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextlib import suppress
from dataclasses import dataclass, field

import numpy as np

from edge_msa.runtime.analyzer import Heard
from edge_msa.types import Utterance

Key = tuple[float, float, int]


def key(utt: Utterance) -> Key:
    """What makes a draft the closed utterance: its times and its length."""
    return utt.t0, utt.t1, len(utt.audio)


@dataclass(eq=False)
class Pass:
    """One recognition pass in flight."""

    key: Key
    draft: bool
    work: Future[Heard] | None = None  # in the pass's thread
    future: asyncio.Future[Heard] | None = None  # the same, awaited on the loop
    running: bool = False  # in its thread now (set and cleared there)
    started_at: float = field(default_factory=time.monotonic)
    ran: bool = False  # got its thread at all (a queued one may never)


@dataclass
class DraftCounts:
    """For `edge-msa bench`: drafts that bought time, and work done in vain."""

    started: int = 0
    used: int = 0  # its result was the utterance's: no pass after the close
    outdated: int = 0  # speech went on (or the utterance closed otherwise): dropped
    outdated_ran: int = 0  # of those, how many had begun (their work was wasted)
    real: int = 0  # passes started at the close (no usable draft)
    # Per used draft, ms from its start to its utterance's close: the most it
    # can take off end of utterance to publish (all of it once the pass is shorter).
    head_start_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    # The latest events, (what, time.monotonic()): the order tests check.
    log: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=1000))


class Hearing:
    """Starts, reuses and drops recognition passes; tells the face stage when to skip."""

    def __init__(
        self,
        hear: Callable[[np.ndarray], Heard],
        draft_pool: Executor,
        real_pool: Executor,
        pause_ms: float | None,
    ) -> None:
        self._hear = hear
        self._draft_pool = draft_pool
        self._real_pool = real_pool
        # None: no drafts (a file read as fast as it decodes, early_start off).
        self.pause_ms = pause_ms
        self.counts = DraftCounts()
        self._current: Pass | None = None  # the draft of the pause under way
        self._flight: set[Pass] = set()  # every pass not yet done, whatever it is

    def after_audio(self, segmenter) -> None:
        """Called on the loop after the VAD has taken a chunk (and the utterances
        it closed were taken): drop the draft speech outdated, start a new one."""
        if self.pause_ms is None:
            return
        utt = segmenter.draft(self.pause_ms)
        current = self._current
        if current is not None and (utt is None or current.key != key(utt)):
            self._outdate(current)
        if utt is None or self._current is not None:
            return
        if self.busy:
            # Busy (an outdated draft that cannot be stopped, a real pass, the
            # last utterance's draft): wait for a later chunk rather than queue.
            return
        self._current = self._start(utt, draft=True)
        self.counts.started += 1

    def take(self, utt: Utterance) -> asyncio.Future[Heard] | None:
        """The closed utterance's current draft; None when it has none (then
        :meth:`real` starts its pass when the analysis reaches it)."""
        current, self._current = self._current, None
        if current is not None and current.key == key(utt):
            current.draft = False  # the utterance's own pass from now on
            self.counts.used += 1
            self.counts.head_start_ms.append((utt.closed_at - current.started_at) * 1000.0)
            self._note("used")
            assert current.future is not None
            return current.future
        if current is not None:
            self._outdate(current)
        return None

    def real(self, utt: Utterance) -> asyncio.Future[Heard]:
        """A pass for a closed utterance, in the models' thread: it queues behind
        nothing but the models' own work, never behind a draft."""
        self.counts.real += 1
        return self._start(utt, draft=False).future  # type: ignore[return-value]

    def skip_frames(self) -> bool:
        """Whether the face stage should skip the frame now: speech being
        recognised for a closed utterance, or the pause's current draft (the
        frame lies after that utterance's end). An outdated draft's frames
        belong to speech still going on: they are analysed."""
        return any(
            p.running and (not p.draft or p is self._current) for p in self._flight
        )

    @property
    def busy(self) -> bool:
        """A pass of any kind is in flight (queued or running)."""
        return bool(self._flight)

    def _outdate(self, p: Pass) -> None:
        if p is self._current:
            self._current = None
        self.counts.outdated += 1
        self.counts.outdated_ran += p.ran
        self._note("outdated")
        if p.work is not None:
            p.work.cancel()  # stops it only if it has not begun: a running pass cannot be

    def _start(self, utt: Utterance, draft: bool) -> Pass:
        loop = asyncio.get_running_loop()
        p = Pass(key(utt), draft)
        self._flight.add(p)
        pool = self._draft_pool if draft else self._real_pool
        # The thread's own future says when the work is really over (an
        # asyncio future is "done" as soon as it is cancelled, even mid-pass).
        p.work = pool.submit(self._run, p, utt.audio)
        p.future = asyncio.wrap_future(p.work, loop=loop)
        p.future.add_done_callback(_retrieve)
        p.work.add_done_callback(lambda _: _call_soon(loop, self._done, p))
        self._note("draft" if draft else "real")
        return p

    def _run(self, p: Pass, audio: np.ndarray) -> Heard:
        """In the pass's thread."""
        p.running = p.ran = True
        try:
            return self._hear(audio)
        finally:
            p.running = False

    def _done(self, p: Pass) -> None:
        self._flight.discard(p)
        self._note("done " + ("draft" if p.draft else "real"))

    def _note(self, event: str) -> None:
        self.counts.log.append((event, time.monotonic()))


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # a dropped draft's error is not "never retrieved"


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable, *args: object) -> None:
    """From a worker thread; an outdated draft may end after the run (and its loop)."""
    with suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
