"""A SQLite outbox: every result is stored before it is published and
deleted only after the broker acknowledged it, so nothing is lost across a
broker outage or a restart, and order is kept (rows go out by ``seq``).

When the file cannot be written (read-only, disk full) results wait in a
bounded in-memory queue instead: they still go to the broker, in order, and
move into the file as soon as it can be written again. A corrupt file is
moved aside (``<name>.corrupt-<time>``) with whatever could be read from it
carried over into a fresh one. Each change of state is one log line; a result
is never dropped without its id being logged.

Every method is thread-safe. The event loop never calls them directly (a
commit with ``synchronous=FULL`` waits for an fsync, which on SD or eMMC
storage can take a second): ``submit``/``call`` run them on the outbox's own
thread, one after the other in the order they were submitted, so a result
added before the publisher asks for what is pending is always among it.

The process that delivers from the outbox holds ``outbox.lock`` beside it
(:mod:`edge_msa.publishing.outbox_lock`), so `edge-msa outbox flush` can tell
that a running service has it, and two services cannot share one state dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edge_msa.publishing.outbox_lock import FLUSH, DeliveryLock, Holder

log = logging.getLogger(__name__)

MEMORY_MAX = 10_000  # results held in memory while the file is unusable (~10 MB)
# A service that finds `edge-msa outbox flush` holding the file waits this long for it.
FLUSH_WAIT_S = 60.0

T = TypeVar("T")


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or written; the text is for the user."""


class OutboxBusy(OutboxError):
    """Another process delivers from this outbox."""

    def __init__(self, message: str, holder: Holder) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Pending:
    seq: int  # > 0: a row of the file; < 0: held in memory
    id: str
    payload: str
    created: float = 0.0


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _is_corrupt(e: sqlite3.Error) -> bool:
    # SQLITE_CORRUPT and SQLITE_NOTADB are plain DatabaseError; full, read-only,
    # I/O and cannot-open are OperationalError.
    return type(e) is sqlite3.DatabaseError


class Outbox:
    def __init__(
        self,
        path: str | Path,
        memory_max: int = MEMORY_MAX,
        lock: str | None = None,
        flush_wait_s: float = FLUSH_WAIT_S,
    ) -> None:
        """``lock``: RUN or FLUSH to hold ``outbox.lock`` (raises OutboxBusy when
        another process does; a service waits ``flush_wait_s`` for a flush)."""
        self.path = Path(path).expanduser()
        self.memory_max = memory_max
        self._held: DeliveryLock | None = None
        if lock is not None:
            self._held = self._take_lock(lock, flush_wait_s)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self.problem: str | None = None  # why results are not being written to the file
        self.dropped = 0  # results lost because memory was full too (each one logged)
        self._db: sqlite3.Connection | None = None
        self._mem: deque[Pending] = deque()
        self._mem_seq = itertools.count(-1, -1)
        self._sent: set[str] = set()  # delivered, but their rows could not be deleted
        self._lock = threading.RLock()  # the outbox's thread and direct callers
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
        except sqlite3.Error as e:
            if _is_corrupt(e):
                self._quarantine(e)
            else:
                self._degrade(f"cannot be opened ({_one_line(e)})")
        except OSError as e:
            self._degrade(f"cannot be opened ({e.strerror or e})")

    def _take_lock(self, role: str, flush_wait_s: float) -> DeliveryLock:
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        held = DeliveryLock(self.path, role)
        deadline = time.monotonic() + flush_wait_s
        said = False
        while (holder := held.acquire()) is not None:
            # A flush ends by itself: wait for it. An empty role is a holder that
            # has just taken the lock and not yet written its name: look again.
            if holder.role not in (FLUSH, "") or time.monotonic() >= deadline:
                fix = (
                    f"still busy after {flush_wait_s:g} s" if holder.role == FLUSH
                    else "give each running edge-msa its own --state-dir"
                )
                raise OutboxBusy(
                    f"outbox {self.path} is in use by {holder.describe()}; {fix}", holder
                )
            if not said:
                log.info("waiting for %s to finish with the outbox %s", holder.describe(),
                         self.path)
                said = True
            time.sleep(0.2)
        return held

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a result survives power loss
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " id TEXT NOT NULL UNIQUE,"
                " payload TEXT NOT NULL,"
                " created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))"
            )
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                first = next((x for x in check.splitlines() if not x.startswith("***")), "")
                raise sqlite3.DatabaseError(f"database disk image is malformed: {first}")
        except sqlite3.Error:
            db.close()
            raise
        return db

    # -- the queue -----------------------------------------------------------

    def add(self, id: str, payload: str) -> None:
        """Store a result; never raises (see the module doc for where it goes)."""
        with self._lock:
            item = Pending(next(self._mem_seq), id, payload, time.time())
            self._mem.append(item)
            if not self._spill():
                self._bound_memory()

    def pending(self, limit: int = 100) -> list[Pending]:
        """The oldest ``limit`` results, file first (older), then memory."""
        with self._lock:
            rows = self._query(
                "SELECT seq, id, payload, created FROM outbox ORDER BY seq LIMIT ?",
                (limit + len(self._sent),),
            )
            out = [Pending(*r) for r in rows or [] if r[1] not in self._sent][:limit]
            return out + list(itertools.islice(self._mem, limit - len(out)))

    def remove(self, seq: int) -> None:
        """The broker acknowledged it."""
        with self._lock:
            if seq < 0:
                if self._mem and self._mem[0].seq == seq:  # the usual case: oldest first
                    self._mem.popleft()
                else:
                    self._mem = deque(p for p in self._mem if p.seq != seq)
                return
            row = self._query("SELECT id FROM outbox WHERE seq = ?", (seq,))
            if not row:
                return
            if self._write([("DELETE FROM outbox WHERE seq = ?", (seq,))]) is None:
                self._sent.add(row[0][0])  # not sent again in this run

    def count(self) -> int:
        with self._lock:
            rows = self._query("SELECT COUNT(*) FROM outbox")
            in_file = int(rows[0][0]) if rows else 0
            return in_file - len(self._sent) + len(self._mem)

    @property
    def in_memory(self) -> int:
        """Results that only this process holds (lost if it stops before delivering them)."""
        return len(self._mem)

    def memory_ids(self) -> list[str]:
        with self._lock:
            return [p.id for p in self._mem]

    def oldest_created(self) -> float | None:
        with self._lock:
            rows = self._query("SELECT MIN(created) FROM outbox")
            oldest = [rows[0][0]] if rows and rows[0][0] is not None else []
            oldest += [self._mem[0].created] if self._mem else []
            return min(oldest) if oldest else None

    def persist(self) -> bool:
        """Try to move what memory holds into the file now; True when nothing is left there."""
        with self._lock:
            return self._spill()

    def close(self) -> None:
        self._worker.shutdown(wait=True)  # what was submitted is done first
        with self._lock:
            self._spill()
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._held is not None:
                self._held.release()
                self._held = None

    # -- from the event loop: the same work, on the outbox's own thread ------

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """``fn(*args)`` on the outbox's thread, after everything submitted before."""
        return self._worker.submit(fn, *args)

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args))

    def add_soon(self, id: str, payload: str) -> Future[None]:
        """``add`` without waiting for it (for the event loop); never fails."""
        return self.submit(self.add, id, payload)

    # -- when the file misbehaves -------------------------------------------

    def _spill(self) -> bool:
        """Move what memory holds (and deletes owed) into the file; True when done."""
        if self._db is None and not self._reopen():
            return False
        statements = [("DELETE FROM outbox WHERE id = ?", (i,)) for i in self._sent]
        statements += [
            ("INSERT OR IGNORE INTO outbox (id, payload, created) VALUES (?, ?, ?)",
             (p.id, p.payload, p.created))
            for p in self._mem
        ]
        if not statements:
            return True
        moved = len(self._mem)
        if self._write(statements) is None:
            return False
        self._sent.clear()
        self._mem.clear()
        if self.problem is not None:
            log.warning(
                "outbox %s can be written again: %d result(s) moved into it from memory",
                self.path, moved,
            )
            self.problem = None
        return True

    def _reopen(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            return True
        except (OSError, sqlite3.Error):
            return False

    def _write(self, statements: list[tuple[str, tuple]]) -> bool | None:
        """All of ``statements`` in one transaction; None when the file refused."""
        db = self._db
        if db is None:
            return None
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, args in statements:
                db.execute(sql, args)
            db.execute("COMMIT")
            return True
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._failed(e, "cannot be written")
            return None

    def _query(self, sql: str, args: tuple = ()) -> list[tuple] | None:
        if self._db is None:
            return None
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            self._failed(e, "cannot be read")
            return None

    def _failed(self, e: sqlite3.Error, what: str) -> None:
        if _is_corrupt(e):
            self._quarantine(e)
        else:
            self._degrade(f"{what} ({_one_line(e)})")

    def _degrade(self, reason: str) -> None:
        if self.problem == reason:
            return
        self.problem = reason
        log.error(
            "outbox %s %s: results wait in memory (at most %d) until the broker takes "
            "them and are lost if the process stops first; free space on that disk or make "
            "the state dir writable (--state-dir)",
            self.path, reason, self.memory_max,
        )

    def _quarantine(self, e: sqlite3.Error) -> None:
        """Move a corrupt file aside, carry over what can be read, start a fresh one."""
        salvaged = self._salvage()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(f"{aside}{suffix}")
        except OSError as err:
            self._degrade(
                f"is corrupt ({_one_line(e)}) and cannot be moved aside ({err.strerror})"
            )
            self._mem.extendleft(reversed(salvaged))
            return
        # Carried-over rows are older than anything held in memory.
        self._mem.extendleft(reversed(salvaged))
        self._sent.clear()  # their rows went with the old file
        log.error(
            "outbox %s was corrupt (%s): moved it to %s and started a new one with the "
            "%d pending result(s) that could be read; if it held more, try `sqlite3 %s .recover`",
            self.path, _one_line(e), aside.name, len(salvaged), aside,
        )
        if not self._reopen():
            self._degrade("cannot be created after moving the corrupt one aside")
        self._spill()

    def _salvage(self) -> list[Pending]:
        """Rows of a corrupt file, in order, up to the first unreadable one."""
        out: list[Pending] = []
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        except sqlite3.Error:
            return out
        try:
            cur = db.execute("SELECT id, payload, created FROM outbox ORDER BY seq")
            for id_, payload, created in cur:
                out.append(Pending(next(self._mem_seq), id_, payload, created))
        except sqlite3.Error:
            pass
        finally:
            db.close()
        return out

    def _bound_memory(self) -> None:
        while len(self._mem) > self.memory_max:
            lost = self._mem.popleft()
            self.dropped += 1
            log.error(
                "outbox memory full (%d results; the file is unusable: %s): result %s dropped",
                self.memory_max, self.problem, lost.id,
            )
