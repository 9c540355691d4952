"""Step Functions' CloudWatch Logs messages as history events: each becomes the event
`GetExecutionHistory` would have given (same id, previous id, type, timestamp and details), so
nothing after this module can tell where an event came from.

A log message (what Step Functions writes for a state machine with a `loggingConfiguration`)
is a JSON object with `id`, `previous_event_id`, `redrive_count` and `event_timestamp` (epoch
milliseconds) as strings, `type`, `details` (the history event's `...EventDetails`) and
`execution_arn`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from exporter.history.events import details_key, parse_event
from exporter.model import HistoryError, HistoryEvent

_FIELDS = ("id", "previous_event_id", "event_timestamp", "type", "execution_arn")
_FIELD_SET = frozenset(_FIELDS)


def _number(message: Mapping[str, Any], field: str, where: str) -> int:
    value = message[field]
    kind = type(value)
    if kind is str or kind is int:  # not a bool (an int to isinstance)
        try:
            return int(value)
        except ValueError:
            pass
    raise HistoryError(f"{where}: {field}: expected a number as text, got {value!r}"[:300])


def _usual(message: Mapping[str, Any]) -> tuple[str, str, int, int, int, dict[str, Any] | None] | None:
    """The usual message, as Step Functions writes it (numbers as text, details an object), read:
    ARN, type, id, previous id, epoch milliseconds and details; None for anything else (which
    the field-by-field reading names)."""
    get = message.get
    arn, event_type, event_id = get("execution_arn"), get("type"), get("id")
    previous, stamp, details = get("previous_event_id"), get("event_timestamp"), get("details")
    if (
        type(arn) is str and arn and type(event_type) is str and event_type
        and type(event_id) is str and type(previous) is str and type(stamp) is str
        and (details is None or type(details) is dict)
    ):  # fmt: skip
        try:
            return arn, event_type, int(event_id), int(previous), int(stamp), details
        except ValueError:
            return None
    return None


def history_event(message: Mapping[str, Any], where: str = "log message") -> tuple[str, dict[str, Any]]:
    """The execution ARN a log message belongs to, and the history event it carries."""
    usual = _usual(message)
    if usual is None:
        return _history_event(message, where)
    arn, event_type, event_id, previous, stamp_ms, details = usual
    event: dict[str, Any] = {
        "id": event_id, "previousEventId": previous, "timestamp": stamp_ms / 1000, "type": event_type,
    }  # fmt: skip
    if details is not None:
        event[details_key(event_type)] = dict(details)
    return arn, event


def logged_event(message: Mapping[str, Any], where: str = "log message") -> tuple[str, HistoryEvent]:
    """The execution ARN a log message belongs to, and its event validated: what `parse_event`
    makes of the history event `history_event` gives (the same event, or an error naming the
    message), without that dict in between. The log source reads each message this way."""
    usual = _usual(message)
    if usual is not None:
        arn, event_type, event_id, previous, stamp_ms, details = usual
        if event_id > 0 and previous >= 0:
            # the time as parse_event reads the history event's epoch seconds
            when_ns = round(stamp_ms / 1000 * 1_000_000) * 1000
            return arn, HistoryEvent(
                event_id, previous, when_ns, event_type, {} if details is None else details
            )
    arn, event = history_event(message, where)
    try:
        return arn, parse_event(event)
    except HistoryError as exc:
        raise HistoryError(f"{where}: {exc}") from None


def _history_event(message: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """`history_event`, field by field, each error naming the field."""
    if not _FIELD_SET.issubset(message):
        missing = [field for field in _FIELDS if field not in message]
        raise HistoryError(f"{where}: missing {', '.join(missing)}")
    arn, event_type = message["execution_arn"], message["type"]
    if not isinstance(arn, str) or not arn:
        raise HistoryError(f"{where}: execution_arn: expected an ARN, got {arn!r}"[:300])
    if not isinstance(event_type, str) or not event_type:
        raise HistoryError(f"{where}: type: expected an event type, got {event_type!r}"[:300])
    event_id = _number(message, "id", where)
    event: dict[str, Any] = {
        "id": event_id,
        "previousEventId": _number(message, "previous_event_id", where),
        "timestamp": _number(message, "event_timestamp", where) / 1000,
        "type": event_type,
    }
    details = message.get("details")
    if details is not None:
        if not isinstance(details, Mapping):
            raise HistoryError(f"{where} (event {event_id}, {event_type}): details: expected an object")
        event[details_key(event_type)] = dict(details)
    return arn, event


def log_messages(document: object) -> list[Mapping[str, Any]] | None:
    """The log messages in what `aws logs filter-log-events` prints (`{"events": [{"message":
    ...}]}`, or a list of such pages) or in a JSON list of bare messages (objects or their JSON
    text); None when the document is not logs (a history, say)."""
    pages = document if isinstance(document, list) else [document]
    if pages and all(isinstance(page, Mapping) and isinstance(page.get("events"), list) for page in pages):
        entries = [entry for page in pages for entry in page["events"]]  # type: ignore[index]
        if not entries or not all(isinstance(entry, Mapping) and "message" in entry for entry in entries):
            return None
        raw: list[object] = [entry["message"] for entry in entries]
    elif isinstance(document, list) and document and all(_looks_like_message(item) for item in document):
        raw = list(document)
    else:
        return None
    return [_message(item, position) for position, item in enumerate(raw)]


def _message(item: object, position: int) -> Mapping[str, Any]:
    if isinstance(item, str):
        try:
            item = json.loads(item)
        except ValueError:
            raise HistoryError(f"log message {position}: not JSON: {str(item)[:80]!r}") from None
    if not isinstance(item, Mapping):
        raise HistoryError(f"log message {position}: expected an object, got {type(item).__name__}")
    return item


def _looks_like_message(item: object) -> bool:
    if isinstance(item, str):
        return '"execution_arn"' in item
    return isinstance(item, Mapping) and "execution_arn" in item and "event_timestamp" in item


def executions(messages: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each execution's events, in id order, whatever order the messages came in (CloudWatch
    Logs interleaves streams and delivers late); a message repeated is kept once, two different
    messages with one id are an error."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for position, message in enumerate(messages):
        arn, event = history_event(message, f"log message {position}")
        events = found.setdefault(arn, {})
        seen = events.get(event["id"])
        if seen is not None and seen != event:
            raise HistoryError(
                f"log message {position}: {arn}: event {event['id']} appears twice, differently"
            )
        events[event["id"]] = event
    return {arn: [events[key] for key in sorted(events)] for arn, events in sorted(found.items())}
