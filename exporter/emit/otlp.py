"""Span records to OTLP: over gRPC, encoded by `encode_records` straight from the records to the
request's protobuf bytes; otherwise (and as the reference the fast path is checked against) as the
OpenTelemetry SDK's `ReadableSpan`s."""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind as _OtelKind

from exporter import __version__
from exporter.model import AttributeValue, ExecutionIdentity, SpanKind, SpanRecord, Status

_SCOPE = InstrumentationScope("sfn-otel-exporter", __version__)
_MAX_DESCRIPTION = 1024
DEFAULT_SERVICE_NAME = "step-functions"


def service_name() -> str:
    """OTEL_SERVICE_NAME, else `service.name` in OTEL_RESOURCE_ATTRIBUTES, else step-functions."""
    return _service_name(os.environ.get("OTEL_SERVICE_NAME"), os.environ.get("OTEL_RESOURCE_ATTRIBUTES"))


@lru_cache(maxsize=8)
def _service_name(explicit: str | None, resource_attributes: str | None) -> str:
    from opentelemetry.sdk.resources import OTELResourceDetector

    if explicit:
        return explicit
    configured = (
        OTELResourceDetector().detect().attributes.get("service.name") if resource_attributes else None
    )
    return str(configured) if configured else DEFAULT_SERVICE_NAME


@lru_cache(maxsize=256)
def _resource(
    service_name: str, region: str, account: str, extra: tuple[tuple[str, str], ...], environment: str | None
) -> Resource:
    """`environment` (OTEL_RESOURCE_ATTRIBUTES, which Resource.create reads) keys the cache."""
    attributes: dict[str, str] = dict(extra)
    attributes.update({"service.name": service_name, "cloud.provider": "aws"})
    if region:
        attributes["cloud.region"] = region
    if account:
        attributes["cloud.account.id"] = account
    return Resource.create(attributes)


def resource_for(
    identity: ExecutionIdentity, resource_attributes: Mapping[str, str] | None = None
) -> Resource:
    """The resource of an execution's spans: service, cloud provider, region and account.

    `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured by `Resource.create`."""
    service = service_name()
    extra = tuple(sorted((resource_attributes or {}).items()))
    return _resource(
        service, identity.region, identity.account, extra, os.environ.get("OTEL_RESOURCE_ATTRIBUTES")
    )


def _bounded(
    attributes: dict[str, AttributeValue], count: int | None, length: int | None
) -> Mapping[str, AttributeValue]:
    """The attributes within OTEL_*_ATTRIBUTE_COUNT_LIMIT and _VALUE_LENGTH_LIMIT (the SDK's
    own BoundedAttributes, which counts what it drops for the OTLP encoder)."""
    if length is None and (count is None or len(attributes) <= count):
        return attributes  # the usual case: nothing to cut
    return BoundedAttributes(count, attributes, immutable=True, max_value_len=length)  # type: ignore[return-value]


def to_readable_span(
    record: SpanRecord, resource: Resource, limits: SpanLimits | None = None
) -> ReadableSpan:
    """One finished span record as the OpenTelemetry SDK's exportable span, within the span
    limits the OTEL_* variables set (the SDK's defaults otherwise)."""
    limits = limits or SpanLimits()
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    context = trace.SpanContext(record.trace_id, record.span_id, is_remote=False, trace_flags=flags)
    parent = None
    if record.parent_span_id is not None:
        remote = record.kind == SpanKind.EXECUTION and record.opening_event_id == 1
        parent = trace.SpanContext(
            record.trace_id, record.parent_span_id, is_remote=remote, trace_flags=flags
        )
    attributes = dict(record.attributes)
    if record.state_type:
        attributes.setdefault("sfn.state.type", record.state_type)
    if record.status == Status.ERROR:
        status = trace.Status(trace.StatusCode.ERROR, _description(record.error, record.cause))
        if record.error:
            attributes["error.type"] = record.error
    elif record.status == Status.OK:
        status = trace.Status(trace.StatusCode.OK)
    else:
        status = trace.Status(trace.StatusCode.UNSET)
    events = [
        Event(
            e.name,
            _bounded(dict(e.attributes), limits.max_event_attributes, limits.max_attribute_length),
            e.time_ns,
        )
        for e in record.events[: limits.max_events]
    ]
    links = [
        trace.Link(
            trace.SpanContext(link.trace_id, link.span_id, is_remote=False),
            _bounded(dict(link.attributes), limits.max_link_attributes, limits.max_attribute_length),
        )
        for link in record.links[: limits.max_links]
    ]
    kind = trace.SpanKind.CLIENT if record.kind in _CLIENT_KINDS else trace.SpanKind.INTERNAL
    return ReadableSpan(
        name=record.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_bounded(attributes, limits.max_span_attributes, limits.max_span_attribute_length),
        events=events,
        links=links,
        kind=kind,
        status=status,
        start_time=record.start_ns,
        end_time=record.end_ns,
        instrumentation_scope=_SCOPE,
    )


_CLIENT_KINDS = frozenset({SpanKind.TASK, SpanKind.LAMBDA, SpanKind.ACTIVITY})


def _description(error: str | None, cause: str | None) -> str | None:
    text = ": ".join(part for part in (error, cause) if part)
    return text[:_MAX_DESCRIPTION] or None


def to_readable_spans(
    records: Iterable[SpanRecord],
    identity: ExecutionIdentity,
    resource_attributes: Mapping[str, str] | None = None,
) -> list[ReadableSpan]:
    resource = resource_for(identity, resource_attributes)
    limits = SpanLimits()  # reads the OTEL_*_LIMIT variables
    return [to_readable_span(record, resource, limits) for record in records]


@dataclass(frozen=True, slots=True)
class ExecutionSpans:
    """Finished span records of one execution, with the resource they are sent under: what the
    sink queues (no `ReadableSpan` is made for an exporter that encodes records itself)."""

    resource: Resource
    records: Sequence[SpanRecord]

    @classmethod
    def of(
        cls,
        records: Sequence[SpanRecord],
        identity: ExecutionIdentity,
        resource_attributes: Mapping[str, str] | None = None,
    ) -> ExecutionSpans:
        return cls(resource_for(identity, resource_attributes), records)


def readable_spans(batches: Iterable[ExecutionSpans]) -> list[ReadableSpan]:
    """The batches as the SDK's spans (for exporters that take only those)."""
    limits = SpanLimits()
    return [to_readable_span(record, batch.resource, limits) for batch in batches for record in batch.records]


def chunks(batches: Iterable[ExecutionSpans], max_spans: int) -> Iterator[tuple[list[ExecutionSpans], int]]:
    """The batches in order, cut into requests of at most `max_spans` spans each (with how many
    each holds)."""
    chunk: list[ExecutionSpans] = []
    size = 0
    for batch in batches:
        records = batch.records
        while records:
            take = records[: max_spans - size]
            chunk.append(ExecutionSpans(batch.resource, take))
            size += len(take)
            records = records[len(take) :]
            if size == max_spans:
                yield chunk, size
                chunk, size = [], 0
    if chunk:
        yield chunk, size


def make_span_exporter(
    endpoint: str | None = None, protocol: str | None = None, timeout_s: float | None = None
) -> SpanExporter:
    """An OTLP span exporter. Unset arguments fall back to the standard `OTEL_EXPORTER_OTLP_*`
    variables, which the OpenTelemetry exporters read themselves (headers, certificates, ...)."""
    protocol = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        insecure = None
        if endpoint is not None and endpoint.startswith("http://"):
            insecure = True

        class _Stub:
            """TraceService's Export, taking the request already serialized."""

            def __init__(self, channel: Any) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceResponse,
                )

                self.Export = channel.unary_unary(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    response_deserializer=ExportTraceServiceResponse.FromString,
                )

        class Exporter(GrpcExporter):
            """The SDK's gRPC exporter (its channel, TLS, headers, compression, retries and
            reconnection), sending `encode_records`'s bytes: it is given `ExecutionSpans`
            (`takes_records`), or the SDK's spans, encoded by `encode_request`."""

            takes_records = True

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self._stub = _Stub  # the reconnection after UNAVAILABLE makes another
                self._client = _Stub(self._channel)  # type: ignore[assignment]

            def _translate_data(self, data: Sequence[Any]) -> Any:
                if data and isinstance(data[0], ExecutionSpans):
                    return encode_records(data)
                return encode_request(data)

            def _count_data(self, data: Sequence[Any]) -> int:
                if data and isinstance(data[0], ExecutionSpans):
                    return sum(len(batch.records) for batch in data)
                return len(data)

        return Exporter(endpoint=endpoint, insecure=insecure, timeout=timeout_s)
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint, timeout=timeout_s)
    raise ValueError(f"OTLP protocol {protocol!r}: expected 'grpc' or 'http/protobuf'")


# ---------------------------------------------------------------- the wire encoding

_WIRE_KIND = {
    _OtelKind.INTERNAL: 1,
    _OtelKind.SERVER: 2,
    _OtelKind.CLIENT: 3,
    _OtelKind.PRODUCER: 4,
    _OtelKind.CONSUMER: 5,
}
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)]


def _field(tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return tag + (_SMALL_VARINTS[size] if size < 0x80 else _varint(size)) + payload


def _value(value: Any) -> bytes:
    # a oneof member is written even when it holds its type's default
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise ValueError(f"invalid type {type(value)} of value {value!r}")


def _key_value(key: str, value: Any) -> bytes:
    return (_field(b"\x0a", key.encode()) if key else b"") + _field(b"\x12", _value(value))


_CACHE: dict[tuple[bytes, str, Any, type], bytes] = {}
_CACHE_SIZE = 50_000


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a field of `tag`: most (state names, types, outcomes, resources) repeat
    from span to span, and their encoding is remembered."""
    if not attributes:
        return b""
    cache = _CACHE
    out = []
    for key, value in attributes.items():
        kind = type(value)
        if (
            kind is str
            or kind is int
            or kind is bool
            or kind is float
            or isinstance(value, str | int | float)
        ):
            entry = (tag, key, value, kind)  # hashable: remembered
            encoded = cache.get(entry)
            if encoded is None:
                encoded = _remember(entry)
        else:
            encoded = _field(tag, _key_value(key, value))
        out.append(encoded)
    return b"".join(out)


def _remember(entry: tuple[bytes, str, Any, type]) -> bytes:
    tag, key, value, _ = entry
    encoded = _field(tag, _key_value(key, value))
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[entry] = encoded
    return encoded


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    parent = span.parent
    out = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
    state = context.trace_state
    if state:
        out.append(_field(b"\x1a", ",".join(f"{k}={v}" for k, v in state.items()).encode()))
    if parent is not None:
        out += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    if span.name:
        out.append(_field(b"\x2a", span.name.encode()))
    out += (b"\x30", _varint(_WIRE_KIND[span.kind]))
    if span.start_time:
        out += (b"\x39", _pack_fixed64(span.start_time))
    if span.end_time:
        out += (b"\x41", _pack_fixed64(span.end_time))
    out.append(_attributes(b"\x4a", span.attributes))
    if span.dropped_attributes:
        out += (b"\x50", _varint(span.dropped_attributes))
    out += [
        _field(b"\x5a", _event(event.name, event.timestamp, event.attributes, event.dropped_attributes))
        for event in span.events
    ]
    if span.dropped_events:
        out += (b"\x60", _varint(span.dropped_events))
    out += [_field(b"\x6a", _link(link)) for link in span.links]
    if span.dropped_links:
        out += (b"\x70", _varint(span.dropped_links))
    out.append(_field(b"\x7a", _status(span)))
    out += (b"\x85\x01", _pack_fixed32(0x100 | (0x200 if parent is not None and parent.is_remote else 0)))
    return b"".join(out)


def _event(name: str, timestamp: int, attributes: Mapping[str, Any] | None, dropped: int = 0) -> bytes:
    body = b"\x09" + _pack_fixed64(timestamp) if timestamp else b""
    if name:
        body += _field(b"\x12", name.encode())
    body += _attributes(b"\x1a", attributes)
    if dropped:
        body += b"\x20" + _varint(dropped)
    return body


def _link(link: trace.Link) -> bytes:
    linked = link.context
    return _link_body(
        linked.trace_id, linked.span_id, link.attributes, link.dropped_attributes, linked.is_remote
    )


def _link_body(
    trace_id: int, span_id: int, attributes: Mapping[str, Any] | None, dropped: int, remote: bool
) -> bytes:
    body = b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08" + span_id.to_bytes(8, "big")
    body += _attributes(b"\x22", attributes)
    if dropped:
        body += b"\x28" + _varint(dropped)
    return body + b"\x35" + _pack_fixed32(0x100 | (0x200 if remote else 0))


def _status(span: ReadableSpan) -> bytes:
    status = span.status
    body = _field(b"\x12", status.description.encode()) if status.description else b""
    if status.status_code.value:
        body += b"\x18" + _varint(status.status_code.value)
    return body


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """`ExportTraceServiceRequest` bytes, the same bytes as the SDK's
    `encode_spans(spans).SerializeToString()` (`tests/test_otlp_wire.py` checks it on the recorded
    corpus and on every kind of field), in about half its time: no protobuf objects are built."""
    by_resource: dict[Any, dict[Any, list[bytes]]] = {}
    for span in spans:
        by_resource.setdefault(span.resource, {}).setdefault(span.instrumentation_scope or None, []).append(
            _span(span)
        )
    return _request(by_resource)


def encode_records(batches: Sequence[ExecutionSpans], limits: SpanLimits | None = None) -> bytes:
    """The same bytes as `encode_request(readable_spans(batches))`, and so as the SDK's
    (`tests/test_otlp_wire.py` checks it on the recorded corpus, and under span limits), without
    making a `ReadableSpan`: a span that the OTEL_*_LIMIT variables would cut goes the reference
    way."""
    limits = limits or SpanLimits()
    uncut = limits.max_attribute_length is None and limits.max_span_attribute_length is None
    counts = _Counts.of(limits)
    by_resource: dict[Any, dict[Any, list[bytes]]] = {}
    for batch in batches:
        encoded = by_resource.setdefault(batch.resource, {}).setdefault(_SCOPE, [])
        for record in batch.records:
            span = _record(record, counts) if uncut else None
            encoded.append(
                span if span is not None else _span(to_readable_span(record, batch.resource, limits))
            )
    return _request(by_resource)


class _Counts(NamedTuple):
    """The span limits on counts, each a number (no limit: the largest)."""

    attributes: int
    events: int
    links: int
    event_attributes: int
    link_attributes: int

    @classmethod
    def of(cls, limits: SpanLimits) -> _Counts:
        values = (limits.max_span_attributes, limits.max_events, limits.max_links,
                  limits.max_event_attributes, limits.max_link_attributes)  # fmt: skip
        return cls(*(sys.maxsize if value is None else value for value in values))


_NAMES: dict[str, bytes] = {}  # span names (state names, mostly) as their encoded field


def _record(record: SpanRecord, limits: _Counts) -> bytes | None:
    """`_span(to_readable_span(record, ...))`, or None for a span the limits would cut."""
    attributes, added = _span_attributes(record)
    events, links = record.events, record.links
    if (
        len(attributes) + len(added) > limits.attributes
        or len(events) > limits.events
        or len(links) > limits.links
        or (events and any(len(event.attributes) > limits.event_attributes for event in events))
        or (links and any(len(link.attributes) > limits.link_attributes for link in links))
    ):
        return None
    out = [b"\x0a\x10", record.trace_id.to_bytes(16, "big"), b"\x12\x08", record.span_id.to_bytes(8, "big")]
    remote = False
    if record.parent_span_id is not None:
        remote = record.kind == SpanKind.EXECUTION and record.opening_event_id == 1
        out += (b"\x22\x08", record.parent_span_id.to_bytes(8, "big"))
    if record.name:
        out.append(_NAMES.get(record.name) or _name_field(record.name))
    out.append(b"\x30\x03" if record.kind in _CLIENT_KINDS else b"\x30\x01")
    if record.start_ns:
        out += (b"\x39", _pack_fixed64(record.start_ns))
    if record.end_ns:
        out += (b"\x41", _pack_fixed64(record.end_ns))
    out.append(_attributes(b"\x4a", attributes))
    if added:
        out.append(_attributes(b"\x4a", added))
    if events:
        out += [_field(b"\x5a", _event(event.name, event.time_ns, event.attributes)) for event in events]
    if links:
        out += [
            _field(b"\x6a", _link_body(link.trace_id, link.span_id, link.attributes, 0, False))
            for link in links
        ]
    out.append(_record_status(record))
    out += (b"\x85\x01", _pack_fixed32(0x300 if remote else 0x100))
    return b"".join(out)


def _span_attributes(record: SpanRecord) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """`to_readable_span`'s attributes as the record's and those it adds after them: the record's,
    then sfn.state.type unless there, then error.type (in its place if there); without a copy
    of the record's unless error.type is in them."""
    attributes: Mapping[str, Any] = record.attributes
    added: dict[str, Any] = {}
    if record.state_type and "sfn.state.type" not in attributes:
        added["sfn.state.type"] = record.state_type
    if record.status == Status.ERROR and record.error:
        if "error.type" in attributes:
            attributes = {**attributes, "error.type": record.error}
        else:
            added["error.type"] = record.error
    return attributes, added


def _name_field(name: str) -> bytes:
    encoded = _field(b"\x2a", name.encode())
    if len(_NAMES) < _CACHE_SIZE:
        _NAMES[name] = encoded
    return encoded


def _record_status(record: SpanRecord) -> bytes:
    if record.status == Status.ERROR:
        description = _description(record.error, record.cause)
        return _field(b"\x7a", (_field(b"\x12", description.encode()) if description else b"") + b"\x18\x02")
    return b"\x7a\x02\x18\x01" if record.status == Status.OK else b"\x7a\x00"


def _request(by_resource: dict[Any, dict[Any, list[bytes]]]) -> bytes:
    """The request: its encoded spans by resource, then by instrumentation scope."""
    out = []
    for resource, scopes in by_resource.items():
        body = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        for scope, encoded in scopes.items():
            scope_body = b""
            if scope is not None:
                if scope.name:
                    scope_body += _field(b"\x0a", scope.name.encode())
                if scope.version:
                    scope_body += _field(b"\x12", scope.version.encode())
                scope_body += _attributes(b"\x1a", scope.attributes)
            inner = _field(b"\x0a", scope_body) + b"".join(_field(b"\x12", s) for s in encoded)
            if scope is not None and scope.schema_url:
                inner += _field(b"\x1a", scope.schema_url.encode())
            body += _field(b"\x12", inner)
        if resource.schema_url:
            body += _field(b"\x1a", resource.schema_url.encode())
        out.append(_field(b"\x0a", body))
    return b"".join(out)
