"""CursorStore: per execution, the last event id whose spans and metrics reached the sinks.

SQLite (the standard library's) in WAL mode: a cursor written is on disk when `save` returns,
so a SIGKILL loses at most the events after it, and those are read again on restart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    redrives INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS watermarks (
    state_machine_arn TEXT PRIMARY KEY,
    listed_until REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Cursor:
    event_id: int
    finished: bool
    redrives: int = 0  # ExecutionRedriven events among those handled


class CursorStore:
    """Blocking SQLite calls behind one lock; the async methods run them in a thread."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def load(self) -> dict[str, Cursor]:
        with self._lock:
            rows = self._db.execute("SELECT arn, cursor, finished, redrives FROM executions").fetchall()
        return {arn: Cursor(cursor, bool(finished), redrives) for arn, cursor, finished, redrives in rows}

    def get(self, arn: str) -> Cursor | None:
        with self._lock:
            row = self._db.execute(
                "SELECT cursor, finished, redrives FROM executions WHERE arn = ?", (arn,)
            ).fetchone()
        return Cursor(row[0], bool(row[1]), row[2]) if row else None

    def save_now(self, arn: str, event_id: int, finished: bool, redrives: int = 0) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO executions (arn, cursor, finished, redrives, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(arn) DO UPDATE SET cursor = excluded.cursor, finished = excluded.finished, "
                "redrives = excluded.redrives, updated_at = excluded.updated_at",
                (arn, event_id, int(finished), redrives, self._clock()),
            )

    async def save(self, arn: str, event_id: int, finished: bool, redrives: int = 0) -> None:
        await asyncio.to_thread(self.save_now, arn, event_id, finished, redrives)

    def delete(self, arn: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM executions WHERE arn = ?", (arn,))

    def watermark(self, state_machine_arn: str) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT listed_until FROM watermarks WHERE state_machine_arn = ?", (state_machine_arn,)
            ).fetchone()
        return float(row[0]) if row else None

    def set_watermark(self, state_machine_arn: str, listed_until: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO watermarks (state_machine_arn, listed_until) VALUES (?, ?) "
                "ON CONFLICT(state_machine_arn) DO UPDATE SET listed_until = excluded.listed_until",
                (state_machine_arn, listed_until),
            )

    def prune(self, retention_s: float) -> int:
        """Forget finished executions not touched for `retention_s`; returns how many."""
        cutoff = self._clock() - retention_s
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM executions WHERE finished = 1 AND updated_at < ?", (cutoff,)
            )
        return cursor.rowcount
