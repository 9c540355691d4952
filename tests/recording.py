"""Runs the sample workflows on moto's interpreter and records their histories.

`python -m tests.recording` rewrites tests/fixtures/moto/ (histories and golden span files);
`python -m tests.recording --goldens-only` rewrites only the golden files from the histories."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import moto

from exporter.demo.samples import ROLE_ARN, SAMPLES
from exporter.model import ExecutionIdentity
from exporter.translate import assemble, json_lines
from tests.moto_server import MotoServer

FIXTURES = Path(__file__).parent / "fixtures" / "moto"
EXECUTION_NAME = "recorded"


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def record_samples(endpoint: str, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """Deploy and run every sample once; return {name: {executionArn, status, events}}."""
    client = boto3.client(
        "stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    started = {}
    for sample in SAMPLES:
        machine = client.create_state_machine(
            name=sample.name, definition=sample.definition_json, roleArn=ROLE_ARN
        )
        execution = client.start_execution(
            stateMachineArn=machine["stateMachineArn"], name=EXECUTION_NAME, input=json.dumps(sample.input)
        )
        started[sample.name] = execution["executionArn"]
    deadline = time.monotonic() + timeout_s
    documents: dict[str, dict[str, Any]] = {}
    while len(documents) < len(started):
        for name, arn in started.items():
            status = client.describe_execution(executionArn=arn)["status"]
            if name not in documents and status != "RUNNING":
                events = [
                    event
                    for page in client.get_paginator("get_execution_history").paginate(executionArn=arn)
                    for event in page["events"]
                ]
                # through JSON, as `aws stepfunctions get-execution-history` would print it
                events = json.loads(json.dumps(events, default=_json_default))
                documents[name] = {"executionArn": arn, "status": status, "events": events}
        if time.monotonic() > deadline:
            raise TimeoutError(f"still running after {timeout_s}s: {sorted(set(started) - set(documents))}")
        time.sleep(0.2)
    return documents


def golden_lines(document: dict[str, Any]) -> str:
    identity = ExecutionIdentity.from_arn(document["executionArn"])
    return json_lines(assemble(document["events"], identity))


def main() -> None:
    if "--goldens-only" in sys.argv[1:]:
        for path in sorted(FIXTURES.glob("*.spans.jsonl")):
            document = json.loads(path.with_name(path.name.replace(".spans.jsonl", ".json")).read_text())
            path.write_text(golden_lines(document))
            print(f"{path.name}: rewritten")
        return
    with MotoServer() as server:
        documents = record_samples(server.endpoint)
    for name, document in documents.items():
        document["recordedWith"] = f"moto {moto.__version__}"
        (FIXTURES / f"{name}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        (FIXTURES / f"{name}.spans.jsonl").write_text(golden_lines(document))
        print(f"{name}: {document['status']}, {len(document['events'])} events")


if __name__ == "__main__":
    main()
