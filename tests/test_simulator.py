"""The simulator speaks AWS's protocol and semantics to the exporter's real aiobotocore client."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import (
    AwsStepFunctions,
    InvalidToken,
    NotFound,
    Throttled,
    Transient,
    aws_step_functions,
)
from exporter.aws.tail import read_new_events, read_whole_history
from exporter.emit.health import HealthMetrics
from exporter.history.events import timestamp_ns
from simulator.stepfunctions import ACCOUNT, REGION, Simulator, SimulatorServer
from tests.workloads import waiter, waiter_definition


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Simulator, Clock, AwsStepFunctions]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    clock = Clock()
    sim = Simulator(clock=clock)
    with SimulatorServer(sim) as server:
        limiter = RateLimiter({op: (1e6, 1e6) for op in ("GetExecutionHistory", "ListExecutions", "DescribeExecution",
                                                          "ListStateMachines", "DescribeStateMachine", "ListTagsForResource")})  # fmt: skip
        async with aws_step_functions(
            "us-east-1", server.endpoint, limiter, HealthMetrics(CollectorRegistry()).target(ACCOUNT, REGION)
        ) as api:
            yield sim, clock, api


async def test_histories_grow_and_page_like_aws(setup: tuple[Simulator, Clock, AwsStepFunctions]) -> None:
    sim, clock, api = setup
    machine = sim.add_machine("loop", waiter_definition(30))
    template = waiter(random.Random(3), loops=40, wait_s=30, task_s=(1, 2))
    execution = sim.start(machine, template, "e1", start=clock.now)
    clock.now += 5  # a few events in
    visible = execution.visible(clock.now)
    assert 0 < visible < len(template.events)
    page = await api.history_page(
        execution.arn, reverse=True, max_results=3, next_token=None, include_data=True
    )
    assert [e["id"] for e in page.events] == [visible, visible - 1, visible - 2]
    assert timestamp_ns(page.events[0]["timestamp"]) / 1e9 == pytest.approx(execution.appear_time(visible))
    clock.now += 10_000  # all of it
    everything = await read_whole_history(api, execution.arn, include_data=False)
    assert [e["id"] for e in everything] == list(range(1, len(template.events) + 1))
    assert all("input" not in str(e.get("executionStartedEventDetails", {})) for e in everything)
    new = await read_new_events(
        api, execution.arn, after=len(template.events) - 5, page_size=100, include_data=True
    )
    assert [e["id"] for e in new] == list(range(len(template.events) - 4, len(template.events) + 1))
    listed, _ = await api.list_executions(machine.arn)
    assert [(e.arn, e.status) for e in listed] == [(execution.arn, "SUCCEEDED")]


async def test_errors_are_aws_errors(setup: tuple[Simulator, Clock, AwsStepFunctions]) -> None:
    sim, clock, api = setup
    machine = sim.add_machine("loop", waiter_definition(30))
    execution = sim.start(machine, waiter(random.Random(3), 40, 30, (1, 2)), "e1", start=clock.now)
    clock.now += 2000
    page = await api.history_page(
        execution.arn, reverse=False, max_results=10, next_token=None, include_data=True
    )
    clock.now += 25 * 3600
    with pytest.raises(InvalidToken):
        await api.history_page(
            execution.arn, reverse=False, max_results=10, next_token=page.next_token, include_data=True
        )
    sim.delete_execution(execution.arn)
    with pytest.raises(NotFound):
        await api.history_page(
            execution.arn, reverse=True, max_results=10, next_token=None, include_data=True
        )


async def test_quotas_and_faults(setup: tuple[Simulator, Clock, AwsStepFunctions]) -> None:
    sim, clock, api = setup
    machine = sim.add_machine("loop", waiter_definition(30))
    sim.buckets["ListExecutions"].tokens = 2
    sim.buckets["ListExecutions"].refill = 0.0001
    await api.list_executions(machine.arn)
    await api.list_executions(machine.arn)
    with pytest.raises(Throttled):
        await api.list_executions(machine.arn)
    assert sim.throttled["ListExecutions"] == 1
    sim.faults.server_error_rate = 1.0
    with pytest.raises(Transient):
        await api.list_state_machines()
    sim.faults.server_error_rate = 0
    sim.faults.reset_rate = 1.0
    with pytest.raises(Transient):
        await api.list_state_machines()
    sim.faults.reset_rate = 0
    sim.faults.throttle_until = clock.now + 60
    with pytest.raises(Throttled):
        await api.list_state_machines()
    clock.now += 61
    machines, _ = await api.list_state_machines()
    assert [m.name for m in machines] == ["loop"]
    await asyncio.sleep(0)


def test_filter_log_events_takes_a_json_equality_pattern_and_refuses_others() -> None:
    from simulator.logs import Logging
    from simulator.stepfunctions import SimError

    clock = Clock()
    sim = Simulator(clock=clock)
    machine = sim.add_machine("m", waiter_definition(1), "EXPRESS", logging=Logging("/g"))
    runs = [
        sim.start(machine, waiter(random.Random(n), 1, 1, (0.5, 1.0)), f"e-{n}", start=clock.now)
        for n in range(3)
    ]
    clock.now += 60
    wanted = runs[1].arn
    answer = sim.call(
        "FilterLogEvents", {"logGroupName": "/g", "filterPattern": f'{{ $.execution_arn = "{wanted}" }}'}
    )
    assert isinstance(answer, dict) and answer["events"]
    assert all(json.loads(e["message"])["execution_arn"] == wanted for e in answer["events"])
    assert len(answer["events"]) == len(runs[1].history())
    with pytest.raises(SimError, match="Invalid filter pattern"):
        sim.call("FilterLogEvents", {"logGroupName": "/g", "filterPattern": "ERROR"})


def test_log_event_ids_are_56_digit_strings_as_aws_writes_them() -> None:
    """What the exporter's answer reading must handle at speed (a JSON reader that takes long
    digit runs for big integers would send every answer to the slow path)."""
    from simulator.logs import Logging

    clock = Clock()
    sim = Simulator(clock=clock)
    machine = sim.add_machine("m", waiter_definition(1), "EXPRESS", logging=Logging("/g"))
    for n in range(3):
        sim.start(machine, waiter(random.Random(n), 1, 1, (0.5, 1.0)), f"e-{n}", start=clock.now)
    clock.now += 60
    answer = sim.call("FilterLogEvents", {"logGroupName": "/g"})
    assert isinstance(answer, dict)
    ids = [e["eventId"] for e in answer["events"]]
    assert len(ids) > 3 and len(set(ids)) == len(ids)
    assert all(isinstance(i, str) and len(i) == 56 and i.isdigit() for i in ids)
