"""Execution templates for the simulator that need no recording: workflows that sit in long
Wait and Task states, burst into Map fan-outs, are redriven, or are bulk for throughput runs."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Any

from simulator.builder import History
from simulator.stepfunctions import Template

LAMBDA: dict[str, Any] = {"resource": "invoke", "resourceType": "lambda"}


def from_events(name: str, events: list[dict[str, Any]], offsets: list[float]) -> Template:
    clean = [{k: v for k, v in event.items() if k != "timestamp"} for event in events]
    return Template(name, offsets, clean)


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


def bulk_template(events: int, spacing_s: float = 0.0) -> Template:
    """A history of `events` events (Lambda tasks back to back), one every `spacing_s` (0: all
    there at once)."""
    lambda_: dict[str, Any] = {"resource": "invoke", "resourceType": "lambda"}
    h = History()
    h.add("ExecutionStarted", prev=0, input='{"order": 1}')
    while len(h.events) < events - 1:
        h.add("TaskStateEntered", name="Work", input='{"n": 1}')
        h.add("TaskScheduled", parameters='{"FunctionName": "work", "Payload": {"n": 1}}', **lambda_)
        h.add("TaskStarted", **lambda_)
        h.add("TaskSucceeded", output='{"StatusCode": 200, "Payload": {"ok": true}}', **lambda_)
        h.add("TaskStateExited", name="Work", output='{"ok": true}')
    del h.events[events - 1 :]
    h.add("ExecutionSucceeded", output="{}")
    offsets = [i * spacing_s for i in range(events)]
    return Template("bulk", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])


def express_order(rng: random.Random, fail_rate: float = 0.05) -> Template:
    """A short EXPRESS workflow (an API backend): validate, call a Lambda function, route; done in
    one to three seconds, and failing (the task, then the execution) at `fail_rate`."""
    h = History()
    offsets = [0.0]
    now = 0.0

    def add(event_type: str, gap: float = 0.005, **details: Any) -> None:
        nonlocal now
        now += gap
        offsets.append(now)
        h.add(event_type, **details)

    h.add("ExecutionStarted", prev=0, input="{}")
    add("PassStateEntered", name="Validate")
    add("PassStateExited", name="Validate")
    add("TaskStateEntered", name="Charge")
    add("TaskScheduled", **LAMBDA)
    add("TaskStarted", **LAMBDA)
    if rng.random() < fail_rate:
        add("TaskFailed", gap=rng.uniform(0.5, 2.5), error="Card.Declined", **LAMBDA)
        add("ExecutionFailed", error="Card.Declined")
    else:
        add("TaskSucceeded", gap=rng.uniform(0.5, 2.5), output="{}", **LAMBDA)
        add("TaskStateExited", name="Charge")
        add("ChoiceStateEntered", name="Route")
        add("ChoiceStateExited", name="Route")
        add("ExecutionSucceeded", output="{}")
    return Template(
        "express-order", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events]
    )


MAP_RUN_ARN = "{MAP_RUN_ARN}"  # the parent's MapRunStarted names its map run; the simulator fills it in


@dataclass
class DistributedMap:
    """A parent execution running one Distributed Map state, and its map run's children: each
    child's template and the seconds after the parent's start at which it starts."""

    parent: Template
    children: list[Template]
    child_starts: list[float]
    label: str
    max_concurrency: int
    tolerated_failure_percentage: float
    tolerated_failure_count: int

    @property
    def failed_children(self) -> int:
        return sum(1 for child in self.children if child.events[-1]["type"] != "ExecutionSucceeded")


def map_child(rng: random.Random, fail_rate: float, seconds: tuple[float, float]) -> Template:
    """A Distributed Map's child workflow: one item processed by a Lambda task that is retried
    once in a while and fails (the task, then the child) at `fail_rate`."""
    h = History()
    offsets = [0.0]
    now = 0.0

    def add(event_type: str, gap: float = 0.01, **details: Any) -> None:
        nonlocal now
        now += gap
        offsets.append(now)
        h.add(event_type, **details)

    h.add("ExecutionStarted", prev=0, input='{"item": 1}')
    add("TaskStateEntered", name="Process")
    work = rng.uniform(*seconds)
    if rng.random() < 0.1:  # a retried attempt
        add("TaskScheduled", **LAMBDA)
        add("TaskStarted", **LAMBDA)
        add("TaskFailed", gap=work / 3, error="Lambda.TooManyRequestsException", **LAMBDA)
    add("TaskScheduled", **LAMBDA)
    add("TaskStarted", **LAMBDA)
    if rng.random() < fail_rate:
        add("TaskFailed", gap=work, error="Item.Invalid", cause="bad item", **LAMBDA)
        add("ExecutionFailed", error="Item.Invalid", cause="bad item")
    else:
        add("TaskSucceeded", gap=work, output="{}", **LAMBDA)
        add("TaskStateExited", name="Process", output="{}")
        add("ExecutionSucceeded", output="{}")
    return Template(
        "map-child", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events]
    )


def distributed_map(
    rng: random.Random, children: int, fail_rate: float = 0.05, max_concurrency: int = 1000,
    seconds: tuple[float, float] = (1.0, 5.0), tolerated_failure_percentage: float = 10.0,
    label: str = "Batch",
) -> DistributedMap:  # fmt: skip
    """A parent that runs `children` items through a Distributed Map, at most `max_concurrency`
    children at once; the map run fails when more than `tolerated_failure_percentage` of them
    failed (decided once all have ended)."""
    templates = [map_child(rng, fail_rate, seconds) for _ in range(children)]
    running: list[float] = []  # end offsets of the children running, a heap
    starts: list[float] = []
    begin = 0.4
    for template in templates:
        at = begin if len(running) < max_concurrency else heapq.heappop(running)
        starts.append(at + 0.001 * (len(starts) % 10))
        heapq.heappush(running, starts[-1] + template.offsets[-1])
    end = max((s + t.offsets[-1] for s, t in zip(starts, templates, strict=True)), default=begin) + 0.2
    failed = sum(1 for t in templates if t.events[-1]["type"] != "ExecutionSucceeded")
    h = History()
    h.add("ExecutionStarted", prev=0, input='{"bucket": "items"}')
    h.add("MapStateEntered", name=label, input="{}")
    h.add("MapStateStarted", length=0)
    h.add("MapRunStarted", mapRunArn=MAP_RUN_ARN)
    offsets = [0.0, 0.1, 0.2, 0.3]
    if children and failed * 100 > tolerated_failure_percentage * children:
        h.add("MapRunFailed", error="States.ExceedToleratedFailureThreshold", cause="too many items failed")
        h.add("MapStateFailed")
        h.add(
            "ExecutionFailed", error="States.ExceedToleratedFailureThreshold", cause="too many items failed"
        )
        offsets += [end, end + 0.01, end + 0.02]
    else:
        h.add("MapRunSucceeded")
        h.add("MapStateSucceeded")
        h.add("MapStateExited", name=label, output="[]")
        h.add("ExecutionSucceeded", output="{}")
        offsets += [end, end + 0.01, end + 0.02, end + 0.03]
    parent = Template(
        "map-parent", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events]
    )
    return DistributedMap(parent, templates, starts, label, max_concurrency, tolerated_failure_percentage, 0)
