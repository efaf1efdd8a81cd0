"""One supervisor for the pipeline's stages.

- A failure while handling one utterance (or frame) is reported here once,
  with the stage and the stretch of stream time; the caller publishes that
  utterance without the failed modality (or drops it when fusion failed) and
  the run goes on.
- The same stage failing on ``max_consecutive`` utterances in a row ends the
  run: it is broken for good (a CUDA error, a model file gone bad), and
  ending with exit 1 lets systemd restart it, while the results so far are
  still flushed.
- A stage task that ends with an exception (a bug outside the per-utterance
  guards) ends the run too, rather than leave the other stages waiting on it
  forever.

Python 3.10 has no ``asyncio.TaskGroup``: the tasks are watched through
done callbacks instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, max_consecutive: int, on_end: Callable[[], None]) -> None:
        self.max_consecutive = max_consecutive
        self.on_end = on_end  # stops the sources and releases whatever waits on them
        self.ended: str | None = None  # why the run was ended, when it was
        self.failures: dict[str, int] = {}  # stage -> failures in all (for status)
        self._in_row: dict[str, int] = {}
        self._ended = asyncio.Event()

    def failed(
        self, stage: str, where: str, error: BaseException, outcome: str, logged: bool = False
    ) -> None:
        """``stage`` failed on the utterance at ``where``; ``outcome`` says what
        became of it. ``logged``: the stage already said so itself."""
        self.failures[stage] = self.failures.get(stage, 0) + 1
        n = self._in_row[stage] = self._in_row.get(stage, 0) + 1
        if not logged:
            log.error("%s failed on %s (%s); %s", stage, where, describe(error), outcome)
            log.debug("%s failure", stage, exc_info=error)
        if n >= self.max_consecutive:
            self.end(f"{stage} failed {n} times in a row (last: {describe(error)})")

    def ok(self, stage: str) -> None:
        self._in_row[stage] = 0

    def end(self, why: str) -> None:
        """End the run: said once, in one line."""
        if self.ended is not None:
            return
        self.ended = why
        log.error("stopping: %s; results so far are delivered", why)
        self._ended.set()
        self.on_end()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        error = task.exception()  # retrieved: never "exception was never retrieved"
        if error is not None:
            log.debug("%s crashed", task.get_name(), exc_info=error)
            self.end(f"the {task.get_name()} stage crashed ({describe(error)})")

    async def wait(self, tasks: list[asyncio.Task]) -> None:
        """Until every task is done; once the run is ended, the rest are cancelled."""
        pending = set(tasks)
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            while pending and self.ended is None:
                _, pending = await asyncio.wait(
                    {*pending, ended}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(ended)
        finally:
            ended.cancel()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_complained: set[tuple[type, str]] = set()


def tell(listener: object, hook: str, *args: object) -> None:
    """Call a listener's hook (metrics, preview); one that fails is said once
    and never stops the run: a listener must not cost a result."""
    try:
        getattr(listener, hook)(*args)
    except Exception as e:
        key = (type(listener), hook)
        if key not in _complained:
            _complained.add(key)
            log.warning("%s.%s failed (%s); the run goes on", type(listener).__name__, hook,
                        describe(e))
            log.debug("listener failure", exc_info=True)
