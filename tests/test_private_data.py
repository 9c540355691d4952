"""Private data stays private: every recorded history, with secrets put in every field of every
event that can carry execution data (inputs, outputs, parameters, causes, result selectors, the
fields of unknown event types), goes through the whole exporter, and every output is searched for
the secrets: span names, attributes, events, status, links (as OTLP encodes them), the workflow
and exporter metrics, `translate`'s JSON, and the daemon's log. None may appear with data and
causes off, nor with both on and redaction paths that cover them."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from prometheus_client import CollectorRegistry, generate_latest

from exporter.app import Hooks
from exporter.config import Config
from exporter.emit.metrics import WorkflowMetrics
from exporter.emit.otlp import to_readable_spans
from exporter.history.assembler import _PLAIN_TEXT_FIELDS, AssemblerOptions, SpanAssembler
from exporter.history.redact import make_redactor
from exporter.logs import quiet_libraries
from exporter.translate import json_lines
from simulator.stepfunctions import Simulator, SimulatorServer
from tests.corpus import recorded_histories
from tests.harness import fast_config, isolate_aws_env, running_exporter
from tests.otlp_receiver import GrpcOtlpServer
from tests.workloads import from_events

SECRET = "hunter2-7f3a"
CARD = "4111111111111111"
PAYLOAD = json.dumps(
    {"password": SECRET, "card": CARD, "items": [{"card": CARD, "note": {"password": SECRET}}]}
)
REDACT = ["$..password", "$..card"]
OFF = AssemblerOptions(include_data=False, include_causes=False)
ON = AssemblerOptions(
    include_data=True, include_causes=True, redact=make_redactor(REDACT), max_data_bytes=262144
)


def poison(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Secrets in every text field of every event's details that is not a name, ARN or error
    name, and in an unknown event type after the first event."""
    events = copy.deepcopy(events)
    for event in events:
        for key, details in event.items():
            if not key.endswith("EventDetails") or not isinstance(details, dict):
                continue
            for field, value in list(details.items()):
                if isinstance(value, str) and field not in _PLAIN_TEXT_FIELDS:
                    details[field] = PAYLOAD
            details["resultSelector"] = PAYLOAD
            details["unknownField"] = PAYLOAD
    if events:
        unknown = {
            "id": 0, "previousEventId": 0, "timestamp": events[0]["timestamp"], "type": "QuantumEntangled",
            "quantumEntangledEventDetails": {"input": PAYLOAD, "parameters": PAYLOAD, "cause": PAYLOAD, "spin": 1},
        }  # fmt: skip
        events.insert(1, unknown)
        for position, event in enumerate(events):
            event["id"] = position + 1
    return events


HISTORIES = [(h.identity, poison(h.events)) for h in recorded_histories()]


def everything_emitted(options: AssemblerOptions) -> bytes:
    registry = CollectorRegistry()
    metrics = WorkflowMetrics(registry)
    out = []
    for identity, events in HISTORIES:
        assembler = SpanAssembler(identity, options)
        assembled = assembler.feed(events)
        records = assembled.spans + assembler.open_spans()
        metrics.apply(assembled.observations)
        out.append(encode_spans(to_readable_spans(records, identity)).SerializeToString())
        out.append(json_lines(records).encode())
    out.append(generate_latest(registry))
    return b"".join(out)


def test_the_poisoned_corpus_carries_the_secrets_everywhere() -> None:
    """The check below could fail: without the gate the secrets would come out."""
    leaky = AssemblerOptions(include_data=True, include_causes=True, max_data_bytes=262144)
    emitted = everything_emitted(leaky)
    assert SECRET.encode() in emitted and CARD.encode() in emitted
    types = {e["type"] for _, events in HISTORIES for e in events}
    assert len(types) > 40 and "QuantumEntangled" in types


@pytest.mark.parametrize("options", [OFF, ON], ids=["data-and-causes-off", "on-with-redaction"])
def test_no_secret_leaves_the_assembler(options: AssemblerOptions) -> None:
    emitted = everything_emitted(options)
    assert SECRET.encode() not in emitted
    assert CARD.encode() not in emitted
    if options is ON:
        assert b"[REDACTED]" in emitted  # the data is there, redacted


@pytest.mark.parametrize(
    "data",
    [
        {"include_execution_data": False, "include_causes": False},
        {"include_execution_data": True, "include_causes": True, "redact_paths": REDACT, "max_bytes": 262144},
    ],
    ids=["data-and-causes-off", "on-with-redaction"],
)
async def test_no_secret_leaves_the_daemon(
    data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    isolate_aws_env(monkeypatch)
    caplog.set_level(logging.DEBUG)
    quiet_libraries()  # as `sfn-exporter run` sets logging up
    sim = Simulator()
    chosen = [events for _, events in HISTORIES if events[-1]["type"].startswith("Execution")][:40:4]
    for n, events in enumerate(chosen):
        machine = sim.add_machine(f"m{n}", {"StartAt": "X", "States": {}})
        template = from_events(f"t{n}", events, [i * 0.02 for i in range(len(events))])
        sim.start(machine, template, f"e{n}", start=sim.clock() + 0.2)
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
        config = Config.model_validate(fast_config(tmp_path, data=data, log={"level": "debug"}))
        hooks = Hooks(handle_signals=False)
        async with running_exporter(config, hooks):
            deadline = asyncio.get_running_loop().time() + 60
            while not (
                len({span.trace_id for span in otlp.receiver.snapshot()}) == len(chosen)
                and hooks.exporter is not None
                and not hooks.exporter.tracked
            ):
                assert asyncio.get_running_loop().time() < deadline, "the executions were not exported"
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
        received = repr(otlp.receiver.snapshot())
    assert len(otlp.receiver.snapshot()) > 50
    outputs = {
        "spans": received,
        "metrics": generate_latest(hooks.registry).decode(),
        "log": "\n".join(r.getMessage() + repr(r.__dict__.get("args")) for r in caplog.records),
    }
    assert any(r.name.startswith("exporter.") for r in caplog.records)
    for where, text in outputs.items():
        assert SECRET not in text, where
        assert CARD not in text, where
    assert ("[REDACTED]" in received) == data["include_execution_data"]
