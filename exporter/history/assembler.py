"""SpanAssembler turns one execution's history events into span records and metric observations.

Pure: no I/O, no clock, no globals. Events go in in id order, in batches of any size; the output
does not depend on how the history was split. Memory is bounded by the spans still open (plus a
fixed window of recently closed ones), not by the length of the history.

How an event finds its place: `previousEventId` points at the event before it in its own branch
or iteration, so each event is filed under the span it belongs to (its "owner"), and the next
event looks its predecessor up. Only the newest event of each span is remembered. Where the chain
does not say enough (a Map iteration pointing at the previous iteration's last event, masked or
zero ids), the event's own details (state name, Map name and index) decide, and failing that the
span that received the last event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from exporter.history.catalogue import clip_label
from exporter.history.events import parse_event
from exporter.history.ids import SpanIds, parse_xray_header, trace_id_for
from exporter.history.semconv import lambda_invocation, task_attributes
from exporter.model import (
    AttributeValue,
    ExecutionIdentity,
    HistoryError,
    HistoryEvent,
    MapRun,
    Observation,
    SpanEvent,
    SpanKind,
    SpanLink,
    SpanRecord,
    Status,
)

_ENTERED = re.compile(r"^(\w+)StateEntered$")
_EXITED = re.compile(r"^(\w+)StateExited$")
_ABORTED = re.compile(r"^(\w+)StateAborted$")

# How many of each open span's newest events stay resolvable. More than one, because several
# events can point at the same one (MapStateSucceeded and MapStateExited both point at the last
# iteration's end, with other events of the same Map state in between).
_TIPS_KEPT = 4
# How many events of closed spans stay resolvable, at the least, for events that point back
# at them (the newest ones are kept; they are pruned in sweeps, not one by one).
_CLOSED_TIPS_KEPT = 1024
_MAX_EVENT_ATTRIBUTE = 1024
# Text fields of event details that are not execution data: what a span event may carry as is.
_PLAIN_TEXT_FIELDS = frozenset({
    "name", "resource", "resourceType", "region", "error", "activityArn", "mapRunArn",
    "stateMachineArn", "stateMachineAliasArn", "stateMachineVersionArn", "roleArn", "location", "state",
})  # fmt: skip

SCOPE_KINDS = frozenset({SpanKind.EXECUTION, SpanKind.PARALLEL_BRANCH, SpanKind.MAP_ITERATION})
ATTEMPT_KINDS = frozenset({SpanKind.TASK, SpanKind.LAMBDA, SpanKind.ACTIVITY})

# Attempt event families: the type prefix and the kind of span one attempt gets.
_ATTEMPT_FAMILIES: dict[str, SpanKind] = {
    "Task": SpanKind.TASK,
    "LambdaFunction": SpanKind.LAMBDA,
    "Activity": SpanKind.ACTIVITY,
}
_ATTEMPT_PROGRESS = ("Started", "Submitted")
_ATTEMPT_CLOSE = {
    "Succeeded": "succeeded",
    "Failed": "failed",
    "TimedOut": "timed_out",
    "StartFailed": "failed",
    "SubmitFailed": "failed",
    "ScheduleFailed": "failed",
}
_TERMINAL = {
    "ExecutionSucceeded": "succeeded",
    "ExecutionFailed": "failed",
    "ExecutionTimedOut": "timed_out",
    "ExecutionAborted": "aborted",
}
_EXECUTION_STATUS = {
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "timed_out": "TIMED_OUT",
    "aborted": "ABORTED",
    "incomplete": "UNKNOWN",  # its record stopped before its end (see `SpanAssembler.abandon`)
}
_END_SUFFIX = {"Succeeded": "succeeded", "Failed": "failed", "Aborted": "aborted"}
# Known event types that carry no span of their own; kept as span events, not counted unknown.
_PLAIN_EVENTS = frozenset({"MapRunRedriven", "TaskStateTimedOut"})


@dataclass(frozen=True, slots=True)
class AssemblerOptions:
    """What the assembler copies from events besides timing and structure."""

    include_data: bool = False  # inputs, outputs, task parameters
    include_causes: bool = True  # error causes (error names are always kept: they label metrics)
    max_data_bytes: int = 4096
    redact: Callable[[str], str] | None = None  # applied before truncation
    execution_name: str = "keep"  # keep, hash (sha256, 16 hex digits) or drop
    # OpenTelemetry's rule: status UNSET on success, and a failure a Catch handled is no error
    # (an `exception` event and sfn.outcome=caught say what happened). True: OK on success and
    # ERROR on a caught failure, as before.
    legacy_status: bool = False
    # The record holds only some events on purpose (a log group at level ERROR or FATAL): what
    # it leaves out (holes in the ids, a missing ExecutionStarted, a task failure without its
    # state) is no anomaly, and an execution whose start is not in the record has no duration.
    partial: bool = False


@dataclass(slots=True)
class Assembled:
    """What one `feed` call produced: spans that finished, metric observations, and the times of
    the events it consumed (nanoseconds since the epoch, in id order)."""

    spans: list[SpanRecord] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    event_times_ns: list[int] = field(default_factory=list)


_NO_ITERATIONS: dict[int, _Span] = {}  # shared, never written to
_NO_ATTRIBUTES: dict[str, AttributeValue] = {}  # a closed span's (its record took them): never written to


class _Closed:
    """What the event map keeps of a closed span in its stead: that it is closed, its kind and
    state type (an abort names a state already closed), and its parent (a chain of spans is
    walked up past closed ones). The closed span itself is not kept: thousands of executions
    are tracked at once."""

    __slots__ = ("closed", "kind", "parent", "state_type")

    def __init__(self, span: _Span) -> None:
        self.parent = span.parent
        self.kind = span.kind
        self.state_type = span.state_type
        self.closed = True

    def ancestors(self) -> Iterator[_Span]:
        yield cast(_Span, self)
        if self.parent is not None:
            yield from self.parent.ancestors()


class _Span:
    """A span still being built. Mutable; becomes a SpanRecord when it closes."""

    __slots__ = (
        "attempts",
        "attributes",
        "branch_count",
        "cause",
        "children",
        "closed",
        "end_ns",
        "error",
        "events",
        "iterations",
        "kind",
        "last_attempt_failed",
        "last_ns",
        "links",
        "name",
        "opening_event_id",
        "outcome",
        "parent",
        "parent_span_id",
        "pending_error",
        "span_id",
        "start_ns",
        "started",
        "state_type",
        "tips",
        "trace_id",
    )  # fmt: skip

    def __init__(
        self, kind: SpanKind, name: str, parent: _Span | None, trace_id: int, span_id: int,
        start_ns: int, opening_event_id: int, state_type: str | None = None,
    ) -> None:  # fmt: skip
        self.kind = kind
        self.name = name
        self.parent = parent
        self.span_id = span_id
        self.trace_id = trace_id
        self.parent_span_id: int | None = parent.span_id if parent is not None else None
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.last_ns = start_ns
        self.opening_event_id = opening_event_id
        self.state_type = state_type
        self.attributes: dict[str, AttributeValue] = {"sfn.event.id": opening_event_id}
        # Most spans have no events, links or iterations: empty tuples and a shared empty dict
        # spare the allocations (and the garbage collector's passes over them).
        self.events: tuple[SpanEvent, ...] = ()
        self.links: tuple[SpanLink, ...] = ()
        self.children: dict[int, _Span] = {}
        self.closed = False
        self.outcome = ""
        self.error: str | None = None
        self.cause: str | None = None
        self.tips: list[int] = []
        # state spans only
        self.pending_error: tuple[str | None, str | None] | None = None
        self.started = False
        self.attempts = 0
        self.last_attempt_failed = False
        self.branch_count = 0
        self.iterations: dict[int, _Span] = _NO_ITERATIONS

    def ancestors(self) -> Iterator[_Span]:
        span: _Span | None = self
        while span is not None:
            yield span
            span = span.parent

    def record(self, legacy_status: bool = False) -> SpanRecord:
        """The span as a record. A closed span never changes again, so it hands over its
        attributes; an open one gives a copy."""
        if not self.closed:
            status = Status.UNSET
            attributes = dict(self.attributes)
        else:
            if self.outcome in ("succeeded", "caught", "incomplete"):
                status = Status.UNSET
                if legacy_status:
                    status = Status.OK if self.outcome == "succeeded" else Status.ERROR
            else:
                status = Status.ERROR
            attributes = self.attributes
        return SpanRecord(
            self.trace_id, self.span_id, self.parent_span_id, self.name, self.kind, self.start_ns,
            self.end_ns, status, self.error, self.cause, attributes, self.events,
            self.links, self.state_type, self.opening_event_id,
        )  # fmt: skip


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _attempt_attributes(
    kind: SpanKind, details: Mapping[str, object], resource: str, resource_type: str | None
) -> dict[str, AttributeValue]:
    """What an attempt's scheduling event says of the call: resource, timeouts, and the
    semantic-convention names of a Lambda invocation or an AWS service call."""
    attributes: dict[str, AttributeValue] = {}
    if resource:
        attributes["sfn.task.resource"] = resource
    if resource_type:
        attributes["sfn.task.resource_type"] = resource_type
    if kind == SpanKind.ACTIVITY and resource:
        attributes["aws.step_functions.activity.arn"] = resource
    elif kind == SpanKind.LAMBDA and resource:
        attributes.update(lambda_invocation(resource, _text(details.get("region"))))
    elif kind == SpanKind.TASK:
        attributes.update(
            task_attributes(resource, resource_type, details.get("region"), details.get("parameters"))
        )
    for key, attribute in (
        ("timeoutInSeconds", "sfn.task.timeout_seconds"),
        ("heartbeatInSeconds", "sfn.task.heartbeat_seconds"),
    ):
        value = details.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            attributes[attribute] = value
    return attributes


_SNAPSHOT_VERSION = 1


def _encode_span(span: _Span, ref: Callable[[object | None], str | None]) -> dict[str, object]:
    return {
        "k": span.kind.value, "n": span.name, "p": ref(span.parent), "id": span.span_id,
        "t": span.trace_id, "ps": span.parent_span_id, "s": span.start_ns, "e": span.end_ns,
        "l": span.last_ns, "o": span.opening_event_id, "st": span.state_type,
        "a": None if span.attributes is _NO_ATTRIBUTES else span.attributes,
        "ev": [[e.name, e.time_ns, dict(e.attributes)] for e in span.events],
        "li": [[link.trace_id, link.span_id, dict(link.attributes)] for link in span.links],
        "ch": [[key, ref(child)] for key, child in span.children.items()], "c": span.closed,
        "out": span.outcome, "err": span.error, "cau": span.cause, "tips": span.tips,
        "pe": list(span.pending_error) if span.pending_error is not None else None,
        "sd": span.started, "at": span.attempts, "laf": span.last_attempt_failed,
        "bc": span.branch_count,
        "it": None if span.iterations is _NO_ITERATIONS
        else [[index, ref(child)] for index, child in span.iterations.items()],
    }  # fmt: skip


def _decode_span(span: _Span, encoded: dict[str, Any], obj: Callable[[str | None], Any]) -> None:
    span.kind, span.name, span.parent = SpanKind(encoded["k"]), sys.intern(encoded["n"]), obj(encoded["p"])
    span.span_id, span.trace_id, span.parent_span_id = encoded["id"], encoded["t"], encoded["ps"]
    span.start_ns, span.end_ns, span.last_ns = encoded["s"], encoded["e"], encoded["l"]
    span.opening_event_id, span.state_type = encoded["o"], encoded["st"]
    span.attributes = _NO_ATTRIBUTES if encoded["a"] is None else dict(encoded["a"])
    span.events = tuple(SpanEvent(name, time_ns, attributes) for name, time_ns, attributes in encoded["ev"])
    span.links = tuple(
        SpanLink(trace_id, span_id, attributes) for trace_id, span_id, attributes in encoded["li"]
    )
    span.children = {int(key): obj(child) for key, child in encoded["ch"]}
    span.closed, span.outcome, span.error, span.cause = (
        encoded["c"],
        encoded["out"],
        encoded["err"],
        encoded["cau"],
    )
    span.tips = list(encoded["tips"])
    span.pending_error = (encoded["pe"][0], encoded["pe"][1]) if encoded["pe"] is not None else None
    span.started, span.attempts = encoded["sd"], encoded["at"]
    span.last_attempt_failed, span.branch_count = encoded["laf"], encoded["bc"]
    span.iterations = (
        _NO_ITERATIONS
        if encoded["it"] is None
        else {int(index): obj(child) for index, child in encoded["it"]}
    )


class SpanAssembler:
    """Consumes one execution's history events in id order; yields finished spans and observations."""

    __slots__ = (
        "_last_active", "_open", "_out", "_owner", "_owner_limit", "_remote_parent", "_root", "_run",
        "_span_ids", "_start_known", "_trace_id", "identity", "last_event_id", "map_runs", "options",
        "redrive_count",
    )  # fmt: skip

    def __init__(self, identity: ExecutionIdentity, options: AssemblerOptions | None = None) -> None:
        self.identity = identity
        self.options = options or AssemblerOptions()
        self.last_event_id = 0
        self.redrive_count = 0
        self._trace_id = trace_id_for(identity.execution_arn)
        self._span_ids = SpanIds(identity.execution_arn)
        self._remote_parent: int | None = None
        joined = parse_xray_header(identity.trace_header)
        if joined is not None:
            self._trace_id, self._remote_parent = joined
        if identity.map_run is not None and identity.nested:  # a child, in its parent's trace
            self._trace_id, self._remote_parent = identity.map_run.trace_id, identity.map_run.span_id
        self.map_runs: dict[str, MapRun] = {}  # the map runs this execution started, by ARN
        self._root: _Span | None = None
        self._start_known = True  # the record holds the execution's start
        self._run: _Span | None = None  # the root, or the span of the latest redrive
        self._owner: dict[int, _Span] = {}
        self._owner_limit = _CLOSED_TIPS_KEPT
        self._last_active: _Span | None = None
        self._open: dict[int, _Span] = {}
        self._out = Assembled()

    # ------------------------------------------------------------------ public API

    @property
    def trace_id(self) -> int:
        return self._trace_id

    @property
    def finished(self) -> bool:
        """True once the execution reached a terminal event (a redrive makes it False again)."""
        return self._run is not None and self._run.closed

    @property
    def open_span_count(self) -> int:
        return len(self._open)

    def feed(self, raw_events: Iterable[object]) -> Assembled:
        """Consume a batch of events: raw ones (as `GetExecutionHistory` gives them) or
        `HistoryEvent`s validated already (the log source's). The whole batch is checked first:
        on a HistoryError nothing of it was consumed."""
        events = [
            raw if type(raw) is HistoryEvent else parse_event(raw, position)
            for position, raw in enumerate(raw_events)
        ]
        last = self.last_event_id
        for event in events:
            if event.id <= last:
                raise HistoryError(
                    f"event {event.id} ({event.type}): id is not after event {last}: "
                    "events must come once each, in id order"
                )
            last = event.id
        for event in events:
            self._apply(event)
        out, self._out = self._out, Assembled()
        out.event_times_ns = [event.timestamp_ns for event in events]
        return out

    # ------------------------------------------------------------------ snapshots
    # What the assembler holds between two polls, as bytes the checkpoint keeps beside the
    # cursor: a restarted exporter goes on from there instead of reading the history again.

    def snapshot(self) -> bytes:
        """The state between two feeds (open spans, the closed ones events may point back at,
        the event map, the map runs), JSON compressed with zlib."""
        if self._out.spans or self._out.observations:
            raise ValueError("a snapshot is taken between feeds, not during one")
        refs: dict[int, str] = {}  # id(object) -> its reference: "s<index>" or "c<index>"
        spans: list[_Span] = []
        stubs: list[_Closed] = []

        def ref(obj: object | None) -> str | None:
            if obj is None:
                return None
            key = id(obj)
            if key not in refs:
                if isinstance(obj, _Span):
                    refs[key] = f"s{len(spans)}"
                    spans.append(obj)
                else:
                    assert isinstance(obj, _Closed)
                    refs[key] = f"c{len(stubs)}"
                    stubs.append(obj)
            return refs[key]

        body: dict[str, object] = {
            "v": _SNAPSHOT_VERSION, "last": self.last_event_id, "redrives": self.redrive_count,
            "trace": self._trace_id, "remote": self._remote_parent, "start_known": self._start_known,
            "owner_limit": self._owner_limit, "root": ref(self._root), "run": ref(self._run),
            "last_active": ref(self._last_active), "open": [ref(span) for span in self._open.values()],
            "owner": [[event_id, ref(span)] for event_id, span in self._owner.items()],
            "map_runs": [dataclasses.astuple(run) for run in self.map_runs.values()],
        }  # fmt: skip
        encoded_spans: list[dict[str, object]] = []
        encoded_stubs: list[list[object]] = []
        while len(encoded_spans) < len(spans) or len(encoded_stubs) < len(stubs):
            while len(encoded_spans) < len(spans):  # each span's references add the spans they name
                encoded_spans.append(_encode_span(spans[len(encoded_spans)], ref))
            while len(encoded_stubs) < len(stubs):
                stub = stubs[len(encoded_stubs)]
                encoded_stubs.append([stub.kind.value, stub.state_type, ref(stub.parent)])
        body["spans"], body["stubs"] = encoded_spans, encoded_stubs
        return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)

    @classmethod
    def restore(
        cls, identity: ExecutionIdentity, data: bytes, options: AssemblerOptions | None = None
    ) -> SpanAssembler:
        """An assembler in the state a `snapshot` holds, for the same execution. Raises ValueError
        when the bytes are not such a snapshot."""
        try:
            body = json.loads(zlib.decompress(data))
            if not isinstance(body, dict) or body.get("v") != _SNAPSHOT_VERSION:
                raise ValueError(f"not a snapshot of version {_SNAPSHOT_VERSION}")
            return cls._restored(identity, body, options)
        except (zlib.error, KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise ValueError(f"{identity.execution_arn}: cannot restore the assembler state: {exc}") from None

    @classmethod
    def _restored(
        cls, identity: ExecutionIdentity, body: dict[str, Any], options: AssemblerOptions | None
    ) -> SpanAssembler:
        assembler = cls(identity, options)
        spans = [_Span.__new__(_Span) for _ in body["spans"]]
        stubs = [_Closed.__new__(_Closed) for _ in body["stubs"]]

        def obj(reference: str | None) -> Any:
            if reference is None:
                return None
            return (spans if reference[0] == "s" else stubs)[int(reference[1:])]

        for span, encoded in zip(spans, body["spans"], strict=True):
            _decode_span(span, encoded, obj)
        for stub, (kind, state_type, parent) in zip(stubs, body["stubs"], strict=True):
            stub.kind = SpanKind(kind)
            stub.state_type, stub.parent, stub.closed = state_type, obj(parent), True
        assembler.last_event_id = int(body["last"])
        assembler.redrive_count = int(body["redrives"])
        assembler._trace_id, assembler._remote_parent = int(body["trace"]), body["remote"]
        assembler._start_known = bool(body["start_known"])
        assembler._owner_limit = int(body["owner_limit"])
        assembler._root, assembler._run = obj(body["root"]), obj(body["run"])
        assembler._last_active = obj(body["last_active"])
        assembler._open = {span.span_id: span for span in map(obj, body["open"])}
        assembler._owner = {int(event_id): obj(reference) for event_id, reference in body["owner"]}
        assembler.map_runs = {fields[0]: MapRun(*fields) for fields in body["map_runs"]}
        return assembler

    def abandon(self, anomaly: str = "incomplete_log") -> Assembled:
        """The record stops here for good (an EXPRESS execution whose end never reached its log):
        close whatever is open at the newest event it holds, with outcome `incomplete` (status UNSET: how it ended
        is not known), each span with an `sfn.anomaly` event, the anomaly counted once and the
        execution counted as finished with status UNKNOWN; for a partial record (see
        `AssemblerOptions.partial`) without the anomaly. Nothing open: nothing happens."""
        run = self._run
        if run is None or run.closed:
            return Assembled()
        end_ns = max(max(span.last_ns, span.start_ns) for span in self._open.values())
        if not self.options.partial:  # a partial record's end is often not in it (a success)
            self._observe("sfn_history_anomalies_total", self.identity.state_machine_name, anomaly)
            mark = SpanEvent(
                "sfn.anomaly", end_ns, {"sfn.anomaly": anomaly, "sfn.event.id": self.last_event_id}
            )
            for span in self._open.values():
                span.events += (mark,)
        self._close(run, end_ns, "incomplete")
        out, self._out = self._out, Assembled()
        return out

    def open_spans(self) -> list[SpanRecord]:
        """Snapshots of the spans still open, parents first (end is None, status UNSET)."""
        return [span.record() for span in self._open.values()]

    # ------------------------------------------------------------------ dispatch

    def _apply(self, event: HistoryEvent) -> None:
        last = self.last_event_id
        if event.id > last + 1 and last:
            self._anomaly(event, "missing_event_ids", f"ids {last + 1}..{event.id - 1}")
        self.last_event_id = event.id
        if event.previous_id >= event.id:
            self._anomaly(event, "bad_previous_event_id", str(event.previous_id))
            event = HistoryEvent(event.id, 0, event.timestamp_ns, event.type, event.details)
        kind = event.type
        if kind == "ExecutionStarted":
            self._execution_started(event)
            return
        if self._root is None:
            self._open_root(event, synthesized=True)
        method, extra = _ROUTES.get(kind) or _route(kind)
        if extra:
            method(self, event, *extra)
        else:
            method(self, event)

    # ------------------------------------------------------------------ bookkeeping

    def _observe(self, metric: str, *labels: str, value: float = 1.0) -> None:
        self._out.observations.append(Observation(metric, labels, value))

    def _register(self, event: HistoryEvent, span: _Span) -> None:
        """File `event` under the innermost open span from `span` up, so that an event pointing
        back at it lands there."""
        if span.closed:
            span = next((s for s in span.ancestors() if not s.closed), span)
        tips = span.tips
        tips.append(event.id)
        if len(tips) > _TIPS_KEPT:
            old = tips.pop(0)
            if self._owner.get(old) is span:
                del self._owner[old]
        owner = self._owner
        owner[event.id] = span
        if len(owner) > self._owner_limit:
            self._prune_owner()
        self._last_active = span
        # A branch or iteration ends with the last event filed under it: its last state's exit.
        span.last_ns = max(span.last_ns, event.timestamp_ns)

    def _chain(self, event: HistoryEvent) -> tuple[Iterator[_Span], bool]:
        """The span owning the event's predecessor and its ancestors, and True; or, where the
        predecessor is unknown (0, masked, or long closed), the last active span's, and False."""
        start = self._owner.get(event.previous_id) if event.previous_id else None
        if start is not None:
            return start.ancestors(), True
        last = self._last_active
        return (last.ancestors() if last is not None else iter(())), False

    def _anchor(self, event: HistoryEvent) -> _Span | None:
        """The innermost open span the event's predecessor belongs to."""
        span = self._owner.get(event.previous_id) if event.previous_id else None
        if span is None:
            span = self._last_active
        while span is not None and span.closed:
            span = span.parent
        return span

    def _find(self, event: HistoryEvent, accept: Callable[[_Span], bool]) -> _Span | None:
        """The nearest open span on the event's chain that `accept`s; where the chain is not
        known, else the newest open span that does."""
        chain, known = self._chain(event)
        for span in chain:
            if not span.closed and accept(span):
                return span
        if known:
            return None
        return next((span for span in reversed(self._open.values()) if accept(span)), None)

    def _prune_owner(self) -> None:
        """Forget all but the newest events of closed spans. Run when the map has grown by
        `_CLOSED_TIPS_KEPT` since the last sweep, so it costs O(1) per event."""
        closed = sorted(event_id for event_id, span in self._owner.items() if span.closed)
        for event_id in closed[: max(0, len(closed) - _CLOSED_TIPS_KEPT)]:
            del self._owner[event_id]
        self._owner_limit = len(self._owner) + _CLOSED_TIPS_KEPT

    def _anomaly(self, event: HistoryEvent, what: str, detail: str = "") -> None:
        if self.options.partial:  # what a partial record leaves out is no anomaly
            return
        self._observe("sfn_history_anomalies_total", self.identity.state_machine_name, what)
        target = self._anchor(event)
        if target is not None:  # after the end nothing is open: the counter alone records it
            attributes: dict[str, AttributeValue] = {
                "sfn.anomaly": what, "sfn.event.id": event.id, "sfn.event.type": event.type,
            }  # fmt: skip
            if detail:
                attributes["sfn.anomaly.detail"] = detail
            target.events += (SpanEvent("sfn.anomaly", event.timestamp_ns, attributes),)

    # ------------------------------------------------------------------ the data gate
    # Everything that comes from execution data (inputs, outputs, task parameters, causes)
    # passes here: left out unless configured in, redacted by the JSON paths, cut to the limit.

    def _gate(self, value: object) -> tuple[str, bool]:
        """The text as it may leave the exporter, and whether it was cut."""
        text = _text(value) or ""
        if self.options.redact is not None:
            text = self.options.redact(text)
        encoded = text.encode()
        if len(encoded) > self.options.max_data_bytes:
            return encoded[: self.options.max_data_bytes].decode(errors="ignore"), True
        return text, False

    def _data(self, span: _Span, key: str, value: object) -> None:
        if not self.options.include_data or value is None:
            return
        text, cut = self._gate(value)
        if cut:
            span.attributes[f"{key}.truncated"] = True
        span.attributes[key] = text

    def _cause(self, details: Mapping[str, object]) -> str | None:
        value = details.get("cause")
        if not self.options.include_causes or value is None:
            return None
        return self._gate(value)[0]

    # ------------------------------------------------------------------ opening and closing

    def _open_span(
        self, event: HistoryEvent, kind: SpanKind, name: str, parent: _Span | None,
        role: str = "", state_type: str | None = None, opening_event_id: int | None = None,
    ) -> _Span:  # fmt: skip
        opening = event.id if opening_event_id is None else opening_event_id
        span_id = self._span_ids.span_id(opening, role)
        name = sys.intern(name)  # state names repeat across the executions tracked at once
        span = _Span(kind, name, parent, self._trace_id, span_id, event.timestamp_ns, opening, state_type)
        if parent is not None:
            parent.children[span.span_id] = span
        self._open[span.span_id] = span
        return span

    def _close(
        self, span: _Span, end_ns: int, outcome: str,
        error: str | None = None, cause: str | None = None,
    ) -> None:  # fmt: skip
        """Close `span` and, first, whatever is still open under it. A closed span stays closed
        (its record went out; its attributes map is the shared empty one)."""
        if span.closed:
            return
        child_outcome = "aborted" if outcome == "succeeded" else outcome
        for child in list(span.children.values()) if span.children else ():
            if child.kind in SCOPE_KINDS and not child.children and child.kind != SpanKind.EXECUTION:
                self._close_scope_naturally(child)
                continue
            child_error, child_cause = child.pending_error or (error, cause)
            self._close(child, max(end_ns, child.start_ns), child_outcome, child_error, child_cause)
        span.closed = True
        span.end_ns = max(end_ns, span.start_ns)
        span.outcome = outcome
        if outcome != "succeeded":
            span.error = error
            span.cause = cause
        span.attributes["sfn.outcome"] = outcome
        if outcome == "caught" and error:
            exception: dict[str, AttributeValue] = {"exception.type": error}
            if cause:
                exception["exception.message"] = cause
            span.events += (SpanEvent("exception", span.end_ns, exception),)
        if span.parent is not None:
            span.parent.children.pop(span.span_id, None)
            if outcome not in ("succeeded", "caught") and span.parent.kind in SCOPE_KINDS:
                span.parent.pending_error = span.parent.pending_error or (error, cause)
        self._open.pop(span.span_id, None)
        self._observe_close(span)
        self._out.spans.append(span.record(self.options.legacy_status))
        # Its record took its attributes; a closed span stays known (events may point back at
        # it) but needs neither those nor the room its children took.
        span.attributes, span.children = _NO_ATTRIBUTES, {}
        owner = self._owner
        stub: _Span | None = None
        for event_id in span.tips:  # the events filed under it (see _register)
            if owner.get(event_id) is span:
                stub = stub or cast(_Span, _Closed(span))
                owner[event_id] = stub

    def _close_scope_naturally(self, scope: _Span) -> None:
        """A branch or iteration whose states are all done ends with its last event."""
        if scope.pending_error is not None:
            error, cause = scope.pending_error
            self._close(scope, scope.last_ns, "failed", error, cause)
        else:
            self._close(scope, scope.last_ns, "succeeded")

    def _observe_close(self, span: _Span) -> None:
        machine = self.identity.state_machine_name
        seconds = ((span.end_ns or span.start_ns) - span.start_ns) / 1e9
        observe = self._out.observations.append
        kind = span.kind
        if kind is SpanKind.STATE:
            state_type = span.state_type or ""
            observe(Observation("sfn_states_finished_total", (machine, span.name, state_type, span.outcome)))
            observe(Observation("sfn_state_duration_seconds", (machine, span.name, state_type), seconds))
        elif kind in ATTEMPT_KINDS:
            state = span.parent.name if span.parent is not None else ""
            observe(Observation("sfn_task_attempts_total", (machine, state, kind.value, span.outcome)))
            observe(Observation("sfn_task_duration_seconds", (machine, state, kind.value), seconds))
            if span.outcome in ("failed", "timed_out"):
                error = clip_label(span.error) or "unknown"
                observe(Observation("sfn_task_failures_total", (machine, state, kind.value, error)))
        elif kind is SpanKind.MAP_ITERATION:
            state = span.parent.name if span.parent is not None else ""
            observe(Observation("sfn_map_iterations_total", (machine, state, span.outcome)))
        elif kind is SpanKind.EXECUTION:
            status = _EXECUTION_STATUS.get(span.outcome, "ABORTED")
            observe(Observation("sfn_executions_finished_total", (machine, status)))
            if self._start_known or not self.options.partial:
                observe(Observation("sfn_execution_duration_seconds", (machine, status), seconds))

    # ------------------------------------------------------------------ execution

    def _open_root(self, event: HistoryEvent, synthesized: bool = False) -> _Span:
        ident = self.identity
        # The root's id is that of event 1 even when ExecutionStarted is missing from the input.
        root = self._open_span(
            event, SpanKind.EXECUTION, ident.state_machine_name, None, "execution", opening_event_id=1
        )
        root.parent_span_id = self._remote_parent
        root.attributes.update({
            "aws.step_functions.state_machine.arn": ident.state_machine_arn,
            "sfn.state_machine.name": ident.state_machine_name,
        })  # fmt: skip
        root.attributes.update(self._execution_names())
        run = ident.map_run
        if run is not None:
            root.attributes["sfn.map_run.arn"] = run.arn
            if not ident.nested:
                root.links = (SpanLink(run.trace_id, run.span_id, {"sfn.link": "map_run"}),)
        self._root = self._run = self._last_active = root
        self._observe("sfn_executions_started_total", ident.state_machine_name)
        self._start_known = not synthesized
        if synthesized:
            self._anomaly(event, "missing_execution_started")
        return root

    def _execution_names(self) -> dict[str, AttributeValue]:
        """The execution's ARN and name, as `execution_name` says (names often hold business ids)."""
        ident, how = self.identity, self.options.execution_name
        if how == "drop":
            return {}
        name = ident.execution_name
        if how == "hash":
            name = hashlib.sha256(name.encode()).hexdigest()[:16]
        head, found, tail = ident.execution_arn.rpartition(":" + ident.execution_name)
        arn = f"{head}:{name}{tail}" if found else ident.execution_arn
        return {"sfn.execution.arn": arn, "sfn.execution.name": name, "cloud.resource_id": arn}

    def _execution_started(self, event: HistoryEvent) -> None:
        if self._root is not None:
            self._anomaly(event, "duplicate_execution_started")
            return
        root = self._open_root(event)
        for key in ("stateMachineAliasArn", "stateMachineVersionArn"):
            value = event.details.get(key)
            if isinstance(value, str):
                root.attributes[f"sfn.execution.{key}"] = value
        self._data(root, "sfn.execution.input", event.details.get("input"))
        self._register(event, root)

    def _execution_ended(self, event: HistoryEvent) -> None:
        run = self._run
        if run is None or run.closed:
            self._anomaly(event, "event_after_end")
            return
        outcome = _TERMINAL[event.type]
        error = _text(event.details.get("error"))
        cause = self._cause(event.details)
        if outcome == "timed_out":
            error = error or "States.Timeout"
        self._data(run, "sfn.execution.output", event.details.get("output"))
        self._close(run, event.timestamp_ns, outcome, error, cause)
        self._register(event, run)

    def _execution_redriven(self, event: HistoryEvent) -> None:
        root = self._root
        assert root is not None
        if self._run is not None and not self._run.closed:
            self._anomaly(event, "redrive_while_running")
            self._close(self._run, event.timestamp_ns, "aborted")
        name = f"{self.identity.state_machine_name} redrive"
        span = self._open_span(event, SpanKind.EXECUTION, name, root)
        count = event.details.get("redriveCount")
        if isinstance(count, int) and not isinstance(count, bool):
            span.attributes["sfn.execution.redrive_count"] = count
        span.links += (SpanLink(self._trace_id, root.span_id, {"sfn.link": "redrive_of"}),)
        self._run = span
        self.redrive_count += 1
        self._observe("sfn_executions_redriven_total", self.identity.state_machine_name)
        self._register(event, span)

    # ------------------------------------------------------------------ states

    def _scope_for_state(self, anchor: _Span, event: HistoryEvent) -> _Span:
        """Where a newly entered state goes, given the open span its predecessor belongs to."""
        if anchor.kind in ATTEMPT_KINDS and anchor.parent is not None:
            anchor = anchor.parent
        if anchor.kind == SpanKind.STATE:
            if anchor.state_type == "Parallel":
                return self._open_branch(anchor, event)
            if anchor.state_type == "Map":
                return next(reversed(anchor.iterations.values()), anchor)
            anchor = anchor.parent or anchor  # a state already running: its successor is a sibling
        if anchor.kind == SpanKind.MAP_RUN and anchor.parent is not None:
            return anchor.parent
        busy = any(child.kind == SpanKind.STATE for child in anchor.children.values())
        if busy and anchor.kind == SpanKind.PARALLEL_BRANCH and anchor.parent is not None:
            # A branch runs one state at a time: a second one belongs to another branch
            # (seen where previousEventId was masked).
            return self._open_branch(anchor.parent, event)
        return anchor

    def _open_branch(self, parallel: _Span, event: HistoryEvent) -> _Span:
        """A Parallel branch has no event of its own: its first state's event opens it."""
        branch = self._open_span(
            event, SpanKind.PARALLEL_BRANCH, f"{parallel.name} branch", parallel, "branch"
        )
        branch.attributes["sfn.branch.index"] = parallel.branch_count
        parallel.branch_count += 1
        return branch

    def _state_entered(self, event: HistoryEvent, state_type: str) -> None:
        anchor = self._anchor(event)
        if anchor is None:
            self._anomaly(event, "event_after_end")
            return
        scope = self._scope_for_state(anchor, event)
        name = _text(event.details.get("name")) or f"<unnamed {state_type}>"
        span = self._open_span(event, SpanKind.STATE, name, scope, state_type=state_type)
        span.attributes["sfn.state.name"] = name
        span.attributes["sfn.state.type"] = state_type
        self._data(span, "sfn.state.input", event.details.get("input"))
        self._out.observations.append(
            Observation("sfn_states_entered_total", (self.identity.state_machine_name, name, state_type))
        )
        self._register(event, span)

    def _find_state(self, event: HistoryEvent, state_type: str | None, name: str | None) -> _Span | None:
        start = self._owner.get(event.previous_id) if event.previous_id else None
        if start is not None:  # the usual case, inlined: this runs for most events
            span: _Span | None = start
            while span is not None:
                if (
                    span.kind is SpanKind.STATE
                    and not span.closed
                    and (state_type is None or span.state_type == state_type)
                    and (name is None or span.name == name)
                ):
                    return span
                span = span.parent
            return None

        def accept(span: _Span) -> bool:
            return (
                span.kind is SpanKind.STATE
                and (state_type is None or span.state_type == state_type)
                and (name is None or span.name == name)
            )

        return self._find(event, accept)

    def _state_exited(self, event: HistoryEvent, state_type: str) -> None:
        name = _text(event.details.get("name"))
        state = self._find_state(event, state_type, name)
        if state is None:
            self._anomaly(event, "exit_without_entry", name or "")
            return
        self._data(state, "sfn.state.output", event.details.get("output"))
        if state.pending_error is not None:
            error, cause = state.pending_error
            state.attributes["sfn.state.caught"] = True
            self._close(state, event.timestamp_ns, "caught", error, cause)
        else:
            self._close(state, event.timestamp_ns, "succeeded")
        self._register(event, state.parent or state)

    def _state_aborted(self, event: HistoryEvent, state_type: str) -> None:
        # The aborted state is the one its predecessor belongs to: it may already be closed
        # (a Map iteration that failed closes its states first), and then nothing is left to do.
        chain, _ = self._chain(event)
        for span in chain:
            if span.kind == SpanKind.STATE and span.state_type == state_type:
                if not span.closed:
                    error, cause = span.pending_error or (None, None)
                    self._close(span, event.timestamp_ns, "aborted", error, cause)
                self._register(event, span.parent or span)
                return
        state = self._find_state(event, state_type, None)
        if state is None:
            self._anomaly(event, "abort_without_entry", state_type)
            return
        error, cause = state.pending_error or (None, None)
        self._close(state, event.timestamp_ns, "aborted", error, cause)
        self._register(event, state.parent or state)

    # ------------------------------------------------------------------ Parallel and Map

    def _parallel_started(self, event: HistoryEvent) -> None:
        state = self._find_state(event, "Parallel", None)
        if state is None:
            self._anomaly(event, "parallel_without_state")
            return
        state.started = True
        self._register(event, state)

    def _parallel_ended(self, event: HistoryEvent) -> None:
        state = self._find_state(event, "Parallel", None)
        if state is None:
            self._anomaly(event, "parallel_without_state")
            return
        outcome = _END_SUFFIX[event.type.removeprefix("ParallelState")]
        self._end_children(state, event, outcome)
        self._register(event, state)

    def _end_children(self, state: _Span, event: HistoryEvent, outcome: str) -> None:
        """A Map or Parallel state's own end: close its branches/iterations, note its failure."""
        first_error: tuple[str | None, str | None] | None = None
        for child in list(state.children.values()):
            if child.kind in SCOPE_KINDS and not child.children:
                self._close_scope_naturally(child)
            else:
                child_outcome = "aborted" if outcome == "succeeded" else outcome
                self._close(child, event.timestamp_ns, child_outcome, *(child.pending_error or (None, None)))
            if child.outcome not in ("succeeded", "caught") and first_error is None:
                first_error = (child.error, child.cause)
        if outcome == "succeeded":
            state.pending_error = None
        else:
            error = _text(event.details.get("error"))
            cause = self._cause(event.details)
            if error is None and first_error is not None:
                error, cause = first_error
            state.pending_error = state.pending_error or (error, cause)

    def _find_map(self, event: HistoryEvent) -> _Span | None:
        name = _text(event.details.get("name"))
        state = self._find_state(event, "Map", name)
        if state is None and name is not None:
            state = self._find_state(event, "Map", None)
        return state

    def _map_started(self, event: HistoryEvent) -> None:
        state = self._find_state(event, "Map", None)
        if state is None:
            self._anomaly(event, "map_without_state")
            return
        state.started = True
        length = event.details.get("length")
        if isinstance(length, int) and not isinstance(length, bool):
            state.attributes["sfn.map.length"] = length
        self._register(event, state)

    def _iteration_started(self, event: HistoryEvent) -> None:
        state = self._find_map(event)
        if state is None:
            self._anomaly(event, "iteration_without_map")
            return
        index = event.details.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else -1
        previous = state.iterations.pop(index, None)
        if previous is not None:
            self._anomaly(event, "iteration_restarted", str(index))
            self._close(previous, event.timestamp_ns, "aborted")
        span = self._open_span(event, SpanKind.MAP_ITERATION, f"{state.name} iteration", state)
        span.attributes["sfn.map.index"] = index
        if state.iterations is _NO_ITERATIONS:
            state.iterations = {}
        state.iterations[index] = span
        self._register(event, span)

    def _iteration_ended(self, event: HistoryEvent) -> None:
        state = self._find_map(event)
        index = event.details.get("index")
        iteration = (
            state.iterations.pop(index, None) if state is not None and isinstance(index, int) else None
        )
        if state is None or iteration is None:
            self._anomaly(event, "iteration_end_without_start", str(index))
            return
        outcome = _END_SUFFIX[event.type.removeprefix("MapIteration")]
        error = _text(event.details.get("error"))
        cause = self._cause(event.details)
        if error is None and iteration.pending_error is not None:
            error, cause = iteration.pending_error
        if error is None and outcome != "succeeded":
            error, cause = next(
                (c.pending_error for c in iteration.children.values() if c.pending_error),
                (None, None),
            )
        self._close(iteration, event.timestamp_ns, outcome, error, cause)
        if outcome != "succeeded" and state.pending_error is None:
            state.pending_error = (error, cause)
        self._register(event, state)

    def _map_ended(self, event: HistoryEvent) -> None:
        state = self._find_state(event, "Map", None)
        if state is None:
            self._anomaly(event, "map_without_state")
            return
        outcome = _END_SUFFIX[event.type.removeprefix("MapState")]
        self._end_children(state, event, outcome)
        state.iterations = _NO_ITERATIONS
        self._register(event, state)

    def _map_run_started(self, event: HistoryEvent) -> None:
        state = self._find_state(event, "Map", None)
        if state is None:
            self._anomaly(event, "map_without_state")
            return
        span = self._open_span(event, SpanKind.MAP_RUN, f"{state.name} map run", state)
        arn = _text(event.details.get("mapRunArn"))
        if arn:
            span.attributes["sfn.map_run.arn"] = arn
            ident = self.identity
            self.map_runs[arn] = MapRun(arn, state.name, self._trace_id, span.span_id, ident.execution_arn,
                                        ident.state_machine_name)  # fmt: skip
        self._register(event, span)

    def _map_run_ended(self, event: HistoryEvent) -> None:
        run = self._find(event, lambda span: span.kind == SpanKind.MAP_RUN)
        if run is None:
            self._anomaly(event, "map_run_end_without_start")
            return
        outcome = _END_SUFFIX[event.type.removeprefix("MapRun")]
        error = _text(event.details.get("error"))
        cause = self._cause(event.details)
        self._close(run, event.timestamp_ns, outcome, error, cause)
        arn = run.attributes.get("sfn.map_run.arn")
        if isinstance(arn, str) and arn in self.map_runs:
            self.map_runs[arn] = dataclasses.replace(self.map_runs[arn], ended=outcome)
        state = run.parent
        if state is not None:
            if outcome != "succeeded":
                state.pending_error = state.pending_error or (error, cause)
            self._register(event, state)

    # ------------------------------------------------------------------ attempts

    def _attempt_started(self, event: HistoryEvent, kind: SpanKind) -> None:
        self._attempt_scheduled(event, kind)

    def _attempt_scheduled(self, event: HistoryEvent, kind: SpanKind) -> _Span | None:
        state = self._find_state(event, "Task", None)
        if state is None:
            self._anomaly(event, "attempt_without_task_state")
            return None
        for child in list(state.children.values()):
            if child.kind in ATTEMPT_KINDS:
                self._anomaly(event, "attempt_overlaps_previous")
                self._close(child, event.timestamp_ns, "aborted")
        if state.attempts and state.last_attempt_failed:
            self._observe("sfn_task_retries_total", self.identity.state_machine_name, state.name)
        state.attempts += 1
        details = event.details
        resource = _text(details.get("resource")) or ""
        resource_type = _text(details.get("resourceType"))
        if kind == SpanKind.TASK:
            name = f"{resource_type}:{resource}" if resource_type else resource or "task"
        else:
            name = f"{kind.value} {resource.rsplit(':', 1)[-1]}" if resource else kind.value
        span = self._open_span(event, kind, name, state)
        span.attributes["sfn.attempt"] = state.attempts
        span.attributes.update(_attempt_attributes(kind, details, resource, resource_type))
        self._data(span, "sfn.task.input", details.get("parameters", details.get("input")))
        self._register(event, span)
        return span

    def _find_attempt(self, event: HistoryEvent, kind: SpanKind) -> _Span | None:
        start = self._owner.get(event.previous_id) if event.previous_id else None
        if start is not None:  # the usual case, inlined
            span: _Span | None = start
            while span is not None:
                if span.kind is kind and not span.closed:
                    return span
                span = span.parent
            return None
        return self._find(event, lambda span: span.kind is kind)

    def _attempt_progress(self, event: HistoryEvent, kind: SpanKind) -> None:
        suffix = "started" if event.type.endswith("Started") else "submitted"
        attempt = self._find_attempt(event, kind)
        if attempt is None:
            self._anomaly(event, "attempt_event_without_schedule")
            return
        attributes: dict[str, AttributeValue] = {"sfn.event.id": event.id}
        worker = _text(event.details.get("workerName"))
        if worker:
            attributes["sfn.activity.worker_name"] = worker
        attempt.events += (SpanEvent(suffix, event.timestamp_ns, attributes),)
        self._register(event, attempt)

    def _attempt_closed(self, event: HistoryEvent, kind: SpanKind, outcome: str) -> None:
        attempt = self._find_attempt(event, kind)
        if attempt is None:
            # e.g. LambdaFunctionScheduleFailed: the attempt never got scheduled.
            attempt = self._attempt_scheduled(event, kind)
            if attempt is None:
                return
        error = _text(event.details.get("error"))
        cause = self._cause(event.details)
        if outcome == "timed_out":
            error = error or "States.Timeout"
        self._data(attempt, "sfn.task.output", event.details.get("output"))
        self._close(attempt, event.timestamp_ns, outcome, error, cause)
        state = attempt.parent
        if state is not None:
            state.last_attempt_failed = outcome != "succeeded"
            state.pending_error = (error, cause) if outcome != "succeeded" else None
            self._register(event, state)

    # ------------------------------------------------------------------ the rest

    def _evaluation_failed(self, event: HistoryEvent) -> None:
        name = _text(event.details.get("state"))
        state = self._find_state(event, None, name) if name else None
        target = state or self._anchor(event)
        error = _text(event.details.get("error"))
        cause = self._cause(event.details)
        if target is None:
            self._anomaly(event, "event_after_end")
            return
        if state is not None:
            state.pending_error = (error, cause)
        self._attach_event(target, event)

    def _known_event(self, event: HistoryEvent) -> None:
        self._span_event(event, unknown=False)

    def _unknown_event(self, event: HistoryEvent) -> None:
        self._span_event(event, unknown=True)

    def _span_event(self, event: HistoryEvent, unknown: bool) -> None:
        target = self._anchor(event)
        if unknown:
            self._observe(
                "sfn_unknown_events_total", self.identity.state_machine_name, clip_label(event.type)
            )
        if target is not None:
            self._attach_event(target, event)

    def _attach_event(self, target: _Span, event: HistoryEvent) -> None:
        """An event without a span of its own, as a span event: its id and type, numbers, and
        the text fields known not to be execution data (names, ARNs, error names); a cause
        through the data gate. Any other field, of a known type or not, is left out."""
        attributes: dict[str, AttributeValue] = {"sfn.event.id": event.id}
        for key, value in sorted(event.details.items()):
            if isinstance(value, bool | int | float):
                attributes[f"sfn.{key}"] = value
            elif isinstance(value, str) and key in _PLAIN_TEXT_FIELDS:
                attributes[f"sfn.{key}"] = value[:_MAX_EVENT_ATTRIBUTE]
        cause = self._cause(event.details)
        if cause is not None:
            attributes["sfn.cause"] = cause
        target.events += (SpanEvent(event.type, event.timestamp_ns, attributes),)

    _HANDLERS: ClassVar[dict[str, Callable[[SpanAssembler, HistoryEvent], None]]] = {
        "ExecutionSucceeded": _execution_ended,
        "ExecutionFailed": _execution_ended,
        "ExecutionTimedOut": _execution_ended,
        "ExecutionAborted": _execution_ended,
        "ExecutionRedriven": _execution_redriven,
        "ParallelStateStarted": _parallel_started,
        "ParallelStateSucceeded": _parallel_ended,
        "ParallelStateFailed": _parallel_ended,
        "MapStateStarted": _map_started,
        "MapStateSucceeded": _map_ended,
        "MapStateFailed": _map_ended,
        "MapIterationStarted": _iteration_started,
        "MapIterationSucceeded": _iteration_ended,
        "MapIterationFailed": _iteration_ended,
        "MapIterationAborted": _iteration_ended,
        "MapRunStarted": _map_run_started,
        "MapRunSucceeded": _map_run_ended,
        "MapRunFailed": _map_run_ended,
        "MapRunAborted": _map_run_ended,
        "EvaluationFailed": _evaluation_failed,
    }


# An event type's handler: a method of SpanAssembler and the arguments it takes after the event.
Handler = tuple[Callable[..., None], tuple[object, ...]]
_ROUTES: dict[str, Handler] = {}


def _route(event_type: str) -> Handler:
    """The handler for an event type, worked out once per type and remembered."""
    method = SpanAssembler._HANDLERS.get(event_type)
    handler = (method, ()) if method else _state_route(event_type) or _attempt_route(event_type)
    if handler is None:
        plain = event_type in _PLAIN_EVENTS
        handler = (SpanAssembler._known_event if plain else SpanAssembler._unknown_event, ())
    if len(_ROUTES) < 4096:  # event types are few; a flood of made-up ones is not remembered
        _ROUTES[event_type] = handler
    return handler


def _state_route(event_type: str) -> Handler | None:
    for pattern, method in (
        (_ENTERED, SpanAssembler._state_entered),
        (_EXITED, SpanAssembler._state_exited),
        (_ABORTED, SpanAssembler._state_aborted),
    ):
        if match := pattern.match(event_type):
            return method, (match.group(1),)
    return None


def _attempt_route(event_type: str) -> Handler | None:
    for family, kind in _ATTEMPT_FAMILIES.items():
        suffix = event_type.removeprefix(family)
        if suffix == event_type:
            continue
        if suffix == "Scheduled":
            return SpanAssembler._attempt_started, (kind,)
        if suffix in _ATTEMPT_PROGRESS:
            return SpanAssembler._attempt_progress, (kind,)
        if suffix in _ATTEMPT_CLOSE:
            return SpanAssembler._attempt_closed, (kind, _ATTEMPT_CLOSE[suffix])
    return None
