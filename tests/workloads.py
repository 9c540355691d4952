"""Execution templates for the simulator: recorded histories, and synthetic ones that sit in
long Wait and Task states or burst."""

from __future__ import annotations

import json
import random
from typing import Any

from tests.builder import History
from tests.corpus import recorded_histories
from tests.recording import FIXTURES
from tests.sfn_simulator import Template

LAMBDA: dict[str, Any] = {"resource": "invoke", "resourceType": "lambda"}


def from_events(name: str, events: list[dict[str, Any]], offsets: list[float]) -> Template:
    clean = [{k: v for k, v in event.items() if k != "timestamp"} for event in events]
    return Template(name, offsets, clean)


def moto_templates() -> list[Template]:
    """The sample workflows as moto ran them, with their real timing."""
    import datetime as dt

    templates = []
    for path in sorted(FIXTURES.glob("*.json")):
        document = json.loads(path.read_text())
        times = [dt.datetime.fromisoformat(e["timestamp"]).timestamp() for e in document["events"]]
        templates.append(from_events(path.stem, document["events"], [t - times[0] for t in times]))
    return templates


def aws_templates(step_s: float = 0.5) -> list[Template]:
    """The recorded AWS histories that end in a terminal event, an event every `step_s`."""
    templates = []
    for history in recorded_histories():
        if history.events[-1]["type"] in (
            "ExecutionSucceeded",
            "ExecutionFailed",
            "ExecutionTimedOut",
            "ExecutionAborted",
        ):
            templates.append(
                from_events(history.source, history.events, [i * step_s for i in range(len(history.events))])
            )
    return templates


def waiter_definition(wait_s: int) -> dict[str, Any]:
    return {
        "StartAt": "Fetch",
        "States": {
            "Fetch": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Sleep"},
            "Sleep": {"Type": "Wait", "Seconds": wait_s, "Next": "Check"},
            "Check": {"Type": "Choice", "Choices": [], "Default": "Fetch"},
        },
    }


def waiter(rng: random.Random, loops: int, wait_s: int, task_s: tuple[float, float]) -> Template:
    """Fetch (a Lambda task), Sleep (a fixed Wait), Check; `loops` times; then success."""
    h = History()
    offsets: list[float] = []
    now = 0.0

    def add(event_type: str, gap: float = 0.01, **details: Any) -> None:
        nonlocal now
        now += gap
        h.add(event_type, **details)
        offsets.append(now)

    h.add("ExecutionStarted", prev=0, input="{}")
    offsets.append(0.0)
    for _ in range(loops):
        add("TaskStateEntered", name="Fetch")
        add("TaskScheduled", **LAMBDA)
        add("TaskStarted", **LAMBDA)
        add("TaskSucceeded", gap=rng.uniform(*task_s), output="{}", **LAMBDA)
        add("TaskStateExited", name="Fetch")
        add("WaitStateEntered", name="Sleep")
        add("WaitStateExited", gap=wait_s, name="Sleep")
        add("ChoiceStateEntered", name="Check")
        add("ChoiceStateExited", name="Check")
    add("ExecutionSucceeded", output="{}")
    return Template("waiter", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])


def burster(rng: random.Random, bursts: int, width: int, quiet_s: tuple[float, float]) -> Template:
    """A Map of `width` quick iterations, then a long Task; `bursts` times; then success."""
    h = History()
    offsets: list[float] = [0.0]
    now = 0.0
    h.add("ExecutionStarted", prev=0, input="{}")

    def add(event_type: str, gap: float = 0.01, prev: int | None = None, **details: Any) -> int:
        nonlocal now
        now += gap
        offsets.append(now)
        return h.add(event_type, prev=prev, **details)

    for _ in range(bursts):
        add("MapStateEntered", name="Fan")
        started = add("MapStateStarted", length=width)
        last = started
        for index in range(width):
            iteration = add("MapIterationStarted", prev=last, name="Fan", index=index)
            add("PassStateEntered", prev=iteration, name="Item")
            exited = add("PassStateExited", name="Item")
            last = add("MapIterationSucceeded", prev=exited, name="Fan", index=index)
        add("MapStateSucceeded", prev=last)
        add("MapStateExited", prev=last, name="Fan")
        add("TaskStateEntered", name="Digest")
        add("TaskScheduled", **LAMBDA)
        add("TaskStarted", **LAMBDA)
        add("TaskSucceeded", gap=rng.uniform(*quiet_s), **LAMBDA)
        add("TaskStateExited", name="Digest")
    add("ExecutionSucceeded")
    return Template("burster", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])


def redriven(fail_at_s: float = 1.0, redrive_after_s: float = 2.0) -> Template:
    """Fails, is redriven, and succeeds: the history grows after a terminal event."""
    h = History()
    offsets = [0.0]
    h.add("ExecutionStarted", prev=0, input="{}")
    steps: list[tuple[str, float, dict[str, Any]]] = [
        ("TaskStateEntered", 0.1, {"name": "Charge"}), ("TaskScheduled", 0.01, LAMBDA),
        ("TaskFailed", fail_at_s, {"error": "Boom", **LAMBDA}), ("ExecutionFailed", 0.01, {"error": "Boom"}),
        ("ExecutionRedriven", redrive_after_s, {"redriveCount": 1}), ("TaskStateEntered", 0.1, {"name": "Charge"}),
        ("TaskScheduled", 0.01, LAMBDA), ("TaskSucceeded", 0.5, LAMBDA), ("TaskStateExited", 0.01, {"name": "Charge"}),
        ("ExecutionSucceeded", 0.01, {}),
    ]  # fmt: skip
    for event_type, gap, details in steps:
        offsets.append(offsets[-1] + gap)
        h.add(event_type, **details)
    return Template("redriven", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])
