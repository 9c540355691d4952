"""Logging set-up: text or JSON lines, with the execution or state machine ARN on each line
that is about one."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

_CONTEXT = ("execution_arn", "state_machine_arn")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT:
            value = getattr(record, key, None)
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{key}={getattr(record, key)}" for key in _CONTEXT if getattr(record, key, None))
        return f"{line} {context}" if context else line


@dataclass
class _Window:
    start: float
    held: int = 0


class RepeatFilter(logging.Filter):
    """One line per kind of warning or error per interval, with a count.

    A kind is the logger, the level, the message template and the exception's type: a thousand
    executions failing the same way print one line, and the first line of that kind after the
    interval says how many were held back since. Lines below WARNING pass untouched."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._windows: dict[tuple[object, ...], _Window] = {}

    @staticmethod
    def _kind(record: logging.LogRecord) -> tuple[object, ...]:
        args = record.args if isinstance(record.args, tuple) else ()
        errors = tuple(type(arg).__name__ for arg in args if isinstance(arg, BaseException))
        raised = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        return (record.name, record.levelno, str(record.msg), errors, raised)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind, now = self._kind(record), self._clock()
        window = self._windows.get(kind)
        if window is not None and now - window.start < self.interval_s:
            window.held += 1
            return False
        self._windows[kind] = _Window(now)
        if window is not None and window.held:
            record.msg = f"{record.msg} [{window.held} more like this in the last {self.interval_s:.0f} s]"
        return True


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_libraries()


def quiet_libraries() -> None:
    """The AWS SDK logs whole request and response bodies (execution data) at DEBUG: its loggers
    stay at WARNING whatever the exporter's own level."""
    for noisy in ("botocore", "aiobotocore", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
