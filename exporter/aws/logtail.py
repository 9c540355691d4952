"""Reading Step Functions' log groups in CloudWatch Logs.

`FilterLogEvents` answers in event-time order, but CloudWatch Logs delivers late and out of
order: each read of a group takes the events that have had a while to arrive (up to `settle`
before now) once, and, when the quota has a call to spare, starts `overlap` earlier for what came
later still; the events read again are known by their CloudWatch event id and skipped. Each execution's history events
then wait in a `Reorder` buffer until their predecessors came (or the reorder window ran out), so
that the assembler sees them in id order, as `GetExecutionHistory` gives them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from exporter.aws.source import CloudWatchLogsApi, LogRecord
from exporter.history.events import loads
from exporter.history.logevents import logged_event
from exporter.model import HistoryError, HistoryEvent

log = logging.getLogger(__name__)

TERMINAL_TYPES = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"})


@dataclass
class GroupTail:
    """Where the reading of one log group stands: the event time (epoch ms) up to which it has
    been read once, and the CloudWatch event ids read since `watermark_ms - overlap`."""

    arn: str
    watermark_ms: int | None = None
    seen: dict[str, int] = field(default_factory=dict)  # event id -> its timestamp (ms)
    failing: bool = False
    late_read: bool | None = (
        None  # whether the last read went back over the overlap (None: no overlap to go back over)
    )
    reach_ms: int | None = None  # the furthest event time a read (done or under way) covers
    backfills: int = 0  # filtered reads of single executions in this pass (see the Exporter)
    last_pages: int = 0  # pages the last read of new events took (one: a quiet group)

    async def pages(
        self, api: CloudWatchLogsApi, now_ms: int, window: ReadWindow, spare: Callable[[], bool]
    ) -> AsyncIterator[tuple[list[LogRecord], int, int]]:
        """Page by page, the events not read before (oldest first), how many were read again, and
        how many of the new ones only going back over the overlap found.

        A read takes the events from the watermark up to `window.settle_ms` before now, each
        event once: CloudWatch has had that long to deliver them. When the quota has a call to
        spare (`spare()`), it also goes back over the `window.overlap_ms` before, for what
        CloudWatch delivered later still; that part re-reads events already handed over (known by
        their ids). A quiet group (its last read took one page) does both in one call, beginning
        the read that much earlier; a busy one reads on first and goes back afterwards, page by
        page while a call is spare, so its calls go to new events first.

        The watermark moves once the new events are read: a read that fails half-way starts from
        the same place next time, and what it handed over already is known by its ids."""
        first = self.watermark_ms is None
        end = now_ms - window.settle_ms
        previous = min(now_ms - window.lookback_ms, end) if self.watermark_ms is None else self.watermark_ms
        self.late_read = None if first or not window.overlap_ms else spare()
        quiet = self.last_pages <= 1
        # older ids are read again by no read, now or later
        self.seen = {key: stamp for key, stamp in self.seen.items() if stamp >= previous - window.overlap_ms}
        if end < previous:
            return
        self.reach_ms = end
        start = previous - window.overlap_ms if self.late_read and quiet else previous
        self.last_pages = 0
        async for page in self._read(api, start, end, previous):
            self.last_pages += 1
            yield page
        self.watermark_ms = end + 1  # endTime is inclusive
        if self.late_read and not quiet:
            async for page in self._read(api, previous - window.overlap_ms, previous - 1, previous, spare):
                yield page

    async def _read(
        self,
        api: CloudWatchLogsApi,
        start: int,
        end: int,
        previous: int,
        go_on: Callable[[], bool] = lambda: True,
    ) -> AsyncIterator[tuple[list[LogRecord], int, int]]:
        seen = self.seen
        token: str | None = None
        while True:
            records, token = await api.filter_log_events(self.arn, start, end, token)
            fresh: list[LogRecord] = []
            for record in records:
                if record.event_id in seen:
                    continue
                seen[record.event_id] = record.timestamp_ms
                fresh.append(record)
            yield fresh, len(records) - len(fresh), sum(1 for r in fresh if r.timestamp_ms < previous)
            if not token or not go_on():
                break


@dataclass(frozen=True)
class ReadWindow:
    """How a log group is read (all in milliseconds): up to `settle_ms` before now, going back
    `overlap_ms` for late deliveries, and `lookback_ms` back on the very first read."""

    settle_ms: int
    overlap_ms: int
    lookback_ms: int


@dataclass
class Parsed:
    """The messages of one read, as history events by execution ARN, and those that were not
    Step Functions log messages (each with the reason)."""

    by_execution: dict[str, list[HistoryEvent]] = field(default_factory=dict)
    invalid: list[tuple[LogRecord, str]] = field(default_factory=list)


def parse_records(records: Iterable[LogRecord]) -> Parsed:
    parsed = Parsed()
    by_execution = parsed.by_execution
    for record in records:
        try:
            message = loads(record.message)
            if type(message) is not dict:
                raise HistoryError(f"expected a JSON object, got {type(message).__name__}")
            arn, event = logged_event(message, "")
        except ValueError as exc:  # HistoryError is one; so is a message that is not JSON
            parsed.invalid.append((record, _reason(record, exc)))
            continue
        events = by_execution.get(arn)
        if events is None:
            by_execution[arn] = [event]
        else:
            events.append(event)
    return parsed


def _reason(record: LogRecord, exc: ValueError) -> str:
    """Why a message was not taken, naming it (made only for those: most are fine)."""
    where = f"log message {record.event_id} in stream {record.stream!r}"
    if not isinstance(exc, HistoryError):
        return f"{where}: not JSON: {record.message[:80]!r}"
    message = loads(record.message)
    if isinstance(message, dict):
        try:
            logged_event(message, where)  # fails again, now naming the message
        except HistoryError as named:
            return str(named)
    return f"{where}: {exc}"


@dataclass
class Reorder:
    """One execution's logged events waiting for their predecessors.

    `take` hands over, in id order, the events that follow on from `after` without a hole; when
    a hole has stayed open for `window` seconds (or `eager`: the log level leaves holes on
    purpose and the execution's end has come), everything held goes, hole and all."""

    held: dict[int, HistoryEvent] = field(default_factory=dict)
    hole_since: float | None = None  # when the oldest still-open hole was first seen

    def add(self, events: Iterable[HistoryEvent], after: int) -> tuple[int, int]:
        """Hold the events; returns how many were new and how many came too late (at or before
        `after`, or held already)."""
        new = late = 0
        for event in events:
            event_id = event.id
            if event_id <= after or event_id in self.held:
                late += 1
                continue
            self.held[event_id] = event
            new += 1
        return new, late

    def take(self, after: int, now: float, window: float, eager: bool = False) -> list[HistoryEvent]:
        out: list[HistoryEvent] = []
        held = self.held
        while after + 1 in held:
            after += 1
            out.append(held.pop(after))
        if not held:
            self.hole_since = None
            return out
        if self.hole_since is None or out:  # a hole, or a new one after the last went
            self.hole_since = now
        ending = eager and any(event.type in TERMINAL_TYPES for event in held.values())
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
