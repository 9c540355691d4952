"""How the exporter spends its history calls, seen on a virtual clock against the in-process
simulator: one call reads a Wait's end and what follows it, and a state whose past visits all
took a while is not polled in its first minutes when the budget is short."""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import pytest

from bench.freshness import EPOCH, VirtualRun
from simulator.stepfunctions import DirectClient, SimExecution
from tests.workloads import waiter, waiter_definition


class RecordingClient(DirectClient):
    """Notes every history call: (wall time, execution ARN, events not seen by earlier calls)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[tuple[float, str, int]] = []
        self._newest: dict[str, int] = {}

    async def get_execution_history(self, **params: Any) -> dict[str, Any]:
        result = await super().get_execution_history(**params)
        arn = params["executionArn"]
        newest = max((event["id"] for event in result["events"]), default=0)
        self.calls.append((self.sim.clock(), arn, max(0, newest - self._newest.get(arn, 0))))
        self._newest[arn] = max(newest, self._newest.get(arn, 0))
        return result


def appearances(execution: SimExecution, event_type: str | None) -> list[float]:
    """Wall times at which the execution's events of `event_type` (or all) appear."""
    template = execution.template
    return [
        execution.start + offset
        for offset, event in zip(template.offsets, template.events, strict=True)
        if event_type is None or event["type"] == event_type
    ]


def start_waiters(virtual: VirtualRun, count: int, **shape: Any) -> list[SimExecution]:
    rng = random.Random(7)
    machine = virtual.sim.add_machine("waiter", waiter_definition(shape["wait_s"]))
    return [
        virtual.sim.start(machine, waiter(rng, **shape), f"e-{n}", start=EPOCH + 5 + 3 * n)
        for n in range(count)
    ]


def run(virtual: VirtualRun, seconds: float, scheduler: Any = None) -> tuple[RecordingClient, int]:
    """Runs the exporter; returns its history calls and how many events it exported."""
    client = RecordingClient(virtual.sim)
    exported = [0]

    def on_events(tracked: Any, times_ns: list[int]) -> None:
        exported[0] += len(times_ns)

    virtual.run(seconds, scheduler, on_events=on_events, client=client)
    return client, exported[0]


def test_one_poll_reads_a_waits_end_and_what_follows_it() -> None:
    virtual = VirtualRun()
    executions = start_waiters(virtual, 3, loops=3, wait_s=600, task_s=(20.0, 30.0))
    client, exported = run(virtual, 2400)
    assert exported == sum(len(e.template.events) for e in executions)  # all of it, once
    for execution in executions:
        calls = [(at, found) for at, arn, found in client.calls if arn == execution.arn]
        entered = appearances(execution, "WaitStateEntered")
        for began, ended in zip(entered, appearances(execution, "WaitStateExited"), strict=True):
            assert not [at for at, _ in calls if began + 5 < at < ended]  # nothing to read meanwhile
            first = next((at, found) for at, found in calls if at >= ended)
            # a second after the end: the Wait's exit, the Choice, and the next Task's entry,
            # schedule and start (10 ms apart; the last time, the execution's end) in that one call
            burst = sum(1 for at in appearances(execution, None) if ended <= at <= ended + 0.5)
            assert burst in (4, 6)
            assert first[0] - ended <= 1.5 and first[1] == burst, (first, ended)


def test_a_state_known_to_take_a_while_is_left_alone_early_when_the_budget_is_short() -> None:
    virtual = VirtualRun(
        {
            "api": {"quotas": {"GetExecutionHistory": {"bucket": 5, "refill_per_second": 0.4}}},
            "polling": {"min_interval_seconds": 1, "max_interval_seconds": 5},
        }
    )
    assert virtual.budget == 0.2  # the exporter's share: 10 executions cannot be polled every 5 s
    executions = start_waiters(virtual, 10, loops=8, wait_s=120, task_s=(300.0, 330.0))
    client, exported = run(virtual, 5400)
    assert exported == sum(len(e.template.events) for e in executions)
    trained = EPOCH + 1500  # by then, every execution has run Fetch at least twice: 20 visits seen
    early_polls = empty_polls = 0
    for execution in executions:
        calls = [(at, found) for at, arn, found in client.calls if arn == execution.arn and at > trained]
        for entered in appearances(execution, "TaskStateEntered"):
            # every visit takes 300 to 330 s and the model parks until the visit is worth
            # watching (well past 80% of that): no call in between finds nothing (one may read
            # the entry late, the budget being short)
            early_polls += sum(
                1 for at, found in calls if entered < at < entered + 0.8 * 300 - 1 and not found
            )
        empty = [at for at, found in calls if found == 0]
        # parked, then polled at the budget's pace: no back-off from one second again
        empty_polls += len(empty)
        assert all(b - a >= 5 for a, b in itertools.pairwise(empty))
    assert early_polls == 0
    assert empty_polls > 0  # the windows were polled, not only hit by luck


def test_a_bug_while_rescheduling_costs_one_delay_not_the_worker_nor_the_execution(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from exporter.schedule.scheduler import PollScheduler

    class Flaky(PollScheduler):
        """Fails the first rescheduling of every execution, as a bug would."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.failed: set[str] = set()

        def done(self, key: str, found_events: bool, *args: Any, **kwargs: Any) -> None:
            if key not in self.failed:
                self.failed.add(key)
                raise RuntimeError("scheduler bug")
            super().done(key, found_events, *args, **kwargs)

    virtual = VirtualRun({"polling": {"concurrency": 1}})  # one worker: had it died, nothing would move
    executions = start_waiters(virtual, 3, loops=2, wait_s=60, task_s=(10.0, 20.0))
    scheduler = Flaky(1, 30, virtual.loop.time)
    with caplog.at_level(logging.ERROR, logger="exporter.daemon"):
        _, exported = run(virtual, 600, scheduler)
    assert scheduler.failed == {e.arn for e in executions}
    assert exported == sum(len(e.template.events) for e in executions)  # all of it, once
    assert sum("rescheduling" in r.getMessage() for r in caplog.records) == len(executions)


@pytest.mark.parametrize("choose_when_a_call_is_free", [True, False])
def test_a_waits_end_is_read_at_the_next_free_call_however_many_paced_polls_wait(
    choose_when_a_call_is_free: bool,
) -> None:
    # 60 executions in a task nothing is known of, backing off at the budget's pace (one call a
    # second here), keep paced polls always due; three waiters' Waits end among them
    virtual = VirtualRun(
        {
            "api": {"quotas": {"GetExecutionHistory": {"bucket": 2, "refill_per_second": 2}}},
            "polling": {"concurrency": 8},
        }
    )
    assert virtual.budget == 1.0
    waiters = start_waiters(virtual, 3, loops=6, wait_s=120, task_s=(20.0, 30.0))
    rng = random.Random(3)
    machine = virtual.sim.add_machine("busy", waiter_definition(60))
    for n in range(60):
        virtual.sim.start(
            machine, waiter(rng, loops=1, wait_s=60, task_s=(5000.0, 6000.0)), f"b-{n}", start=EPOCH
        )
    if not choose_when_a_call_is_free:
        virtual.choose_at_free_call = False  # every due poll handed out at once, FIFO at the limiter
    client = RecordingClient(virtual.sim)
    virtual.run(1200, client=client)
    lags = []
    for execution in waiters:
        calls = [at for at, arn, _ in client.calls if arn == execution.arn]
        for ended in appearances(execution, "WaitStateExited"):
            if EPOCH + 300 < ended < EPOCH + 1100:
                lags.append(next(at for at in calls if at >= ended) - ended)
    assert len(lags) >= 9
    # a second after the end (SETTLE_SECONDS), on the dot: the free call before it was kept for
    # it rather than spent on a paced poll (without that, up to a second later: one call a second)
    if choose_when_a_call_is_free:
        assert max(lags) <= 1.05, lags
    else:  # behind up to eight paced polls queued at the rate limiter
        assert max(lags) > 3, lags
