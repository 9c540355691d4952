"""OpenTelemetry's conventions: the SDK's precedence for its variables (a flag, then our
configuration, then OTEL_*, then our default), span limits, and semantic-convention attributes."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from exporter.config import load_config
from exporter.emit.otlp import make_span_exporter, resource_for, to_readable_spans
from exporter.history.assembler import AssemblerOptions, SpanAssembler
from exporter.model import ExecutionIdentity
from simulator.builder import History

ARN = "arn:aws:states:eu-west-1:123456789012:execution:Orders:order-4711"
IDENTITY = ExecutionIdentity.from_arn(ARN)


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_TIMEOUT",
                 "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_SDK_DISABLED", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                 "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def timeout_of(exporter: object) -> float:
    """The SDK exporters keep their timeout in different places (gRPC: on themselves; HTTP: on
    their client); read, not assumed."""
    own = vars(exporter).get("_timeout")
    return float(own if own is not None else vars(vars(exporter)["_client"])["_timeout"])


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_otlp_timeout_variable_applies_unless_configured(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    default = load_config(None, environ={}).otlp.timeout_seconds
    assert timeout_of(make_span_exporter("http://127.0.0.1:4317", protocol, default)) == 3
    configured = load_config(None, environ={"SFN_EXPORTER_OTLP__TIMEOUT_SECONDS": "7"}).otlp.timeout_seconds
    assert timeout_of(make_span_exporter("http://127.0.0.1:4317", protocol, configured)) == 7


def test_the_service_name_comes_from_the_otel_variables_before_our_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resource_for(IDENTITY).attributes["service.name"] == "step-functions"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=payments,deployment.environment=prod")
    resource = resource_for(IDENTITY)
    assert resource.attributes["service.name"] == "payments"
    assert resource.attributes["deployment.environment"] == "prod"
    assert resource.attributes["cloud.region"] == "eu-west-1"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-workflows")
    assert resource_for(IDENTITY).attributes["service.name"] == "orders-workflows"


def test_otel_sdk_disabled_turns_span_export_off_unless_configured_on() -> None:
    assert load_config(None, environ={}).otlp.exporting({}) is True
    assert load_config(None, environ={}).otlp.exporting({"OTEL_SDK_DISABLED": "true"}) is False
    explicit = load_config(None, environ={"SFN_EXPORTER_OTLP__ENABLED": "true"}).otlp
    assert explicit.exporting({"OTEL_SDK_DISABLED": "true"}) is True
    assert load_config(None, environ={"SFN_EXPORTER_OTLP__ENABLED": "false"}).otlp.exporting({}) is False


def history() -> History:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    h.add("TaskScheduled", resource="invoke", resourceType="lambda", region="eu-west-1",
          parameters=json.dumps({"FunctionName": "arn:aws:lambda:eu-west-1:123456789012:function:charge:live",
                                 "Payload": {"card": "4111"}}))  # fmt: skip
    h.add("TaskSucceeded", resource="invoke", resourceType="lambda", output="{}")
    h.add("TaskStateExited", name="Charge")
    h.add("TaskStateEntered", name="Save")
    h.add("TaskScheduled", resource="putItem", resourceType="dynamodb", region="eu-west-1", parameters="{}")
    h.add("TaskSucceeded", resource="putItem", resourceType="dynamodb", output="{}")
    h.add("TaskStateExited", name="Save")
    h.add("TaskStateEntered", name="Archive")
    h.add(
        "TaskScheduled", resource="putObject.waitForTaskToken", resourceType="aws-sdk:s3", region="eu-west-1"
    )
    h.add("TaskSucceeded", resource="putObject.waitForTaskToken", resourceType="aws-sdk:s3", output="{}")
    h.add("TaskStateExited", name="Archive")
    h.add("TaskStateEntered", name="Legacy")
    h.add("LambdaFunctionScheduled", resource="arn:aws:lambda:us-west-2:123456789012:function:old-style")
    h.add("LambdaFunctionSucceeded", output="{}")
    h.add("TaskStateExited", name="Legacy")
    h.add("ExecutionSucceeded", output="{}")
    return h


def spans_by_name(**options: object) -> dict[str, dict[str, object]]:
    out = SpanAssembler(IDENTITY, AssemblerOptions(**options)).feed(history().events)  # type: ignore[arg-type]
    return {span.name: dict(span.attributes) for span in out.spans}


def test_semantic_convention_attributes_name_the_calls() -> None:
    spans = spans_by_name()
    lambda_task = spans["lambda:invoke"]
    assert {k: lambda_task[k] for k in lambda_task if k.startswith(("faas.", "rpc."))} == {
        "faas.invoked_name": "charge", "faas.invoked_provider": "aws", "faas.invoked_region": "eu-west-1",
        "rpc.system": "aws-api", "rpc.service": "Lambda", "rpc.method": "Invoke",
    }  # fmt: skip
    assert "4111" not in json.dumps(lambda_task)  # only the function's name is read from the parameters
    dynamodb = spans["dynamodb:putItem"]
    assert (dynamodb["rpc.system"], dynamodb["rpc.service"], dynamodb["rpc.method"]) == (
        "aws-api",
        "DynamoDB",
        "PutItem",
    )
    s3 = spans["aws-sdk:s3:putObject.waitForTaskToken"]
    assert (s3["rpc.service"], s3["rpc.method"]) == ("S3", "PutObject")
    legacy = spans["lambda old-style"]
    assert (legacy["faas.invoked_name"], legacy["faas.invoked_region"]) == ("old-style", "us-west-2")
    root = spans["Orders"]
    assert root["cloud.resource_id"] == ARN


@pytest.mark.parametrize(("how", "name"), [("hash", "hashed"), ("drop", None)])
def test_the_execution_name_can_be_hashed_or_left_out(how: str, name: str | None) -> None:
    root = spans_by_name(execution_name=how)["Orders"]
    text = json.dumps(root)
    assert "order-4711" not in text
    if name is None:
        assert "sfn.execution.name" not in root and "cloud.resource_id" not in root
    else:
        assert len(str(root["sfn.execution.name"])) == 16
        assert root["cloud.resource_id"] == ARN.replace("order-4711", str(root["sfn.execution.name"]))


def test_span_limits_from_the_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "12")
    records = SpanAssembler(IDENTITY).feed(history().events).spans
    spans = to_readable_spans(records, IDENTITY)
    assert all(len(span.attributes) <= 4 for span in spans)
    assert all(len(v) <= 12 for span in spans for v in span.attributes.values() if isinstance(v, str))
    encoded = encode_spans(spans)
    dropped = [
        s.dropped_attributes_count for rs in encoded.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    assert max(dropped) > 0  # the backend is told what was cut
    monkeypatch.delenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT")
    monkeypatch.delenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT")
    plain = to_readable_spans(records, IDENTITY)
    assert max(len(span.attributes) for span in plain) > 4
