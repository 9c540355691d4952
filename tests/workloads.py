"""Execution templates from the recordings: the sample workflows as moto ran them and the AWS
histories of the corpus (the synthetic ones are in `simulator.workloads`)."""

from __future__ import annotations

import json

from simulator.stepfunctions import Template
from simulator.workloads import LAMBDA, burster, from_events, redriven, waiter, waiter_definition
from tests.corpus import recorded_histories
from tests.recording import FIXTURES

__all__ = [
    "LAMBDA",
    "aws_templates",
    "burster",
    "from_events",
    "moto_templates",
    "redriven",
    "waiter",
    "waiter_definition",
]


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
