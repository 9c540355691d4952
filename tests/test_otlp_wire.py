"""The OTLP request encoders give the same bytes as the OpenTelemetry SDK's encoder: on every
recorded history, and on every kind of field a span may carry; from the SDK's spans
(`encode_request`), and straight from span records (`encode_records`), also under span limits."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from exporter.emit import otlp
from exporter.emit.otlp import (
    ExecutionSpans,
    chunks,
    encode_records,
    encode_request,
    readable_spans,
    to_readable_spans,
)
from exporter.history.assembler import SpanAssembler
from exporter.model import ExecutionIdentity, SpanEvent, SpanKind, SpanLink, SpanRecord, Status
from tests.corpus import recorded_histories

IDENTITY = ExecutionIdentity.from_arn("arn:aws:states:eu-west-1:123456789012:execution:Orders:run-1")
OTHER = ExecutionIdentity.from_arn("arn:aws:states:us-east-1:210987654321:execution:Billing:run-2")


def sdk(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def test_every_recorded_history_encodes_as_the_sdk_encodes_it() -> None:
    histories = list(recorded_histories())
    everything: list[ReadableSpan] = []
    for history in histories:
        assembler = SpanAssembler(history.identity)
        out = assembler.feed(history.events)
        spans = to_readable_spans(out.spans + assembler.open_spans(), history.identity)
        assert encode_request(spans) == sdk(spans), history.case
        everything += spans
    assert len(histories) == 691 and len(everything) > 2000
    assert encode_request(everything) == sdk(everything)  # one request, many resources


def span(**overrides: object) -> ReadableSpan:
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    fields: dict[str, object] = {
        "name": "state", "context": trace.SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=flags),
        "parent": trace.SpanContext(0x1234, 0x9ABC, is_remote=False), "resource": Resource({"service.name": "s"}),
        "attributes": {"a": "b"}, "kind": trace.SpanKind.INTERNAL, "status": trace.Status(trace.StatusCode.UNSET),
        "start_time": 1_700_000_000_000_000_000, "end_time": 1_700_000_000_500_000_000,
        "instrumentation_scope": InstrumentationScope("scope", "1.0"),
    }  # fmt: skip
    fields.update(overrides)
    return ReadableSpan(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"parent": None},  # a root
        {"parent": trace.SpanContext(0x1234, 0x9ABC, is_remote=True)},  # joined a remote trace
        {"name": ""},
        {"kind": trace.SpanKind.CLIENT},
        {"kind": trace.SpanKind.SERVER},
        {"end_time": None},
        {"status": trace.Status(trace.StatusCode.ERROR, "Lambda.Unknown: boom ✓")},
        {"status": trace.Status(trace.StatusCode.OK)},
        {"attributes": {}},
        {"attributes": {"s": "", "t": True, "f": False, "i": 0, "n": -7, "big": 2**63 - 1, "x": 1.5,
                        "z": 0.0, "neg": -2.25, "u": "ünïcødé", "list": ("a", "b"), "ints": (1, -2)}},
        {"events": [Event("exception", {"exception.type": "E", "exception.message": "m"}, 1_700_000_000_100_000_000),
                    Event("", {}, 0)]},
        {"links": [trace.Link(trace.SpanContext(0xABC, 0xDEF, is_remote=False), {"sfn.link": "redrive_of"}),
                   trace.Link(trace.SpanContext(0xABC, 0x123, is_remote=True))]},
        {"context": trace.SpanContext(0x1234, 0x5678, is_remote=False,
                                      trace_state=trace.TraceState([("k", "v"), ("x", "y")]))},
        {"instrumentation_scope": None},
        {"instrumentation_scope": InstrumentationScope("s", None, "https://schema", {"scope.attr": 1})},
        {"resource": Resource({}, "https://resource-schema")},
    ],
    ids=lambda overrides: ",".join(overrides) or "plain",
)  # fmt: skip
def test_each_kind_of_field_encodes_as_the_sdk_encodes_it(overrides: dict[str, object]) -> None:
    one = span(**overrides)
    assert encode_request([one]) == sdk([one])
    mixed = [one, span(), span(resource=Resource({"service.name": "other"}))]  # resources grouped
    assert encode_request(mixed) == sdk(mixed)


def test_attributes_cut_to_the_limits_count_what_was_dropped() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    from exporter.emit.otlp import to_readable_span
    from exporter.model import SpanKind as Kind
    from exporter.model import SpanRecord, Status

    record = SpanRecord(
        1, 2, None, "root", Kind.EXECUTION, 10, 20, Status.OK, None, None,
        {f"k{n}": "v" * 50 for n in range(10)}, (), (),
    )  # fmt: skip
    limits = SpanLimits(max_span_attributes=3, max_attribute_length=8)
    spans = [to_readable_span(record, Resource({"service.name": "s"}), limits)]
    assert spans[0].dropped_attributes == 7
    assert encode_request(spans) == sdk(spans)


# ---------------------------------------------------------------- straight from span records


def records_request(batches: list[ExecutionSpans]) -> bytes:
    """The reference: the SDK's encoding of the SDK's spans made from the records."""
    return sdk(readable_spans(batches))


def without_readable_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, making a ReadableSpan fails: the records are encoded on the fast path."""

    def refused(*args: object) -> None:
        raise AssertionError("a ReadableSpan was made")

    monkeypatch.setattr(otlp, "to_readable_span", refused)


def test_every_recorded_history_encodes_from_its_records_as_the_sdk_encodes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    everything: list[ExecutionSpans] = []
    for history in recorded_histories():
        assembler = SpanAssembler(history.identity)
        out = assembler.feed(history.events)
        everything.append(ExecutionSpans.of(out.spans + assembler.open_spans(), history.identity))
    expected = [records_request([batch]) for batch in everything]
    together = records_request(everything)  # one request, many resources
    without_readable_spans(monkeypatch)
    assert len(everything) == 691
    for batch, reference in zip(everything, expected, strict=True):
        assert encode_records([batch]) == reference
    assert encode_records(everything) == together


def record(**overrides: object) -> SpanRecord:
    fields: dict[str, object] = {
        "trace_id": 0x1234, "span_id": 0x5678, "parent_span_id": 0x9ABC, "name": "Charge", "kind": SpanKind.STATE,
        "start_ns": 1_700_000_000_000_000_000, "end_ns": 1_700_000_000_500_000_000, "status": Status.OK,
        "error": None, "cause": None, "attributes": {"sfn.state.name": "Charge"}, "events": (), "links": (),
        "state_type": "Task", "opening_event_id": 5,
    }  # fmt: skip
    fields.update(overrides)
    return SpanRecord(**fields)  # type: ignore[arg-type]


RECORD_CASES = [
    {},
    {"parent_span_id": None, "kind": SpanKind.EXECUTION, "opening_event_id": 1},  # a root
    {"kind": SpanKind.EXECUTION, "opening_event_id": 1},  # joined the caller's (remote) trace
    {"kind": SpanKind.EXECUTION, "opening_event_id": 3},  # a redrive's execution span: not remote
    {"name": ""},
    {"kind": SpanKind.TASK}, {"kind": SpanKind.LAMBDA}, {"kind": SpanKind.ACTIVITY}, {"kind": SpanKind.MAP_ITERATION},
    {"end_ns": None, "status": Status.UNSET},
    {"status": Status.ERROR, "error": "Lambda.Unknown", "cause": "boom ✓"},
    {"status": Status.ERROR, "error": "States.Timeout", "cause": None},
    {"status": Status.ERROR, "error": None, "cause": "a cause only"},
    {"status": Status.ERROR, "error": None, "cause": None},
    {"status": Status.ERROR, "error": "E", "cause": "x" * 2000},  # the description is cut
    {"status": Status.ERROR, "error": "E", "attributes": {"error.type": "earlier", "a": 1}},  # replaced in place
    {"state_type": None},
    {"attributes": {"sfn.state.type": "Pass"}},  # kept, not overwritten by state_type
    {"attributes": {}},
    {"attributes": {"s": "", "t": True, "f": False, "i": 0, "n": -7, "big": 2**63 - 1, "x": 1.5,
                    "z": 0.0, "u": "ünïcødé", "list": ("a", "b"), "ints": (1, -2)}},
    {"events": (SpanEvent("exception", 1_700_000_000_100_000_000, {"exception.type": "E", "exception.message": "m"}),
                SpanEvent("", 0, {}))},
    {"links": (SpanLink(0xABC, 0xDEF, {"sfn.link": "redrive_of"}), SpanLink(0xABC, 0x123))},
    {"trace_id": 2**128 - 1, "span_id": 2**64 - 1, "parent_span_id": 1, "start_ns": 1, "end_ns": 2**63},
]  # fmt: skip


@pytest.mark.parametrize("overrides", RECORD_CASES, ids=lambda overrides: ",".join(overrides) or "plain")
def test_each_kind_of_record_encodes_as_the_sdk_encodes_it(
    overrides: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    one = ExecutionSpans.of([record(**overrides)], IDENTITY)
    other = ExecutionSpans.of([record(span_id=7), record(**overrides)], OTHER)
    mixed = [one, other, ExecutionSpans.of([record(span_id=9)], IDENTITY)]  # resources grouped
    expected = records_request([one]), records_request(mixed)
    without_readable_spans(monkeypatch)
    assert (encode_records([one]), encode_records(mixed)) == expected


@pytest.mark.parametrize(
    "limits",
    [
        {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "2"},
        {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "3"},
        {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4"},
        {"OTEL_SPAN_EVENT_COUNT_LIMIT": "1", "OTEL_SPAN_LINK_COUNT_LIMIT": "1"},
        {"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "1", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": "0"},
    ],
    ids=",".join,
)
def test_records_that_the_span_limits_cut_encode_as_the_sdk_encodes_them(
    limits: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = record(
        attributes={"sfn.state.name": "Charge", "sfn.state.input": "a long input", "n": 5},
        events=(SpanEvent("a", 1, {"k": "value", "j": "other"}), SpanEvent("b", 2, {})),
        links=(SpanLink(0xABC, 0xDEF, {"sfn.link": "redrive_of"}), SpanLink(0xABC, 0x123)),
        status=Status.ERROR, error="States.TaskFailed", cause="a cause",
    )  # fmt: skip
    batches = [ExecutionSpans.of([cut, record(span_id=1), record(attributes={})], IDENTITY)]
    uncut = encode_records(batches)
    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    assert encode_records(batches) == records_request(batches)
    assert encode_records(batches) != uncut  # the limits did cut


def test_batches_are_cut_into_requests_in_order() -> None:
    batches = [ExecutionSpans.of([record(span_id=i) for i in range(start, end)], IDENTITY)
               for start, end in ((0, 5), (5, 6), (6, 13))]  # fmt: skip
    cut = list(chunks(batches, 4))
    assert (
        [sum(len(b.records) for b in chunk) for chunk, _ in cut] == [size for _, size in cut] == [4, 4, 4, 1]
    )
    assert [r.span_id for chunk, _ in cut for b in chunk for r in b.records] == list(range(13))
    assert all(b.resource is batches[0].resource for chunk, _ in cut for b in chunk)
