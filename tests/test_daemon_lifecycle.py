"""The exporter's own loop on a virtual clock: shutdown with polls under way, each kind of failed
poll and what it logs, configuration reaching the spans, what a listing starts or does not
start, X-Ray trace joining, and discovery's pace and its failures."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry

from bench.freshness import EPOCH, SyncStore, VirtualRun
from exporter.history.ids import parse_xray_header
from simulator.builder import History
from simulator.stepfunctions import DirectClient, SimExecution, Simulator, Template, trace_header
from tests.test_daemon_virtual import Collector, settings
from tests.truth import TARGET, span_ids, truth, workflow_counts
from tests.workloads import waiter, waiter_definition


def loops(sim: Simulator, count: int = 4, start: float = EPOCH + 1) -> list[SimExecution]:
    rng = random.Random(9)
    machine = sim.add_machine("loops", waiter_definition(2))
    return [
        sim.start(machine, waiter(rng, loops=2, wait_s=2, task_s=(0.5, 1.5)), f"l-{n}", start=start + n)
        for n in range(count)
    ]


class Scripted(DirectClient):
    """The simulator, with scripted trouble on history reads: `slow[arn]` seconds of delay after
    `slow_after`, and `fail[arn]` exceptions raised, one per call, first."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self.slow: dict[str, float] = {}
        self.slow_after = float("inf")
        self.fail: dict[str, list[BaseException]] = {}
        self.history_calls: dict[str, int] = {}

    async def get_execution_history(self, **params: Any) -> dict[str, Any]:
        arn = params["executionArn"]
        self.history_calls[arn] = self.history_calls.get(arn, 0) + 1
        if self.fail.get(arn):
            raise self.fail[arn].pop(0)
        if arn in self.slow and self.sim.clock() >= self.slow_after:
            await asyncio.sleep(self.slow[arn])
        return await super().get_execution_history(**params)


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "scripted"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetExecutionHistory",
    )


# ---------------------------------------------------------------- shutdown


def test_shutdown_lets_a_poll_under_way_finish_within_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(settings(shutdown={"grace_period_seconds": 20}))
    executions = loops(virtual.sim, 1)
    client = Scripted(virtual.sim)
    client.slow = {executions[0].arn: 6.0}
    client.slow_after = EPOCH + 2  # a poll that starts after 4 s takes 6 s: under way at the stop (5 s)
    sink, store = Collector(), SyncStore(":memory:")
    caplog.set_level(logging.INFO)
    exporter = virtual.run(5, client=client, sink=sink, store=store)
    assert "stopping: no new polls; finishing the ones under way" in caplog.text
    assert "did not finish" not in caplog.text
    assert 0.5 < exporter.seconds_since_stop() < 20  # the run waited for the slow poll, within the grace
    cursor = store.get(executions[0].arn)
    assert cursor is not None and cursor.event_id >= 2  # and checkpointed what it read
    assert {s.context.span_id for s in sink.spans} <= span_ids(executions)


def test_a_poll_that_outlasts_the_grace_period_is_given_up_and_read_again_next_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(settings(shutdown={"grace_period_seconds": 2}))
    executions = loops(virtual.sim, 1)
    client = Scripted(virtual.sim)
    client.slow = {executions[0].arn: 60.0}
    client.slow_after = EPOCH + 2
    store = SyncStore(":memory:")
    caplog.set_level(logging.INFO)
    exporter = virtual.run(5, client=client, sink=Collector(), store=store)
    assert "1 polls did not finish within 2s; their events are read again next time" in caplog.text
    assert 2.0 <= exporter.seconds_since_stop() < 3.0
    before = store.get(executions[0].arn)
    assert before is None or not before.finished


# ---------------------------------------------------------------- failed polls


@pytest.mark.parametrize(
    ("error", "level", "text"),
    [
        (client_error("ThrottlingException"), logging.DEBUG, "poll failed: GetExecutionHistory: ThrottlingException"),
        (client_error("AccessDeniedException"), logging.ERROR, "poll failed: GetExecutionHistory: AccessDeniedException"),
        (client_error("InternalFailure", 500), logging.WARNING, "poll failed: GetExecutionHistory: InternalFailure"),
        (OSError("connection reset"), logging.WARNING, "poll failed: GetExecutionHistory: OSError: connection reset"),
    ],
    ids=["throttled", "denied", "server-error", "network"],
)  # fmt: skip
def test_a_failed_poll_is_logged_at_its_level_and_retried_until_everything_is_exported(
    error: BaseException, level: int, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    virtual = VirtualRun(settings())
    executions = loops(virtual.sim, 3)
    client = Scripted(virtual.sim)
    client.fail = {executions[1].arn: [error, error]}
    sink, registry = Collector(), CollectorRegistry()
    caplog.set_level(logging.DEBUG, logger="exporter.daemon")
    exporter = virtual.run(90, client=client, sink=sink, registry=registry)
    records = [r for r in caplog.records if text in r.getMessage()]
    assert len(records) == 2 and {r.levelno for r in records} == {level}
    assert all(getattr(r, "execution_arn", None) == executions[1].arn for r in records)
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)
    assert workflow_counts(registry) == truth(executions)
    assert not exporter.tracked and not exporter.quarantined


def test_a_bug_past_the_api_is_logged_with_its_traceback_and_the_poll_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Buggy(Collector):
        def __init__(self) -> None:
            super().__init__()
            self.bugs = 2

        async def export(self, spans: Any) -> None:
            if self.bugs:
                self.bugs -= 1
                raise RuntimeError("a bug in the sink")
            await super().export(spans)

    virtual = VirtualRun(settings())
    executions = loops(virtual.sim, 2)
    sink, registry = Buggy(), CollectorRegistry()
    caplog.set_level(logging.ERROR)
    exporter = virtual.run(90, sink=sink, registry=registry)
    records = [r for r in caplog.records if r.getMessage() == "poll failed unexpectedly"]
    assert len(records) == 2 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in records)
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)
    assert workflow_counts(registry) == truth(executions)
    assert not exporter.tracked


def test_an_execution_that_no_longer_exists_is_dropped_with_a_tombstone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(settings())
    executions = loops(virtual.sim, 2)
    client = Scripted(virtual.sim)
    gone = executions[0]
    virtual.loop.call_later(5, lambda: virtual.sim.delete_execution(gone.arn))
    store = SyncStore(":memory:")
    caplog.set_level(logging.WARNING)
    exporter = virtual.run(60, client=client, sink=Collector(), store=store)
    assert "execution no longer exists; no longer polled" in caplog.text
    assert gone.arn not in exporter.tracked
    row = store._execute("SELECT gone FROM executions WHERE arn = ?", (gone.arn,)).fetchone()
    assert row == (1,)  # kept as a tombstone
    assert (
        store.get(executions[1].arn) == store.get(executions[1].arn) and store.get(executions[1].arn).finished
    )  # type: ignore[union-attr]


# ---------------------------------------------------------------- configuration reaches the spans


def secretive() -> Template:
    h = History()
    h.add("ExecutionStarted", prev=0, input='{"card": "4111", "order": 7}')
    h.add("PassStateEntered", name="Check", input='{"card": "4111"}')
    h.add("PassStateExited", name="Check", output='{"ok": true}')
    h.add("ExecutionFailed", error="Declined", cause="card 4111 declined")
    return Template(
        "secretive",
        [0.0, 0.1, 0.2, 0.3],
        [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events],
    )


@pytest.mark.parametrize(
    ("data", "otlp", "check"),
    [
        ({}, {}, lambda root: "sfn.execution.input" not in root.attributes
         and "card 4111 declined" in str(root.status.description)),
        ({"include_execution_data": True, "redact_paths": ["$.card"]}, {},
         lambda root: root.attributes["sfn.execution.input"] == '{"card":"[REDACTED]","order":7}'),
        ({"include_execution_data": True, "max_bytes": 5}, {},
         lambda root: root.attributes["sfn.execution.input"] == '{"car' and root.attributes["sfn.execution.input.truncated"]),
        ({"include_causes": False}, {}, lambda root: "4111" not in str(root.status.description) and root.events == ()),
        ({"execution_name": "hash"}, {}, lambda root: len(str(root.attributes["sfn.execution.name"])) == 16),
        ({"execution_name": "drop"}, {}, lambda root: "sfn.execution.name" not in root.attributes),
    ],
    ids=["defaults", "redacted", "cut", "no-causes", "hashed-name", "dropped-name"],
)  # fmt: skip
def test_data_settings_reach_the_exported_spans(
    data: dict[str, Any], otlp: dict[str, Any], check: Any
) -> None:
    virtual = VirtualRun({**settings(), "data": data, "otlp": otlp})
    machine = virtual.sim.add_machine("pay", {"StartAt": "Check", "States": {}})
    virtual.sim.start(machine, secretive(), "p-1", start=EPOCH + 1)
    sink = Collector()
    virtual.run(30, sink=sink)
    root = next(s for s in sink.spans if s.parent is None)
    assert check(root), dict(root.attributes)


def test_legacy_status_marks_successes_ok() -> None:
    for legacy, wanted in ((False, "UNSET"), (True, "OK")):
        virtual = VirtualRun({**settings(), "otlp": {"legacy_status": legacy}})
        executions = loops(virtual.sim, 1)
        sink = Collector()
        virtual.run(60, sink=sink)
        root = next(s for s in sink.spans if s.parent is None)
        assert root.status.status_code.name == wanted
        assert {s.context.span_id for s in sink.spans} == span_ids(executions)


def test_an_execution_of_a_traced_state_machine_joins_its_x_ray_trace() -> None:
    virtual = VirtualRun(settings())
    machine = virtual.sim.add_machine("traced", waiter_definition(2))
    machine.tracing = True
    execution = virtual.sim.start(machine, waiter(random.Random(1), 1, 2, (0.5, 1.0)), "t-1", start=EPOCH + 1)
    sink = Collector()
    virtual.run(40, sink=sink)
    joined = parse_xray_header(trace_header(execution.arn))
    assert joined is not None
    trace_id, parent = joined
    assert sink.spans and {s.context.trace_id for s in sink.spans} == {trace_id}
    root = next(s for s in sink.spans if s.attributes.get("sfn.execution.arn") == execution.arn)
    assert root.parent is not None and root.parent.span_id == parent
    assert virtual.sim.calls["DescribeExecution"] == 1  # once, for the header


# ---------------------------------------------------------------- what a listing starts


def test_a_listing_tracks_what_is_new_or_redriven_and_leaves_what_was_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from simulator.workloads import redriven

    virtual = VirtualRun(settings())
    sim = virtual.sim
    (done,) = loops(sim, 1, start=EPOCH - 100)  # long finished
    more = sim.add_machine("more", waiter_definition(2))
    again = sim.start(more, waiter(random.Random(4), 2, 2, (0.5, 1.5)), "m-1", start=EPOCH + 1)
    machine = sim.add_machine("redrives", {"StartAt": "Charge", "States": {}})
    redrive = sim.start(machine, redriven(fail_at_s=0.5, redrive_after_s=1.0), "r-1", start=EPOCH - 30)
    store = SyncStore(":memory:")
    store.save_now(done.arn, len(done.history()), True)  # exported to its end by an earlier run
    store.save_now(redrive.arn, 5, True, 0)  # exported to its failure, before the redrive
    client = Scripted(sim)
    sink, registry = Collector(), CollectorRegistry()
    exporter = virtual.run(90, client=client, sink=sink, store=store, registry=registry)
    assert done.arn not in client.history_calls  # finished and listed again: not read
    assert {s.context.span_id for s in sink.spans} >= span_ids([again])
    cursor = store.get(redrive.arn)
    assert (
        cursor is not None
        and cursor.finished
        and cursor.redrives == 1
        and cursor.event_id == len(redrive.history())
    )
    # the redrive's events after the cursor were exported, counted once
    assert (
        registry.get_sample_value("sfn_executions_redriven_total", {**TARGET, "state_machine": "redrives"})
        == 1
    )
    assert (
        registry.get_sample_value("sfn_executions_started_total", {**TARGET, "state_machine": "redrives"})
        is None
    )
    assert not exporter.tracked


# ---------------------------------------------------------------- discovery's pace and failures


def test_state_machines_are_listed_at_their_interval_and_new_ones_found(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(settings())  # state machines every 5 s, executions every 1 s
    loops(virtual.sim, 1)
    late: list[SimExecution] = []

    def deploy() -> None:
        machine = virtual.sim.add_machine("late", waiter_definition(2))
        late.append(virtual.sim.start(machine, waiter(random.Random(2), 1, 2, (0.5, 1.0)), "x-1"))

    virtual.loop.call_later(20, deploy)
    sink = Collector()
    caplog.set_level(logging.INFO)
    virtual.run(60, sink=sink)
    listings = virtual.sim.calls["ListStateMachines"]
    assert 60 / 5 - 1 <= listings <= 60 / 5 + 1
    assert "watching state machine late" in caplog.text
    assert {s.context.span_id for s in sink.spans} >= span_ids(late)


def test_a_discovery_pass_that_fails_is_logged_and_the_next_one_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from exporter.checkpoint import CheckpointError

    class Failing(SyncStore):
        """A checkpoint whose watermark writes fail twice, then whose reads raise a bug twice."""

        def __init__(self) -> None:
            super().__init__(":memory:")
            self.write_failures, self.bugs = 2, 2

        def set_watermark(self, state_machine_arn: str, listed_until: float) -> None:
            if self.write_failures:
                self.write_failures -= 1
                raise CheckpointError("checkpoint ':memory:': disk full")
            super().set_watermark(state_machine_arn, listed_until)

        def watermark(self, state_machine_arn: str) -> float | None:
            if not self.write_failures and self.bugs:
                self.bugs -= 1
                raise KeyError("a bug")
            return super().watermark(state_machine_arn)

    virtual = VirtualRun(settings())
    executions = loops(virtual.sim, 2)
    sink = Collector()
    caplog.set_level(logging.WARNING)
    virtual.run(60, sink=sink, store=Failing())
    full = [
        r
        for r in caplog.records
        if r.getMessage() == "discovery pass failed: checkpoint ':memory:': disk full"
    ]
    assert len(full) == 2 and {r.levelno for r in full} == {logging.WARNING}
    bugs = [
        r for r in caplog.records if r.getMessage() == "discovery pass failed; trying again next interval"
    ]
    assert len(bugs) == 2 and all(r.exc_info and r.exc_info[0] is KeyError for r in bugs)
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)


# ---------------------------------------------------------------- what each export records


def test_each_export_records_its_lag_its_checkpoint_write_and_what_states_took() -> None:
    virtual = VirtualRun(settings())
    executions = loops(virtual.sim, 3)
    seen: list[tuple[str, int, float]] = []
    spans_seen: list[tuple[str, int]] = []

    def on_events(tracked: Any, times_ns: list[int]) -> None:
        now = virtual.wall()
        seen.extend((tracked.arn, t, now - t / 1e9) for t in times_ns)

    def on_spans(tracked: Any, spans: list[Any]) -> None:
        spans_seen.append((tracked.arn, len(spans)))

    store, registry = SyncStore(":memory:"), CollectorRegistry()
    saves = [0]
    save = store.save_now

    def counted(*args: Any) -> None:
        saves[0] += 1
        save(*args)

    store.save_now = counted  # type: ignore[method-assign]
    exporter = virtual.run(
        90, sink=Collector(), store=store, registry=registry, on_events=on_events, on_spans=on_spans
    )
    value = registry.get_sample_value
    events = sum(len(e.history()) for e in executions)
    assert len(seen) == events and {arn for arn, _, _ in seen} == {e.arn for e in executions}
    # the lag histogram holds each event's time from its timestamp to its export, in seconds
    assert value("sfn_exporter_event_lag_seconds_count") == events
    assert value("sfn_exporter_event_lag_seconds_sum") == pytest.approx(
        sum(lag for _, _, lag in seen), abs=1e-3
    )
    assert all(0 <= lag < 10 for _, _, lag in seen)
    assert value("sfn_exporter_checkpoint_writes_total", {"outcome": "ok"}) == saves[0] > 0
    assert value("sfn_exporter_events_processed_total") == events
    assert sum(n for _, n in spans_seen) == len(span_ids(executions))
    assert {arn for arn, _ in spans_seen} == {e.arn for e in executions}
    # what states took is learnt, Wait states left out (their length is in the definition)
    fetch = exporter.durations._samples[("loops", "Fetch")]
    assert fetch and all(0.5 <= seconds <= 1.6 for seconds in fetch)
    assert ("loops", "Sleep") not in exporter.durations._samples
    assert ("loops", "Check") in exporter.durations._samples


def test_a_scheduler_that_fails_after_a_poll_is_logged_and_the_execution_polled_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from exporter.schedule.scheduler import PollScheduler

    class Refusing(PollScheduler):
        """Refuses to take back a poll twice, then once more for its retry."""

        refusals = 3

        def done(self, key: str, found_events: bool, not_before: float | None = None, failed: bool = False,
                 steady: bool = False) -> None:  # fmt: skip
            if self.refusals:
                self.refusals -= 1
                raise RuntimeError("a bug in the scheduler")
            super().done(key, found_events, not_before, failed, steady)

    virtual = VirtualRun(settings())
    executions = loops(virtual.sim, 1)
    scheduler = Refusing(0.5, 2, virtual.loop.time)
    sink = Collector()
    caplog.set_level(logging.ERROR)
    exporter = virtual.run(60, scheduler, sink=sink)
    arn = executions[0].arn
    assert f"rescheduling {arn} failed; it is polled again after a back-off" in caplog.text
    assert f"the scheduler refused {arn}; it is no longer polled" in caplog.text
    assert {s.context.span_id for s in sink.spans} <= span_ids(executions)
    assert exporter.tracked or {s.context.span_id for s in sink.spans} == span_ids(executions)


def test_the_running_gauge_counts_what_is_tracked_by_state_machine() -> None:
    virtual = VirtualRun(settings())
    loops(virtual.sim, 3)
    other = virtual.sim.add_machine("other", waiter_definition(2))
    virtual.sim.start(other, waiter(random.Random(6), 4, 2, (0.5, 1.0)), "o-1", start=EPOCH + 1)
    registry = CollectorRegistry()
    seen: list[tuple[float | None, float | None, int, int]] = []

    def sample() -> None:
        assert virtual.exporter is not None
        tracked = virtual.exporter.tracked.values()
        seen.append((
            registry.get_sample_value("sfn_running_executions", {**TARGET, "state_machine": "loops"}),
            registry.get_sample_value("sfn_running_executions", {**TARGET, "state_machine": "other"}),
            sum(1 for t in tracked if t.identity.state_machine_name == "loops"),
            sum(1 for t in tracked if t.identity.state_machine_name == "other"),
        ))  # fmt: skip

    virtual.loop.call_later(6, sample)
    virtual.run(90, sink=Collector(), registry=registry)
    (loops_gauge, other_gauge, loops_tracked, other_tracked) = seen[0]
    assert (loops_gauge, other_gauge) == (loops_tracked, other_tracked) == (3, 1)
    assert registry.get_sample_value("sfn_running_executions", {**TARGET, "state_machine": "loops"}) == 0


def test_finished_executions_are_forgotten_after_the_retention_period() -> None:
    virtual = VirtualRun({**settings(), "checkpoint": {"path": ":memory:", "retention_hours": 1}})
    loops(virtual.sim, 1)
    store = SyncStore(":memory:", clock=virtual.wall)
    store.save_now("arn:aws:states:us-east-1:123456789012:execution:loops:old", 9, True)
    new = "arn:aws:states:us-east-1:123456789012:execution:loops:new"
    virtual.loop.call_later(200, lambda: store.save_now(new, 9, True))
    virtual.run(3700, sink=Collector(), store=store)
    assert store.get("arn:aws:states:us-east-1:123456789012:execution:loops:old") is None  # over an hour old
    assert store.get(new) is not None  # 58 minutes old: kept
