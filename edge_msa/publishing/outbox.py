"""A SQLite outbox: every result is stored before it is published and
deleted only after the broker acknowledged it, so nothing is lost across a
broker outage or a restart, and order is kept (rows go out by ``seq``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or written; the text is for the user."""


@dataclass(frozen=True)
class Pending:
    seq: int
    id: str
    payload: str


class Outbox:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a result survives power loss
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " id TEXT NOT NULL UNIQUE,"
                " payload TEXT NOT NULL,"
                " created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))"
            )
        except (OSError, sqlite3.Error) as e:
            raise OutboxError(
                f"outbox {self.path} cannot be used ({e}); check --state-dir is writable"
            ) from None

    def add(self, id: str, payload: str) -> int:
        try:
            cur = self._db.execute("INSERT INTO outbox (id, payload) VALUES (?, ?)", (id, payload))
        except sqlite3.Error as e:
            raise OutboxError(f"outbox {self.path}: cannot store result {id} ({e})") from None
        return int(cur.lastrowid or 0)

    def pending(self, limit: int = 100) -> list[Pending]:
        rows = self._db.execute(
            "SELECT seq, id, payload FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [Pending(*row) for row in rows]

    def remove(self, seq: int) -> None:
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest_created(self) -> float | None:
        row = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return row[0]

    def close(self) -> None:
        self._db.close()
