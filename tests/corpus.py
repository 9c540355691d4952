"""Loads the recorded AWS histories and normalises what the snapshot tooling masked."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.model import ExecutionIdentity

REPO = Path(__file__).resolve().parent.parent
AWS_RECORDED = REPO / "tests" / "fixtures" / "aws-recorded"
AWS_RECORDED_LOGS = REPO / "tests" / "fixtures" / "aws-recorded-logs"
BASE_TIME_S = 1_700_000_000


@dataclass(frozen=True)
class RecordedHistory:
    source: str
    case: str
    events: list[dict[str, Any]]

    @property
    def identity(self) -> ExecutionIdentity:
        slug = "".join(ch if ch.isalnum() else "-" for ch in self.case)[:70]
        return ExecutionIdentity.from_arn(
            f"arn:aws:states:us-east-1:111111111111:execution:{self.source}:{slug}"
        )


def normalise(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Undo the snapshot masking: synthetic increasing times, positional ids for masked ones,
    input/output re-serialised as strings, events in id order."""
    out = copy.deepcopy(events)
    if all(isinstance(e.get("id"), int) for e in out):
        out.sort(key=lambda e: e["id"])
    for position, event in enumerate(out):
        if not isinstance(event.get("id"), int):
            event["id"] = position + 1
        if not isinstance(event.get("previousEventId"), int):
            event["previousEventId"] = 0
        event["timestamp"] = float(BASE_TIME_S + position)
        for key, value in event.items():
            if key.endswith("EventDetails") and isinstance(value, dict):
                for field in ("input", "output", "parameters", "cause"):
                    if field in value and not isinstance(value[field], str):
                        value[field] = json.dumps(value[field])
    return out


def recorded_histories() -> Iterator[RecordedHistory]:
    for path in sorted(AWS_RECORDED.glob("*.json")):
        data = json.loads(path.read_text())
        for index, history in enumerate(data["histories"]):
            yield RecordedHistory(path.stem, f"{index}:{history['case']}", normalise(history["events"]))


DIGESTS = REPO / "tests" / "fixtures" / "aws-recorded.digests.json"


def digest(history: RecordedHistory) -> str:
    """A fingerprint of everything the assembler makes of a history: every span as `translate`
    prints it, and every metric observation, in order."""
    import hashlib

    from exporter.history.assembler import SpanAssembler
    from exporter.translate import json_lines

    assembler = SpanAssembler(history.identity)
    out = assembler.feed(history.events)
    text = json_lines(out.spans + assembler.open_spans()) + json.dumps([list(o) for o in out.observations])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key(history: RecordedHistory) -> str:
    return f"{history.source}/{history.case}"


if __name__ == "__main__":
    # Rewrites the digests after an intended change of the span or metric model; review what
    # changed with `sfn-exporter translate` on a few of the histories before committing.
    digests = {key(h): digest(h) for h in recorded_histories()}
    DIGESTS.write_text(json.dumps(digests, indent=0, sort_keys=True) + "\n")
    print(f"{len(digests)} digests written to {DIGESTS}")


def as_log_messages(arn: str, events: list[dict[str, Any]]) -> list[dict[str, str | dict[str, Any]]]:
    """A history as Step Functions writes it to CloudWatch Logs at level ALL: one message per
    event, numbers as text, the timestamp in epoch milliseconds, the details under `details`."""
    messages: list[dict[str, str | dict[str, Any]]] = []
    for event in events:
        message: dict[str, str | dict[str, Any]] = {
            "id": str(event["id"]), "previous_event_id": str(event.get("previousEventId", 0)),
            "event_timestamp": str(round(event["timestamp"] * 1000)), "type": event["type"],
            "execution_arn": arn, "redrive_count": "0",
        }  # fmt: skip
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), None)
        if details is not None:
            message["details"] = details
        messages.append(message)
    return messages


@dataclass(frozen=True)
class RecordedLogCase:
    source: str
    case: str
    messages: list[dict[str, Any]]


def recorded_log_cases() -> Iterator[RecordedLogCase]:
    """The recorded log messages, unmasked: synthetic increasing times, concrete ARNs (one per
    masked execution), re-serialised data."""
    for path in sorted(AWS_RECORDED_LOGS.glob("*.json")):
        data = json.loads(path.read_text())
        for index, case in enumerate(data["cases"]):
            messages = copy.deepcopy(case["log_events"])
            for position, message in enumerate(messages):
                message["event_timestamp"] = str((BASE_TIME_S + position) * 1000)
                parts = message["execution_arn"].split(":")  # ...:KIND:<machine>:<name>[:<id>]
                kind, run = parts[5], "".join(ch for ch in parts[7] if ch.isalnum())
                suffix = ":0c1b2a3d-0000-4000-8000-000000000000" if kind == "express" else ""
                message["execution_arn"] = (
                    f"arn:aws:states:us-east-1:111111111111:{kind}:{path.stem}-{index}:{run}{suffix}"
                )
                details = message.get("details") or {}
                for field in ("input", "output", "cause"):
                    if field in details and not isinstance(details[field], str):
                        details[field] = json.dumps(details[field])
            yield RecordedLogCase(path.stem, f"{index}:{case['case']}", messages)
