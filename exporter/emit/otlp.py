"""Span records to OpenTelemetry `ReadableSpan`s, and the OTLP exporter that sends them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import lru_cache

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

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
        return GrpcExporter(endpoint=endpoint, insecure=insecure, timeout=timeout_s)
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint, timeout=timeout_s)
    raise ValueError(f"OTLP protocol {protocol!r}: expected 'grpc' or 'http/protobuf'")
