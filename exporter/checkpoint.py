"""CursorStore: per execution, the last event id whose spans and metrics reached the sinks.

SQLite (the standard library's) in WAL mode: a cursor written is on disk when `save` returns,
so a SIGKILL loses at most the events after it, and those are read again on restart. Beside a
running execution's cursor, in the same row (written at once), the assembler's state at that
cursor (`SpanAssembler.snapshot`): a restart goes on from there without reading the history.

The file is checked when it is opened (it opens, its schema is ours, an integrity check passes,
a write goes through): a checkpoint that cannot be used stops the exporter at start with one
line naming the path, never mid-run. A schema written by an older version is migrated in place."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exporter.shards import Layout

SCHEMA_VERSION = 3  # PRAGMA user_version; 0 with our tables is version 1 (before it was recorded)

_TABLES = """
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    redrives INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    gone INTEGER NOT NULL DEFAULT 0,
    state BLOB
);
CREATE TABLE IF NOT EXISTS watermarks (
    state_machine_arn TEXT PRIMARY KEY,
    listed_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_COLUMNS = {
    1: {
        "executions": ["arn", "cursor", "finished", "redrives", "updated_at"],
        "watermarks": ["state_machine_arn", "listed_until"],
    },
    2: {
        "executions": ["arn", "cursor", "finished", "redrives", "updated_at", "gone"],
        "watermarks": ["state_machine_arn", "listed_until"],
        "meta": ["key", "value"],
    },
    3: {
        "executions": ["arn", "cursor", "finished", "redrives", "updated_at", "gone", "state"],
        "watermarks": ["state_machine_arn", "listed_until"],
        "meta": ["key", "value"],
    },
}
_MIGRATIONS = {
    1: "ALTER TABLE executions ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    2: "ALTER TABLE executions ADD COLUMN state BLOB;",
}


class CheckpointError(Exception):
    """The checkpoint cannot be used (at start) or written (mid-run); the message names the path."""


@dataclass(frozen=True, slots=True)
class Cursor:
    event_id: int
    finished: bool
    redrives: int = 0  # ExecutionRedriven events among those handled
    updated_at: float = field(default=0.0, compare=False)  # epoch seconds of its last write
    state: bytes | None = field(default=None, compare=False, repr=False)  # the assembler's, at the cursor


def _tables(db: sqlite3.Connection) -> dict[str, list[str]]:
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: [col[1] for col in db.execute(f'PRAGMA table_info("{name}")')] for name in names}


def _schema_version(db: sqlite3.Connection) -> int:
    """Which of our schemas the file holds (0: empty); raises ValueError for a foreign one."""
    tables = _tables(db)
    if not tables:
        return 0
    recorded = int(db.execute("PRAGMA user_version").fetchone()[0])
    version = recorded or 1
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"written by a newer version of this exporter (schema {version}, this one reads {SCHEMA_VERSION})"
        )
    if version not in _COLUMNS or tables != _COLUMNS[version]:
        found = ", ".join(f"{name}({', '.join(cols)})" for name, cols in sorted(tables.items()))
        raise ValueError(f"not a checkpoint of this exporter (tables: {found[:200]})")
    return version


def _prepare(db: sqlite3.Connection, path: str, clock: Callable[[], float]) -> None:
    """Check, create or migrate the schema, and prove a write goes through."""
    verdict = str(db.execute("PRAGMA quick_check(1)").fetchone()[0])
    if verdict != "ok":
        raise ValueError(f"damaged: integrity check says: {' '.join(verdict.split())[:200]}")
    version = _schema_version(db)
    db.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
    db.execute("PRAGMA synchronous=NORMAL")
    with db:
        if version == 0:
            db.executescript(_TABLES)
        else:
            for step in range(version, SCHEMA_VERSION):
                db.executescript(_MIGRATIONS[step])
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('opened_at', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (repr(clock()),),
    )


def _open(path: str, clock: Callable[[], float]) -> sqlite3.Connection:
    if not path:
        raise CheckpointError("checkpoint.path: must not be empty")
    db: sqlite3.Connection | None = None
    try:
        if path != ":memory:":
            file = Path(path)
            if file.is_dir():
                raise ValueError("is a directory")
            file.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        _prepare(db, path, clock)
        return db
    except (OSError, sqlite3.Error, ValueError) as exc:
        if db is not None:
            db.close()
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise CheckpointError(f"checkpoint.path {path!r}: cannot be used: {reason}") from None


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern (with ESCAPE '!') for the text that begins with `prefix`."""
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


class CursorStore:
    """Blocking SQLite calls behind one lock; the async methods run them in a thread."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._db = _open(path, clock)
        self._lock = threading.Lock()
        self._clock = clock

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise CheckpointError(f"checkpoint {self.path!r}: {exc}") from None

    def load(self) -> dict[str, Cursor]:
        rows = self._execute("SELECT arn, cursor, finished, redrives FROM executions").fetchall()
        return {arn: Cursor(cursor, bool(finished), redrives) for arn, cursor, finished, redrives in rows}

    def get(self, arn: str) -> Cursor | None:
        row = self._execute(
            "SELECT cursor, finished, redrives, updated_at, state FROM executions WHERE arn = ?", (arn,)
        ).fetchone()
        return Cursor(row[0], bool(row[1]), row[2], row[3], row[4]) if row else None

    def unfinished(self, prefix: str) -> list[str]:
        """The executions whose ARN begins with `prefix` and that were not read to their end."""
        rows = self._execute(
            "SELECT arn FROM executions WHERE arn LIKE ? ESCAPE '!' AND finished = 0 AND gone = 0",
            (_like_prefix(prefix),),
        ).fetchall()
        return [row[0] for row in rows]

    def save_now(
        self, arn: str, event_id: int, finished: bool, redrives: int = 0, state: bytes | None = None
    ) -> None:
        """The cursor, and the assembler's state there (none once finished), in one write."""
        self._execute(
            "INSERT INTO executions (arn, cursor, finished, redrives, updated_at, gone, state) "
            "VALUES (?, ?, ?, ?, ?, 0, ?) "
            "ON CONFLICT(arn) DO UPDATE SET cursor = excluded.cursor, finished = excluded.finished, "
            "redrives = excluded.redrives, updated_at = excluded.updated_at, gone = 0, state = excluded.state",
            (arn, event_id, int(finished), redrives, self._clock(), None if finished else state),
        )

    async def save(
        self, arn: str, event_id: int, finished: bool, redrives: int = 0, state: bytes | None = None
    ) -> None:
        await asyncio.to_thread(self.save_now, arn, event_id, finished, redrives, state)

    def bury(self, arn: str) -> None:
        """AWS says the execution does not exist (now): keep its cursor as a tombstone, so that
        if it is listed again it resumes where it was; forgotten after the retention period."""
        self._execute("UPDATE executions SET gone = 1, updated_at = ? WHERE arn = ?", (self._clock(), arn))

    def delete(self, arn: str) -> None:
        self._execute("DELETE FROM executions WHERE arn = ?", (arn,))

    def watermark(self, state_machine_arn: str) -> float | None:
        row = self._execute(
            "SELECT listed_until FROM watermarks WHERE state_machine_arn = ?", (state_machine_arn,)
        ).fetchone()
        return float(row[0]) if row else None

    def set_watermark(self, state_machine_arn: str, listed_until: float) -> None:
        self._execute(
            "INSERT INTO watermarks (state_machine_arn, listed_until) VALUES (?, ?) "
            "ON CONFLICT(state_machine_arn) DO UPDATE SET listed_until = excluded.listed_until",
            (state_machine_arn, listed_until),
        )

    def meta(self, key: str) -> str | None:
        row = self._execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def layout(self, shard: int, total: int) -> Layout:
        """The shard layout to run with (see exporter.shards), recorded: this process's place,
        and what changed since the checkpoint last recorded one."""
        text = self.meta("shards")
        now = self._clock()
        if text is None:
            layout = Layout.first(shard, total, now)
        else:
            try:
                layout = Layout.decode(text).after_start(shard, total, now)
            except ValueError:
                raise CheckpointError(f"checkpoint {self.path!r}: unreadable shard layout {text!r}") from None
        self.set_meta("shards", layout.encode())
        return layout

    def delete_watermark(self, key: str) -> None:
        self._execute("DELETE FROM watermarks WHERE state_machine_arn = ?", (key,))

    def watermarks(self, prefix: str, suffix: str = "") -> dict[str, float]:
        """The watermarks whose key begins with `prefix` (and ends with `suffix`)."""
        pattern = _like_prefix(prefix) + suffix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
        rows = self._execute(
            "SELECT state_machine_arn, listed_until FROM watermarks WHERE state_machine_arn LIKE ? ESCAPE '!'",
            (pattern,),
        ).fetchall()
        return {key: float(value) for key, value in rows}

    def delete_watermarks(self, prefix: str) -> int:
        """Forget the watermarks whose key begins with `prefix`; returns how many."""
        return self._execute(
            "DELETE FROM watermarks WHERE state_machine_arn LIKE ? ESCAPE '!'", (_like_prefix(prefix),)
        ).rowcount

    def prune(self, retention_s: float) -> int:
        """Forget finished executions and tombstones not touched for `retention_s`; returns how many."""
        cutoff = self._clock() - retention_s
        return self._execute(
            "DELETE FROM executions WHERE (finished = 1 OR gone = 1) AND updated_at < ?", (cutoff,)
        ).rowcount
