"""Validate raw `GetExecutionHistory` events into `HistoryEvent`s, with errors that name the event."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import orjson

from exporter.model import HistoryError, HistoryEvent

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# orjson reads an integer past 64 bits (from 18446744073709551616 up, or below
# -9223372036854775808) as a float. Such a number has 19 digits or more, right after what may come
# before a JSON number (`:`, `,`, `[`, white space, a minus sign) or at the very start. With the
# digits made zeros and those characters colons, `:` and 19 zeros say such a number may be there.
# Digits in a string may follow those characters too (the standard library then reads the text:
# the same result, later), but CloudWatch Logs' 56-digit event ids ("eventId": "3113...") follow
# a quote. A translation and a find are ten times as fast as a regular expression.
_NUMBER_STARTS = bytes.maketrans(b"123456789,[ \t\n\r-", b"000000000:::::::")
_LONG_INTEGER = b":" + b"0" * 19


def _may_hold_long_integer(raw: bytes) -> bool:
    marked = raw.translate(_NUMBER_STARTS)
    return marked.find(_LONG_INTEGER) >= 0 or marked.startswith(_LONG_INTEGER[1:])


def loads(data: bytes | str) -> Any:
    """JSON as the standard library reads it (and as botocore does), four times as fast: orjson,
    unless orjson would read it otherwise (it refuses NaN and lone surrogates, and reads an
    integer past 64 bits as a float), then `json.loads`; so the two differ only in speed.
    ValueError when it is not JSON."""
    try:
        raw = data.encode() if isinstance(data, str) else data
    except UnicodeEncodeError:  # a lone surrogate
        return json.loads(data)
    if not _may_hold_long_integer(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def loads_unchecked(data: bytes) -> Any:
    """orjson's reading without `loads`' check for long integers (as costly as the parse over a
    1 MB answer), the standard library's where orjson refuses the text: for a caller that keeps
    only numbers it checks itself, since an integer past 64 bits comes back a float."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads(data)


def _where(raw: Mapping[str, Any], position: int) -> str:
    event_id = raw.get("id")
    event_type = raw.get("type")
    label = f"event {event_id}" if isinstance(event_id, int) else f"event at position {position}"
    return f"{label} ({event_type})" if isinstance(event_type, str) else label


def timestamp_ns(value: object) -> int:
    """Nanoseconds since the epoch from a datetime, an ISO 8601 string or epoch seconds."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if isinstance(value, bool):
        raise TypeError("expected a datetime, an ISO 8601 string or epoch seconds, got a boolean")
    if isinstance(value, int | float):
        # To the microsecond, as botocore's datetimes: epoch seconds as a float are not exact
        # (1.7e9 s leaves about 240 ns of resolution), and an event read from a log (epoch ms)
        # must time to the nanosecond as the same event read from its history does.
        return round(value * 1_000_000) * 1000
    if isinstance(value, str):
        try:
            return timestamp_ns(dt.datetime.fromisoformat(value))
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 timestamp") from None
    raise TypeError(f"expected a datetime, an ISO 8601 string or epoch seconds, got {type(value).__name__}")


_DETAILS_KEYS: dict[str, str] = {}


def details_key(event_type: str) -> str:
    """Where AWS puts an event type's details: `TaskScheduled` -> `taskScheduledEventDetails`,
    every `*StateEntered` -> `stateEnteredEventDetails`."""
    key = _DETAILS_KEYS.get(event_type)
    if key is None:
        if event_type.endswith("StateEntered"):
            key = "stateEnteredEventDetails"
        elif event_type.endswith("StateExited"):
            key = "stateExitedEventDetails"
        else:
            key = event_type[:1].lower() + event_type[1:] + "EventDetails"
        if len(_DETAILS_KEYS) < 4096:
            _DETAILS_KEYS[event_type] = key
    return key


def parse_event(raw: object, position: int = 0) -> HistoryEvent:
    """One raw event dict as `GetExecutionHistory` returns it, checked field by field."""
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise HistoryError(f"event at position {position}: expected an object, got {type(raw).__name__}")
    event_id = raw.get("id")
    previous = raw.get("previousEventId", 0)
    event_type = raw.get("type")
    stamp = raw.get("timestamp")
    # The common case, checked with exact types for speed; anything else takes the slow path.
    if (
        type(event_id) is int
        and event_id > 0
        and type(previous) is int
        and previous >= 0
        and type(event_type) is str
        and event_type
    ):
        if type(stamp) is float or type(stamp) is int:
            when = round(stamp * 1_000_000) * 1000  # see timestamp_ns
        else:
            when = _timestamp(raw, position, stamp)
        details = raw.get(_DETAILS_KEYS.get(event_type) or details_key(event_type))
        if type(details) is dict:
            return HistoryEvent(event_id, previous, when, event_type, details)
    return _parse_slowly(raw, position)


def _timestamp(raw: Mapping[str, Any], position: int, stamp: object) -> int:
    if stamp is None and "timestamp" not in raw:
        raise HistoryError(f"{_where(raw, position)}: timestamp: missing")
    try:
        return timestamp_ns(stamp)
    except (TypeError, ValueError, OverflowError) as exc:
        raise HistoryError(f"{_where(raw, position)}: timestamp: {exc}") from None


def _parse_slowly(raw: Mapping[str, Any], position: int) -> HistoryEvent:
    where = _where(raw, position)
    event_id = raw.get("id")
    if isinstance(event_id, bool) or not isinstance(event_id, int) or event_id < 1:
        raise HistoryError(f"{where}: id: expected a positive integer, got {event_id!r}")
    previous = raw.get("previousEventId", 0)
    if isinstance(previous, bool) or not isinstance(previous, int) or previous < 0:
        raise HistoryError(f"{where}: previousEventId: expected an integer >= 0, got {previous!r}")
    event_type = raw.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise HistoryError(f"{where}: type: expected a non-empty string, got {event_type!r}")
    when = _timestamp(raw, position, raw.get("timestamp"))
    details: Mapping[str, Any] = {}
    for key, value in raw.items():
        if key.endswith("EventDetails"):
            if not isinstance(value, Mapping):
                raise HistoryError(f"{where}: {key}: expected an object, got {type(value).__name__}")
            details = value
            break
    return HistoryEvent(event_id, previous, when, event_type, details)
