"""CloudWatch Logs as Step Functions uses it: the log groups a logging state machine writes to,
with AWS's best-effort delivery, and the `FilterLogEvents` answers the exporter reads.

A logging state machine's execution writes one message per history event its level allows (ALL:
every event; ERROR: failures, aborts and time-outs; FATAL: the execution's own end when it is not
a success). Each message is delivered to one of the group's log streams after a random delay
(so messages arrive late and out of order across streams), or, at `loss_rate`, never. The
delivery of one event is drawn from a seed of its own (the execution ARN and the event id), so
every answer about it agrees with every other."""

from __future__ import annotations

import bisect
import json
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FATAL_TYPES = frozenset({"ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"})
ERROR_TYPES = FATAL_TYPES | frozenset({
    "FailStateEntered", "ActivityFailed", "ActivityScheduleFailed", "ActivityTimedOut",
    "LambdaFunctionFailed", "LambdaFunctionScheduleFailed", "LambdaFunctionStartFailed",
    "LambdaFunctionTimedOut", "MapIterationAborted", "MapIterationFailed", "MapRunAborted",
    "MapRunFailed", "MapStateAborted", "MapStateFailed", "ParallelStateAborted", "ParallelStateFailed",
    "TaskFailed", "TaskStartFailed", "TaskStateAborted", "TaskSubmitFailed", "TaskTimedOut",
})  # fmt: skip
LEVELS = ("ALL", "ERROR", "FATAL", "OFF")
_DATA_KEYS = ("input", "inputDetails", "output", "outputDetails")
MAX_LIMIT = 10_000
MAX_ANSWER_BYTES = 1_048_576


def logged(level: str, event_type: str) -> bool:
    """Whether Step Functions writes an event of this type at this log level."""
    if level == "ALL":
        return True
    if level == "ERROR":
        return event_type in ERROR_TYPES
    if level == "FATAL":
        return event_type in FATAL_TYPES
    return False


@dataclass(frozen=True)
class Logging:
    """A state machine's `loggingConfiguration`."""

    group: str
    level: str = "ALL"
    include_data: bool = False

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"log level {self.level!r}: expected one of {', '.join(LEVELS)}")

    def describe(self, region: str, account: str) -> dict[str, Any]:
        arn = f"arn:aws:logs:{region}:{account}:log-group:{self.group}:*"
        return {"level": self.level, "includeExecutionData": self.include_data,
                "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": arn}}]}  # fmt: skip


@dataclass
class Delivery:
    """How CloudWatch Logs delivers: a uniform delay in `delay_s`, over `streams` log streams,
    a message lost at `loss_rate`."""

    delay_s: tuple[float, float] = (0.2, 2.0)
    streams: int = 3
    loss_rate: float = 0.0


@dataclass(order=True)
class LogEvent:
    timestamp_ms: int
    sequence: int
    delivered: float = field(compare=False)
    stream: str = field(compare=False)
    message: str = field(compare=False)


@dataclass
class LogGroup:
    name: str
    events: list[LogEvent] = field(default_factory=list)  # by timestamp, then the order written
    written: int = 0
    lost: int = 0


def _as_json(value: object) -> object:
    """Data as Step Functions logs it: the JSON value, where the history has its text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def message(execution_arn: str, event: dict[str, Any], timestamp: float, include_data: bool) -> str:
    """The log message Step Functions writes for a history event (see the recorded fixtures):
    numbers as text, the event's details under `details`, data as JSON values, not text."""
    details: dict[str, Any] = {}
    for key, value in event.items():
        if key.endswith("EventDetails"):
            for name, item in value.items():
                if name in _DATA_KEYS and not include_data:
                    continue
                details[name] = _as_json(item) if name in ("input", "output") else item
    body = {
        "id": str(event["id"]), "type": event["type"], "details": details,
        "previous_event_id": str(event.get("previousEventId", 0)),
        "event_timestamp": str(round(timestamp * 1000)), "execution_arn": execution_arn,
        "redrive_count": "0",
    }  # fmt: skip
    return json.dumps(body, separators=(",", ":"))


class Logs:
    """The log groups of a simulated account and region."""

    def __init__(self, delivery: Delivery | None = None, seed: int = 1) -> None:
        self.groups: dict[str, LogGroup] = {}
        self.delivery = delivery or Delivery()
        self.seed = seed

    def group(self, name: str) -> LogGroup:
        return self.groups.setdefault(name, LogGroup(name))

    def write(self, logging: Logging, execution_arn: str, events: list[tuple[dict[str, Any], float]]) -> None:
        """Write an execution's events (each with the moment it happens) as its level allows;
        each is delivered later, or lost."""
        group = self.group(logging.group)
        delivery = self.delivery
        for event, when in events:
            if not logged(logging.level, event["type"]):
                continue
            rng = random.Random(zlib.crc32(f"{execution_arn}#{event['id']}".encode()) ^ self.seed)
            group.written += 1
            if delivery.loss_rate and rng.random() < delivery.loss_rate:
                group.lost += 1
                continue
            delay = rng.uniform(*delivery.delay_s)
            stream = f"states/{execution_arn.split(':')[6]}/{rng.randrange(delivery.streams):04d}"
            text = message(execution_arn, event, when, logging.include_data)
            bisect.insort(
                group.events, LogEvent(round(when * 1000), group.written, when + delay, stream, text)
            )

    def put(self, group: str, when: float, text: str, stream: str = "states/other/0000") -> None:
        """Write any text to a group, delivered at once (what else may share a log group)."""
        target = self.group(group)
        target.written += 1
        bisect.insort(target.events, LogEvent(round(when * 1000), target.written, when, stream, text))

    def filter_log_events(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        """`FilterLogEvents`: the delivered events of one group in [startTime, endTime], oldest
        first, at most `limit` (10,000) and about 1 MB an answer, with a `nextToken` to go on."""
        from simulator.stepfunctions import SimError

        name = params.get("logGroupName") or _group_name(params.get("logGroupIdentifier"))
        if not name:
            raise SimError("InvalidParameterException", "logGroupName or logGroupIdentifier is required")
        group = self.groups.get(name)
        if group is None:
            raise SimError("ResourceNotFoundException", "The specified log group does not exist.")
        limit = int(params.get("limit") or MAX_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise SimError("InvalidParameterException", f"limit must be between 1 and {MAX_LIMIT}")
        start = int(params.get("startTime") or 0)
        end = params.get("endTime")
        wanted = _pattern(params.get("filterPattern"))
        token = params.get("nextToken")
        if token:
            try:
                after = tuple(json.loads(token))
            except ValueError:
                raise SimError("InvalidParameterException", "The specified nextToken is invalid.") from None
            index = bisect.bisect_right(group.events, LogEvent(after[0], after[1], 0.0, "", ""))
        else:
            index = bisect.bisect_left(group.events, LogEvent(start, -1, 0.0, "", ""))
        found: list[dict[str, Any]] = []
        size = 0
        last: LogEvent | None = None
        events = group.events
        while index < len(events):
            item = events[index]
            if end is not None and item.timestamp_ms > int(end):
                break
            if len(found) >= limit or size >= MAX_ANSWER_BYTES:
                break
            last = item
            index += 1
            if item.delivered > now or (wanted is not None and not wanted(item.message)):
                continue
            found.append({
                "logStreamName": item.stream, "timestamp": item.timestamp_ms, "message": item.message,
                "ingestionTime": round(item.delivered * 1000), "eventId": _event_id(item),
            })  # fmt: skip
            size += len(item.message) + 100
        result: dict[str, Any] = {"events": found, "searchedLogStreams": []}
        more = index < len(events) and (end is None or events[index].timestamp_ms <= int(end))
        if more and last is not None:
            result["nextToken"] = json.dumps([last.timestamp_ms, last.sequence])
        return result


def _event_id(item: LogEvent) -> str:
    """A CloudWatch Logs event id as AWS writes them: 56 digits, as a string."""
    return f"{item.timestamp_ms:020d}{item.sequence:036d}"


_EQUALS = re.compile(r'^\{\s*\$\.(?P<field>[A-Za-z_][\w.]*)\s*=\s*"(?P<value>[^"]*)"\s*\}$')


def _pattern(text: object) -> Callable[[str], bool] | None:
    """A filter pattern of the one form the simulator knows, a JSON field's equality
    (`{ $.field = "value" }`), as a test of a message; None for no pattern."""
    from simulator.stepfunctions import SimError

    if not text:
        return None
    match = _EQUALS.match(str(text).strip())
    if match is None:
        raise SimError("InvalidParameterException", f"Invalid filter pattern: {text}")
    path, value = match["field"].split("."), match["value"]

    def test(message: str) -> bool:
        if value not in message:  # most messages: no need to parse them
            return False
        try:
            item: Any = json.loads(message)
        except ValueError:
            return False
        for key in path:
            if not isinstance(item, dict):
                return False
            item = item.get(key)
        return bool(item == value)

    return test


def _group_name(identifier: object) -> str | None:
    """A log group's name from `logGroupIdentifier` (its name or its ARN)."""
    if not isinstance(identifier, str) or not identifier:
        return None
    if identifier.startswith("arn:"):
        parts = identifier.split(":")
        return parts[6] if len(parts) > 6 else None
    return identifier
