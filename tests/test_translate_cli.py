"""`sfn-exporter translate` as a user runs it: a real process, files, stdin, OTLP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exporter.history.ids import span_id_for, trace_id_for
from simulator.builder import History
from tests.otlp_receiver import GrpcOtlpServer, HttpOtlpServer

ARN = "arn:aws:states:eu-west-1:123456789012:execution:Orders:run-1"
KEYS = {"trace_id", "span_id", "parent_span_id", "name", "kind", "state_type", "start", "end",
        "status", "error", "cause", "attributes", "events", "links"}  # fmt: skip


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        input=stdin,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def history() -> History:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    h.add("TaskScheduled", resource="invoke", resourceType="lambda")
    h.add("TaskFailed", resource="invoke", resourceType="lambda", error="Boom", cause="card declined")
    h.add("TaskStateExited", name="Charge")
    h.add("WaitStateEntered", name="Cooldown")
    return h


def as_cli_output(h: History) -> dict[str, Any]:
    """What `aws stepfunctions get-execution-history` prints: ISO timestamps, newest first if asked."""
    import datetime as dt

    events = []
    for raw in h.events:
        event = dict(raw)
        event["timestamp"] = dt.datetime.fromtimestamp(event["timestamp"], dt.UTC).isoformat()
        events.append(event)
    return {"events": events}


def test_json_lines_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(as_cli_output(history())))
    result = cli("translate", str(path), "--execution-arn", ARN)
    assert result.returncode == 0, result.stderr
    spans = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(span) == KEYS for span in spans)
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"Orders", "Charge", "lambda:invoke", "Cooldown"}
    root = by_name["Orders"]
    assert root["trace_id"] == f"{trace_id_for(ARN):032x}" and root["parent_span_id"] is None
    assert (root["end"], root["status"]) == (None, "UNSET")
    charge = by_name["Charge"]
    assert charge["span_id"] == f"{span_id_for(ARN, 2):016x}"
    # the failure was caught (the state exited): said, but no error status (OpenTelemetry's rule)
    assert (charge["kind"], charge["state_type"], charge["status"], charge["error"], charge["cause"]) == (
        "state", "Task", "UNSET", "Boom", "card declined",
    )  # fmt: skip
    assert charge["attributes"]["sfn.outcome"] == "caught"
    assert [e["name"] for e in charge["events"]] == ["exception"]
    attempt = by_name["lambda:invoke"]
    assert (attempt["status"], attempt["error"], attempt["cause"]) == ("ERROR", "Boom", "card declined")
    assert charge["start"] == "2023-11-14T22:13:21Z" and charge["end"] == "2023-11-14T22:13:24Z"
    assert by_name["lambda:invoke"]["parent_span_id"] == charge["span_id"]
    assert by_name["lambda:invoke"]["kind"] == "task"


def test_reverse_order_pages_from_stdin_give_the_same_spans(tmp_path: Path) -> None:
    document = as_cli_output(history())
    path = tmp_path / "history.json"
    path.write_text(json.dumps(document))
    forward = cli("translate", str(path), "--execution-arn", ARN).stdout
    newest_first = document["events"][::-1]
    pages = [{"events": newest_first[:3], "nextToken": "t"}, {"events": newest_first[3:]}]
    result = cli("translate", "-", "--execution-arn", ARN, stdin=json.dumps(pages))
    assert result.returncode == 0, result.stderr
    assert result.stdout == forward


def test_tree_draws_a_waterfall_with_errors_in_red(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(as_cli_output(history())))
    result = cli(
        "translate",
        str(path),
        "--execution-arn",
        ARN,
        "--format",
        "tree",
        "--width",
        "90",
        "--color",
        "always",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = [line.replace("\x1b[31m", "").replace("\x1b[2m", "")[:30].rstrip() for line in lines]
    assert names == ["Orders", "  Charge", "    lambda:invoke", "  Cooldown"]
    assert lines[2].startswith("\x1b[31m") and "Boom" in lines[2]  # the failed attempt
    assert not lines[1].startswith("\x1b[31m")  # its state caught the failure
    assert "█" in lines[1] and "░" in lines[3]  # finished vs still open
    bar_start = [len(line.split("█")[0]) for line in lines[1:3]]
    assert bar_start[0] < bar_start[1]  # the attempt starts after its state


def test_without_an_arn_a_placeholder_is_used_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(as_cli_output(history())))
    result = cli("translate", str(path))
    assert result.returncode == 0
    assert "pass --execution-arn" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "sfn-exporter translate: input is not JSON: Expecting property name"),
        ('{"events": 3}', "sfn-exporter translate: page 0: 'events': expected a list, got int"),
        (
            '{"events": [{"id": 1, "type": "ExecutionStarted"}]}',
            "sfn-exporter translate: event 1 (ExecutionStarted): timestamp: missing",
        ),
        (
            '{"events": [{"id": 1, "type": "A", "timestamp": 1}, {"id": 1, "type": "B", "timestamp": 1}]}',
            "sfn-exporter translate: event 1: appears twice with different contents",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "history.json"
    path.write_text(content)
    result = cli("translate", str(path), "--execution-arn", ARN)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stdout == ""


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    result = cli("translate", str(tmp_path / "nope.json"))
    assert result.returncode == 2 and "cannot read" in result.stderr and "nope.json" in result.stderr


@pytest.mark.parametrize("server_type", [GrpcOtlpServer, HttpOtlpServer], ids=["grpc", "http"])
def test_otlp_endpoint_sends_the_finished_spans(tmp_path: Path, server_type: type) -> None:
    path = tmp_path / "history.json"
    h = history()
    h.add("WaitStateExited", name="Cooldown")
    h.add("ExecutionSucceeded")
    path.write_text(json.dumps(as_cli_output(h)))
    expected = [
        json.loads(line) for line in cli("translate", str(path), "--execution-arn", ARN).stdout.splitlines()
    ]
    protocol = "grpc" if server_type is GrpcOtlpServer else "http/protobuf"
    with server_type() as server:
        result = cli(
            "translate",
            str(path),
            "--execution-arn",
            ARN,
            "--otlp-endpoint",
            server.endpoint,
            "--otlp-protocol",
            protocol,
        )
        assert result.returncode == 0, result.stderr
        received = server.receiver.snapshot()
    assert sorted((s.span_id, s.parent_span_id, s.name) for s in received) == sorted(
        (s["span_id"], s["parent_span_id"], s["name"]) for s in expected
    )
    root = next(s for s in received if s.name == "Orders")
    assert root.resource["cloud.provider"] == "aws" and root.resource["cloud.region"] == "eu-west-1"
    assert root.resource["cloud.account.id"] == "123456789012"
    attempt = next(s for s in received if s.name == "lambda:invoke")
    assert (attempt.status_code, attempt.status_message) == (2, "Boom: card declined")
    assert attempt.attributes["error.type"] == "Boom"
    charge = next(s for s in received if s.name == "Charge")
    assert (charge.status_code, charge.status_message) == (0, "")  # caught: UNSET
