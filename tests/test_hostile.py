"""Hostile content: state and error names with quotes, backslashes, newlines, non-ASCII and 80
characters, 256 KB inputs, outputs and causes. `/metrics` stays valid exposition (promtool and
prometheus-client's parser agree, every label value survives the round trip) and spans stay
within their size limits."""

from __future__ import annotations

import json
import subprocess

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.emit.health import HealthMetrics
from exporter.emit.metrics import WorkflowMetrics
from exporter.emit.otlp import to_readable_spans
from exporter.history.assembler import AssemblerOptions, SpanAssembler
from exporter.model import ExecutionIdentity
from simulator.builder import History
from tests.prometheus import prometheus_binary

NAMES = [
    'He said "hi"\nand left',
    "Zahlung überprüfen ✓ 支払い 🚀",
    "x" * 80,
    "back\\slash\\",
    '{"json": true}',
    "\u202eevil\u200b",
]
ERROR = 'Custom.Error "quoted"\nsecond line'
BIG = json.dumps({"blob": "y" * 256 * 1024})
IDENTITY = ExecutionIdentity.from_arn(f"arn:aws:states:eu-west-1:123456789012:execution:{'M' * 80}:run-1")


def hostile_history() -> History:
    h = History()
    h.add("ExecutionStarted", prev=0, input=BIG, roleArn="arn:aws:iam::1:role/r")
    for name in NAMES:
        h.add("TaskStateEntered", name=name, input=BIG)
        h.add("TaskScheduled", resource="invoke", resourceType="lambda", region="eu-west-1", parameters=BIG)
        h.add("TaskStarted", resource="invoke", resourceType="lambda")
        h.add("TaskFailed", resource="invoke", resourceType="lambda", error=ERROR, cause=BIG)
        h.add("TaskScheduled", resource="invoke", resourceType="lambda", region="eu-west-1", parameters=BIG)
        h.add("TaskStarted", resource="invoke", resourceType="lambda")
        h.add("TaskSucceeded", resource="invoke", resourceType="lambda", output=BIG)
        h.add("TaskStateExited", name=name, output=BIG)
    h.add("ExecutionFailed", error=ERROR, cause=BIG)
    return h


def test_hostile_names_keep_metrics_valid_exposition() -> None:
    registry = CollectorRegistry()
    HealthMetrics(registry)
    WorkflowMetrics(registry).apply(SpanAssembler(IDENTITY).feed(hostile_history().events).observations)
    text = generate_latest(registry).decode()
    check = subprocess.run(
        [prometheus_binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in (check.stdout + check.stderr).splitlines() if "error" in line.lower()]
    assert check.returncode in (0, 3) and not errors, check.stdout + check.stderr  # 3: lint hints only
    seen = {
        (sample.name, value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }
    values = {value for _, value in seen}
    assert set(NAMES) <= values and ERROR in values and "M" * 80 in values
    entered = {v for name, v in seen if name == "sfn_states_entered_total"}
    assert set(NAMES) <= entered


def test_hostile_payloads_stay_within_span_limits() -> None:
    for include in (False, True):
        options = AssemblerOptions(include_data=include, max_data_bytes=4096)
        assembler = SpanAssembler(IDENTITY, options)
        records = assembler.feed(hostile_history().events).spans
        spans = to_readable_spans(records, IDENTITY)
        assert len(spans) == 1 + 2 * len(NAMES) + len(NAMES)  # the root, two attempts and a state each
        for span in spans:
            assert len(span.status.description or "") <= 1024
            for key, value in span.attributes.items():
                if isinstance(value, str):
                    assert len(value.encode()) <= 4096 + 64, (span.name, key, len(value))
            for event in span.events:
                for value in event.attributes.values():
                    assert not isinstance(value, str) or len(value.encode()) <= 4096 + 64
            assert ("y" * 5000) not in repr(span.attributes)
        names = {span.name for span in spans}
        assert set(NAMES) <= names
