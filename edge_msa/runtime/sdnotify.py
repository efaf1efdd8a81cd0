"""systemd's notify protocol: ``READY=1`` once the models are loaded, and
``WATCHDOG=1`` from the event loop while no stage is stalled.

A few lines of socket code instead of a dependency: one datagram per message
to the AF_UNIX socket named by ``NOTIFY_SOCKET`` (``@name``: the abstract
namespace). Without that variable (not started by systemd) nothing is sent.
The pings come from a task on the event loop, so a blocked loop stops them
too; a stalled stage (``health.stalls``) stops them on purpose, and systemd
then restarts the service after ``WatchdogSec=``. A broker that is down is
not a stall: a restart would not bring it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), address)
            return True
        except OSError as e:
            if not self._warned:  # once: a ping every few seconds would flood the log
                log.warning("systemd notify socket %s: %s", self.address, e.strerror or e)
                self._warned = True
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between pings: half of ``WATCHDOG_USEC``, when it is meant for this process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6


class Systemd:
    """``ready``, then ``WATCHDOG=1`` every interval while ``stalled()`` is empty.

    The check runs (once a second when systemd sets no watchdog) even without
    systemd: a stage that stalls, and one that recovers, is one log line each.
    """

    def __init__(self, stalled: Callable[[], dict[str, float]]) -> None:
        self.notifier = Notifier.from_env()
        self.interval = watchdog_interval()
        self.stalled = stalled
        self._task: asyncio.Task[None] | None = None
        self._was_stalled: frozenset[str] = frozenset()

    def ready(self) -> None:
        """The models are loaded: systemd counts the service as started (Type=notify)."""
        self.notifier.send("READY=1")
        self._ping()  # the first one now: the watchdog runs from READY=1
        self._task = asyncio.create_task(self._pings(), name="watchdog")

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(self.interval or 1.0)
            self._ping()

    def _ping(self) -> None:
        try:
            stalled = self.stalled()
        except Exception:  # a bug here must not read as a healthy process
            log.warning("health check failed; no watchdog ping", exc_info=True)
            return
        now = frozenset(stalled)
        if now != self._was_stalled:
            if now:
                watched = self.interval is not None and self.notifier.enabled
                log.error(
                    "stalled: %s without progress while work waits%s",
                    ", ".join(f"{s} for {t:.0f} s" for s, t in sorted(stalled.items())),
                    "; systemd's watchdog gets no more pings" if watched else "",
                )
            else:
                log.info("no stage is stalled any more")
            self._was_stalled = now
        if not now and self.interval is not None:
            self.notifier.send("WATCHDOG=1")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.notifier.close()
