"""The OTLP request encoder gives the same bytes as the OpenTelemetry SDK's encoder: on every
recorded history, and on every kind of field a span may carry."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from exporter.emit.otlp import encode_request, to_readable_spans
from exporter.history.assembler import SpanAssembler
from tests.corpus import recorded_histories


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
