"""`sfn-exporter translate`: a saved execution history to spans, as JSON lines or a waterfall."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from exporter.history.assembler import AssemblerOptions, SpanAssembler
from exporter.history.logevents import executions, log_messages
from exporter.model import ExecutionIdentity, HistoryError, SpanRecord, Status

PLACEHOLDER_ARN = "arn:aws:states:unknown:000000000000:execution:unknown:unknown"


def load_executions(text: str) -> tuple[list[tuple[str | None, list[dict[str, Any]]]], bool]:
    """Every execution in a document, as (its ARN if the document names it, its events in id
    order), and whether the document was log messages. A history (see `_history`) is one
    execution; Step Functions' CloudWatch Logs messages (what `aws logs filter-log-events`
    prints, or a list of bare messages) may hold many, in any order, each naming its ARN."""
    document = _parse(text)
    messages = log_messages(document)
    if messages is not None:
        return [(arn, events) for arn, events in executions(messages).items()], True
    events, arn = _history(document)
    return [(arn, events)], False


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"input is not JSON: {exc}") from None


def _history(document: object) -> tuple[list[dict[str, Any]], str | None]:
    """Events (sorted by id, exact repeats dropped) and the execution ARN if the document names one.

    Accepts what `aws stepfunctions get-execution-history` prints (`{"events": [...]}`), a JSON
    list of such pages, or a bare list of events."""
    pages: list[object]
    if isinstance(document, Mapping):
        pages = [document]
    elif isinstance(document, list) and all(isinstance(p, Mapping) and "events" in p for p in document):
        pages = list(document)
    elif isinstance(document, list):
        pages = [{"events": document}]
    else:
        raise HistoryError(
            f"input: expected an object with 'events' or a list, got {type(document).__name__}"
        )
    arn: str | None = None
    by_id: dict[int, dict[str, Any]] = {}
    for number, page in enumerate(pages):
        assert isinstance(page, Mapping)
        events = page.get("events")
        if not isinstance(events, list):
            raise HistoryError(f"page {number}: 'events': expected a list, got {type(events).__name__}")
        if isinstance(page.get("executionArn"), str):
            arn = page["executionArn"]
        for position, event in enumerate(events):
            if not isinstance(event, dict) or not isinstance(event.get("id"), int):
                raise HistoryError(
                    f"page {number}, event at position {position}: expected an object with an integer 'id'"
                )
            seen = by_id.get(event["id"])
            if seen is not None and seen != event:
                raise HistoryError(f"event {event['id']}: appears twice with different contents")
            by_id[event["id"]] = event
    return [by_id[key] for key in sorted(by_id)], arn


def assemble(
    events: list[dict[str, Any]], identity: ExecutionIdentity, options: AssemblerOptions | None = None
) -> list[SpanRecord]:
    """Every span of the history: finished ones in the order they closed, then the open ones."""
    assembler = SpanAssembler(identity, options)
    spans = assembler.feed(events).spans
    return spans + assembler.open_spans()


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=rest // 1000)
    return moment.isoformat().replace("+00:00", "Z")


def span_to_json(span: SpanRecord) -> dict[str, Any]:
    """The documented JSON shape of one span (ids lowercase hex, times ISO 8601 UTC)."""
    return {
        "trace_id": f"{span.trace_id:032x}",
        "span_id": f"{span.span_id:016x}",
        "parent_span_id": None if span.parent_span_id is None else f"{span.parent_span_id:016x}",
        "name": span.name,
        "kind": span.kind.value,
        "state_type": span.state_type,
        "start": _iso(span.start_ns),
        "end": _iso(span.end_ns),
        "status": span.status.value,
        "error": span.error,
        "cause": span.cause,
        "attributes": dict(span.attributes),
        "events": [
            {"name": e.name, "time": _iso(e.time_ns), "attributes": dict(e.attributes)} for e in span.events
        ],
        "links": [
            {
                "trace_id": f"{link.trace_id:032x}",
                "span_id": f"{link.span_id:016x}",
                "attributes": dict(link.attributes),
            }
            for link in span.links
        ],
    }


def json_lines(spans: Iterable[SpanRecord]) -> str:
    return "".join(json.dumps(span_to_json(span), sort_keys=True) + "\n" for span in spans)


_RED, _DIM, _RESET = "\x1b[31m", "\x1b[2m", "\x1b[0m"


def _depth_first(spans: list[SpanRecord]) -> list[tuple[int, SpanRecord]]:
    ids = {span.span_id for span in spans}
    children: dict[int | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_ns, s.opening_event_id))
    ordered: list[tuple[int, SpanRecord]] = []
    stack = [(0, span) for span in reversed(children.get(None, []))]
    while stack:
        depth, span = stack.pop()
        ordered.append((depth, span))
        stack.extend((depth + 1, child) for child in reversed(children.get(span.span_id, [])))
    return ordered


def _duration(ns: int) -> str:
    seconds = ns / 1e9
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def render_tree(spans: list[SpanRecord], width: int = 100, color: bool = False) -> str:
    """A terminal waterfall: names indented by depth, one bar per span on a shared time axis."""
    if not spans:
        return "(no spans)\n"
    start = min(s.start_ns for s in spans)
    end = max(max(s.end_ns or s.start_ns, s.start_ns) for s in spans)
    total = max(end - start, 1)
    name_width = min(44, max(20, width // 2 - 12))
    bar_width = max(10, width - name_width - 10)
    lines = []
    for depth, span in _depth_first(spans):
        label = ("  " * depth + span.name)[:name_width].ljust(name_width)
        first = (span.start_ns - start) * bar_width // total
        stop_ns = span.end_ns if span.end_ns is not None else end
        last = max(first + 1, -(-(stop_ns - start) * bar_width // total))
        bar = " " * first + ("█" if span.end_ns is not None else "░") * (last - first)
        took = _duration(stop_ns - span.start_ns) + ("…" if span.end_ns is None else "")
        line = f"{label} {bar.ljust(bar_width)} {took:>8}"
        if span.status == Status.ERROR:
            line += f"  {span.error or 'error'}"
            if color:
                line = _RED + line + _RESET
        elif span.end_ns is None and color:
            line = _DIM + line + _RESET
        lines.append(line)
    return "\n".join(lines) + "\n"
