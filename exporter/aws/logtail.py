"""Reading Step Functions' log groups in CloudWatch Logs.

`FilterLogEvents` answers in event-time order, but CloudWatch Logs delivers late and out of
order, so each read of a group starts `overlap` before where the previous one began; the events
read again are known by their CloudWatch event id and skipped. Each execution's history events
then wait in a `Reorder` buffer until their predecessors came (or the reorder window ran out), so
that the assembler sees them in id order, as `GetExecutionHistory` gives them."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.aws.source import CloudWatchLogsApi, LogRecord
from exporter.history.logevents import history_event
from exporter.model import HistoryError

log = logging.getLogger(__name__)

TERMINAL_TYPES = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"})


@dataclass
class GroupTail:
    """Where the reading of one log group stands: the time (epoch ms) its last complete read
    began, and the CloudWatch event ids read since `watermark_ms - overlap`."""

    arn: str
    watermark_ms: int | None = None
    seen: dict[str, int] = field(default_factory=dict)  # event id -> its timestamp (ms)
    failing: bool = False

    def start_ms(self, now_ms: int, overlap_ms: int, lookback_ms: int) -> int:
        base = self.watermark_ms if self.watermark_ms is not None else now_ms - lookback_ms
        return base - overlap_ms

    async def pages(
        self, api: CloudWatchLogsApi, now_ms: int, overlap_ms: int, lookback_ms: int
    ) -> AsyncIterator[tuple[list[LogRecord], int]]:
        """Page by page, the events not read before (oldest first) and how many were read again.
        The read position moves once the last page is read: a read that fails half-way starts
        from the same place next time, and what it handed over already is known by its ids."""
        start = self.start_ms(now_ms, overlap_ms, lookback_ms)
        seen = self.seen
        token: str | None = None
        while True:
            records, token = await api.filter_log_events(self.arn, start, token)
            fresh: list[LogRecord] = []
            for record in records:
                if record.event_id in seen:
                    continue
                seen[record.event_id] = record.timestamp_ms
                fresh.append(record)
            yield fresh, len(records) - len(fresh)
            if not token:
                break
        floor = now_ms - overlap_ms  # where the next read starts: older ids cannot come back
        self.seen = {key: stamp for key, stamp in seen.items() if stamp >= floor}
        self.watermark_ms = max(now_ms, self.watermark_ms or 0)


@dataclass
class Parsed:
    """The messages of one read, as history events by execution ARN, and those that were not
    Step Functions log messages (each with the reason)."""

    by_execution: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invalid: list[tuple[LogRecord, str]] = field(default_factory=list)


def parse_records(records: Iterable[LogRecord]) -> Parsed:
    parsed = Parsed()
    for record in records:
        where = f"log message {record.event_id} in stream {record.stream!r}"
        try:
            message = json.loads(record.message)
            if not isinstance(message, dict):
                raise HistoryError(f"{where}: expected a JSON object, got {type(message).__name__}")
            arn, event = history_event(message, where)
        except ValueError as exc:  # HistoryError is one; so is a message that is not JSON
            reason = (
                str(exc) if isinstance(exc, HistoryError) else f"{where}: not JSON: {record.message[:80]!r}"
            )
            parsed.invalid.append((record, reason))
            continue
        parsed.by_execution.setdefault(arn, []).append(event)
    return parsed


@dataclass
class Reorder:
    """One execution's logged events waiting for their predecessors.

    `take` hands over, in id order, the events that follow on from `after` without a hole; when
    a hole has stayed open for `window` seconds (or `eager`: the log level leaves holes on
    purpose and the execution's end has come), everything held goes, hole and all."""

    held: dict[int, dict[str, Any]] = field(default_factory=dict)
    hole_since: float | None = None  # when the oldest still-open hole was first seen

    def add(self, events: Iterable[dict[str, Any]], after: int) -> tuple[int, int]:
        """Hold the events; returns how many were new and how many came too late (at or before
        `after`, or held already)."""
        new = late = 0
        for event in events:
            event_id = event["id"]
            if event_id <= after or event_id in self.held:
                late += 1
                continue
            self.held[event_id] = event
            new += 1
        return new, late

    def take(self, after: int, now: float, window: float, eager: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        held = self.held
        while after + 1 in held:
            after += 1
            out.append(held.pop(after))
        if not held:
            self.hole_since = None
            return out
        if self.hole_since is None or out:  # a hole, or a new one after the last went
            self.hole_since = now
        ending = eager and any(event["type"] in TERMINAL_TYPES for event in held.values())
        if ending or now - self.hole_since >= window:
            out.extend(held.pop(key) for key in sorted(held))
            self.hole_since = None
        return out

    @property
    def waiting(self) -> bool:
        return bool(self.held)

    def hole(self, after: int) -> tuple[int, int] | None:
        """The ids missing before the first held event, if any are held."""
        if not self.held:
            return None
        return after + 1, min(self.held) - 1
