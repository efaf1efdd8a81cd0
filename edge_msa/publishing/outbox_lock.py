"""``outbox.lock``: held by the process that delivers from an outbox.

``fcntl.flock`` on a file beside the outbox, with the holder's pid and role
(``run`` or ``flush``) inside for the message of whoever finds it taken. The
kernel drops the lock when the process ends, however it ends, so a file left
behind never blocks anyone.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RUN, FLUSH = "run", "flush"


@dataclass(frozen=True)
class Holder:
    pid: int | None
    role: str  # RUN, FLUSH, or "" when the holder had not written its name yet

    def describe(self) -> str:
        who = "`edge-msa outbox flush`" if self.role == FLUSH else "a running edge-msa"
        return f"{who} (pid {self.pid})" if self.pid else who


def lock_path(path: Path) -> Path:
    return path.with_name(path.stem + ".lock")


class DeliveryLock:
    """Held while a process delivers from the outbox at ``outbox``."""

    def __init__(self, outbox: Path, role: str) -> None:
        self.path = lock_path(outbox)
        self.role = role
        self._fd: int | None = None

    def acquire(self) -> Holder | None:
        """Take it; None when taken (or when it cannot be created), else who holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:  # a read-only state dir: the outbox falls back to memory anyway
            log.debug("outbox lock %s cannot be created (%s); going on without", self.path, e)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.role}\n".encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking races)
            self._fd = None


def _read_holder(fd: int) -> Holder:
    words = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    pid = int(words[0]) if words and words[0].isdigit() else None
    return Holder(pid, words[1] if len(words) > 1 else "")
