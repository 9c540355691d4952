"""The log source on a virtual clock against the in-process simulator: EXPRESS executions read
from CloudWatch Logs that deliver late, out of order, lose messages and carry messages that are
not Step Functions', and a restart in the middle; in seconds, not minutes."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry

from bench.freshness import EPOCH, SyncStore, VirtualRun
from exporter.shards import Layout, owner
from simulator.logs import Delivery, Logging, logged
from simulator.stepfunctions import SimExecution, Simulator
from tests.test_daemon_virtual import Collector, assert_settled, no_bug_is_logged  # noqa: F401 (a fixture)
from tests.truth import TARGET, counted_by_all, span_ids, truth, workflow_counts
from tests.workloads import moto_templates, waiter, waiter_definition

GROUP = "/aws/vendedlogs/states/orders"


def settings(**logs: Any) -> dict[str, Any]:
    return {"discovery": {"executions_interval_seconds": 1, "state_machines_interval_seconds": 5,
                          "lookback_seconds": 3600},
            "logs": {"interval_seconds": 1, "overlap_seconds": 4, "reorder_window_seconds": 5, **logs},
            "api": {"quotas": {"FilterLogEvents": {"bucket": 50, "refill_per_second": 50}}}}  # fmt: skip


def express(sim: Simulator, count: int = 10, level: str = "ALL") -> list[SimExecution]:
    """EXPRESS Wait loops and the moto recordings, logged to one group."""
    rng = random.Random(3)
    orders = sim.add_machine("orders", waiter_definition(2), "EXPRESS", logging=Logging(GROUP, level))
    recorded = sim.add_machine(
        "recorded", {"StartAt": "X", "States": {}}, "EXPRESS", logging=Logging(GROUP, level)
    )
    executions = [
        sim.start(orders, waiter(rng, loops=2, wait_s=2, task_s=(0.5, 2.0)), f"o-{n}", start=EPOCH + 2 + n)
        for n in range(count)
    ]  # fmt: skip
    executions += [
        sim.start(recorded, t, t.name, start=EPOCH + 3 + i) for i, t in enumerate(moto_templates())
    ]
    return executions


def test_express_executions_come_whole_and_once_through_late_reordered_messages() -> None:
    virtual = VirtualRun(settings())
    virtual.sim.logs.delivery = Delivery(delay_s=(0.1, 3.0), streams=4)
    executions = express(virtual.sim)
    sink, registry = Collector(), CollectorRegistry()
    exporter = virtual.run(120, sink=sink, registry=registry)
    exported = [span.context.span_id for span in sink.spans]
    assert len(exported) == len(set(exported)) and set(exported) == span_ids(executions)
    assert workflow_counts(registry) == truth(executions)
    assert_settled(exporter, registry)
    value = registry.get_sample_value
    assert value("sfn_exporter_log_messages_total", {"outcome": "accepted"}) == sum(
        len(e.history()) for e in executions
    )
    assert value("sfn_exporter_log_messages_total", {"outcome": "reread"}) > 0  # the overlap read them again
    # delivered more than logs.settle_seconds (2) late: going back over the overlap found them
    assert value("sfn_exporter_log_late_messages_total") > 0
    assert value("sfn_exporter_log_late_reads_total", {"outcome": "read"}) > 0
    assert value("sfn_exporter_events_processed_total") == sum(len(e.history()) for e in executions)
    assert value("sfn_exporter_log_groups", TARGET) == 1
    assert virtual.sim.calls["GetExecutionHistory"] == virtual.sim.calls["ListExecutions"] == 0
    for execution in executions:  # each one's cursor is at its end
        cursor = exporter.store.get(execution.arn)
        assert cursor is not None and cursor.finished and cursor.event_id == len(execution.history())


def test_the_executions_of_a_read_are_handed_to_the_sink_together() -> None:
    """Each hand-over waits for its request (the sink's linger and a round trip): one after
    another, a group's executions went out a few a second, far behind a busy group."""

    class Lingering(Collector):
        in_flight = most = 0

        async def export(self, spans: Any) -> None:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            try:
                await asyncio.sleep(0.5)  # the linger and a round trip to the backend
            finally:
                self.in_flight -= 1
            await super().export(spans)

    virtual = VirtualRun(settings())
    executions = express(virtual.sim, count=30)
    sink = Lingering()
    virtual.run(120, sink=sink)
    assert {span.context.span_id for span in sink.spans} == span_ids(executions)
    assert sink.most >= 10  # one a page, one after another, before


def test_a_groups_next_page_is_read_while_the_page_before_is_handed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog read page by page: each page's executions go to the sink while the next page
    is read (before, a read waited for each page's requests to the backend)."""
    import simulator.logs
    from simulator.stepfunctions import DirectLogsClient

    monkeypatch.setattr(simulator.logs, "MAX_LIMIT", 40)  # pages of 40 messages: a backlog of many
    exporting: list[tuple[float, float]] = []
    reads: list[float] = []

    class Slow(Collector):
        async def export(self, spans: Any) -> None:
            started = virtual.loop.time()
            await asyncio.sleep(0.5)  # the linger and a round trip to the backend
            exporting.append((started, virtual.loop.time()))
            await super().export(spans)

    class Reading(DirectLogsClient):
        async def filter_log_events(self, **params: Any) -> dict[str, Any]:
            await asyncio.sleep(0.1)  # a round trip to CloudWatch Logs
            answer = await super().filter_log_events(**params)
            reads.append(virtual.loop.time())  # when the page came
            return answer

    virtual = VirtualRun(settings(interval_seconds=30, settle_seconds=0))
    executions = express(virtual.sim, count=20)
    sink = Slow()
    virtual.run(120, sink=sink, logs_client=Reading(virtual.sim))
    assert {span.context.span_id for span in sink.spans} == span_ids(executions)
    during = [when for when in reads if any(start < when < end for start, end in exporting)]
    assert len(reads) > 10 and len(during) >= len(reads) // 2  # none, one page after another


def test_an_express_execution_whose_end_is_lost_is_closed_as_incomplete(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(settings(express_max_seconds=40))
    sim = virtual.sim
    sim.logs.delivery = Delivery(delay_s=(0.1, 0.5), streams=2)
    executions = express(sim, count=3)
    cut = executions[0]
    last = len(cut.history())
    group = sim.logs.groups[GROUP]
    group.events = [e for e in group.events if not (cut.arn in e.message and f'"id":"{last}"' in e.message)]
    sink, registry = Collector(), CollectorRegistry()
    caplog.set_level(logging.WARNING)
    exporter = virtual.run(150, sink=sink, registry=registry)
    assert_settled(exporter, registry)
    value = registry.get_sample_value
    assert (
        value(
            "sfn_history_anomalies_total", {**TARGET, "state_machine": "orders", "anomaly": "incomplete_log"}
        )
        == 1
    )
    assert (
        value("sfn_executions_finished_total", {**TARGET, "state_machine": "orders", "status": "UNKNOWN"})
        == 1
    )
    assert (
        value("sfn_executions_finished_total", {**TARGET, "state_machine": "orders", "status": "SUCCEEDED"})
        == 2
    )
    root = next(s for s in sink.spans if s.context.span_id in span_ids([cut]) and s.parent is None)
    assert root.attributes["sfn.outcome"] == "incomplete"
    assert root.status.status_code.name == "UNSET"
    assert [e.attributes["sfn.anomaly"] for e in root.events] == ["incomplete_log"]
    # it ended where its log ended: at the last event read, not when it was given up on
    assert root.end_time == round(cut.appear_time(last - 1) * 1e6) * 1000
    assert "no end of this EXPRESS execution in its log after 40s; closed as incomplete" in caplog.text
    # the others are whole
    others = executions[1:]
    assert {s.context.span_id for s in sink.spans} >= span_ids(others)


def test_messages_that_are_not_step_functions_ones_are_counted_named_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(settings())
    sim = virtual.sim
    executions = express(sim, count=4)
    foreign = (
        "arn:aws:states:us-east-1:123456789012:express:not-watched:x:00000000-0000-0000-0000-000000000000"
    )
    message = {"id": "1", "previous_event_id": "0", "event_timestamp": str(int((EPOCH + 5) * 1000)),
               "type": "ExecutionStarted", "details": {}, "execution_arn": foreign, "redrive_count": "0"}  # fmt: skip
    broken = {**message, "execution_arn": executions[0].arn, "id": "x7"}
    for when, text in [(EPOCH + 4, "START RequestId: 1 Version: $LATEST"), (EPOCH + 5, "[1, 2]"),
                       (EPOCH + 6, json.dumps(message)), (EPOCH + 7, json.dumps({"type": "TaskStarted"})),
                       (EPOCH + 8, json.dumps(broken))]:  # fmt: skip
        sim.logs.put(GROUP, when, text)
    sink, registry = Collector(), CollectorRegistry()
    caplog.set_level(logging.WARNING)
    exporter = virtual.run(90, sink=sink, registry=registry)
    value = registry.get_sample_value
    assert value("sfn_exporter_log_messages_total", {"outcome": "invalid"}) == 4
    assert value("sfn_exporter_log_messages_total", {"outcome": "ignored"}) == 1
    assert "not JSON: 'START RequestId: 1 Version: $LATEST'" in caplog.text
    assert "expected a JSON object, got list" in caplog.text
    assert "missing id, previous_event_id, event_timestamp, execution_arn" in caplog.text
    assert "id: expected a number as text, got 'x7'" in caplog.text
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping a log message")]
    assert len(skipped) == 4 and all(" in stream 'states/other/0000': " in m for m in skipped)  # each named
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)  # the others go on
    assert workflow_counts(registry) == truth(executions)
    assert_settled(exporter, registry)


def test_with_no_call_to_spare_each_message_is_read_once_and_late_reads_wait() -> None:
    # One FilterLogEvents call a second, one read a second: the main reads take every call.
    virtual = VirtualRun(
        {**settings(), "api": {"quotas": {"FilterLogEvents": {"bucket": 1, "refill_per_second": 1}}}}
    )
    virtual.sim.logs.delivery = Delivery(delay_s=(0.1, 1.5), streams=3)  # within the settle time
    executions = express(virtual.sim)
    sink, registry = Collector(), CollectorRegistry()
    virtual.run(120, sink=sink, registry=registry)
    assert {span.context.span_id for span in sink.spans} == span_ids(executions)
    assert workflow_counts(registry) == truth(executions)
    value = registry.get_sample_value
    # every read but the first (which has nothing to go back over) did not go back
    assert value("sfn_exporter_log_late_reads_total", {"outcome": "read"}) == 0
    assert (
        value("sfn_exporter_log_late_reads_total", {"outcome": "skipped"})
        == virtual.sim.calls["FilterLogEvents"] - 1
        > 30
    )
    assert value("sfn_exporter_log_messages_total", {"outcome": "reread"}) == 0


def test_a_restart_mid_execution_resumes_from_the_checkpoint_and_counts_each_event_once() -> None:
    # An overlap far shorter than an execution: only the read position kept in the checkpoint
    # (held back to the oldest open execution's first event) brings back what a restart needs.
    virtual = VirtualRun(settings(overlap_seconds=0.5))
    virtual.sim.logs.delivery = Delivery(delay_s=(0.05, 0.3), streams=3)
    executions = express(virtual.sim)
    store = SyncStore(":memory:")
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first = virtual.run(9, sink=Collector(), store=store, registry=first_registry, close=False)
    half_done = [arn for arn in first.tracked if (c := store.get(arn)) is not None and not c.finished]
    assert half_done  # stopped while some were half exported
    from simulator.stepfunctions import DirectLogsClient

    group_arn = f"arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}"
    saved = store.watermark("logs:" + group_arn)
    assert saved is not None

    class Recording(DirectLogsClient):
        ranges: ClassVar[list[tuple[int, int]]] = []

        async def filter_log_events(self, **params: Any) -> dict[str, Any]:
            self.ranges.append((params["startTime"], params["endTime"]))
            return await super().filter_log_events(**params)

    sink = Collector()
    second = virtual.run(
        150, sink=sink, store=store, registry=second_registry, logs_client=Recording(virtual.sim)
    )
    # the second process reads on from the checkpointed position, less the overlap (calls to spare)
    assert Recording.ranges[0][0] == round(saved * 1000) - 500
    combined = counted_by_all(first_registry, second_registry)
    assert combined == truth(executions)  # each event counted by one of the two processes
    assert not second.tracked
    resumed = {span.context.span_id for span in sink.spans}
    assert resumed and resumed <= span_ids(executions)
    assert second_registry.get_sample_value("sfn_exporter_log_messages_total", {"outcome": "late"}) > 0


def test_an_express_state_machine_logging_errors_only_counts_what_it_logs() -> None:
    """At level ERROR only failures are logged: an execution that logged nothing is not seen; one
    that failed counts with its status; one that caught a failure and succeeded is closed after
    the maximum duration with status UNKNOWN (its success is not logged). The holes the level
    leaves are no anomaly, and no duration is observed where the start is not logged."""
    virtual = VirtualRun(settings(reorder_window_seconds=30, express_max_seconds=60))
    executions = express(virtual.sim, count=3, level="ERROR")
    sink, registry = Collector(), CollectorRegistry()
    exporter = virtual.run(150, sink=sink, registry=registry)
    assert_settled(exporter, registry)
    seen = [e for e in executions if any(logged("ERROR", event["type"]) for event in e.history())]
    assert seen and len(seen) < len(executions)
    value = registry.get_sample_value
    statuses = {"ExecutionFailed": "FAILED", "ExecutionTimedOut": "TIMED_OUT", "ExecutionAborted": "ABORTED"}
    for machine in ("orders", "recorded"):
        mine = [e for e in seen if e.machine.name == machine]
        assert (value("sfn_executions_started_total", {**TARGET, "state_machine": machine}) or 0) == len(mine)
        for status in ("FAILED", "TIMED_OUT", "ABORTED", "UNKNOWN"):
            wanted = sum(1 for e in mine if statuses.get(e.history()[-1]["type"], "UNKNOWN") == status)
            assert (
                value("sfn_executions_finished_total", {**TARGET, "state_machine": machine, "status": status})
                or 0
            ) == wanted
    counted = {
        f.name: sum(x.value for x in f.samples if x.name.endswith(("_total", "_count")))
        for f in registry.collect()
    }
    assert counted["sfn_history_anomalies"] == 0
    assert counted["sfn_execution_duration_seconds"] == 0


def test_standard_executions_read_from_their_logs_take_what_the_log_lost_from_their_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """STANDARD state machines logging at ALL, read from their logs by choice (`logs.sources`):
    a hole the log leaves, and an end it never shows, are read from the history by the poll
    workers; every span once, every count true, and far fewer history calls than polling."""
    virtual = VirtualRun(settings(reorder_window_seconds=3, source="logs"))
    sim = virtual.sim
    sim.logs.delivery = Delivery(delay_s=(0.1, 1.0), streams=3, loss_rate=0.1)
    rng = random.Random(8)
    machine = sim.add_machine("std", waiter_definition(2), logging=Logging(GROUP))
    executions = [
        sim.start(machine, waiter(rng, loops=3, wait_s=2, task_s=(0.5, 2.0)), f"s-{n}", start=EPOCH + 2 + n)
        for n in range(12)
    ]  # fmt: skip
    assert sim.logs.groups[GROUP].lost >= 5
    sink, registry = Collector(), CollectorRegistry()
    caplog.set_level(logging.INFO)
    exporter = virtual.run(120, sink=sink, registry=registry)
    exported = [span.context.span_id for span in sink.spans]
    assert len(exported) == len(set(exported)) and set(exported) == span_ids(executions)
    assert workflow_counts(registry) == truth(executions)
    assert_settled(exporter, registry)
    assert "missing from the log; reading them from the history" in caplog.text
    events = sum(len(e.history()) for e in executions)
    assert 0 < sim.calls["GetExecutionHistory"] < events / 4


def test_a_standard_execution_whose_log_lost_its_end_is_read_from_its_history_once_listed_as_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing after the lost messages shows a hole: only discovery's listing says it ended."""
    virtual = VirtualRun(settings(source="logs"))
    sim = virtual.sim
    rng = random.Random(4)
    machine = sim.add_machine("std", waiter_definition(2), logging=Logging(GROUP))
    executions = [
        sim.start(machine, waiter(rng, loops=2, wait_s=2, task_s=(0.5, 1.0)), f"s-{n}", start=EPOCH + 2 + n)
        for n in range(3)
    ]  # fmt: skip
    cut = executions[1]
    tail_ids = {len(cut.history()) - 1, len(cut.history())}  # its last two events never reach the log
    group = sim.logs.groups[GROUP]
    group.events = [
        e for e in group.events if not (cut.arn in e.message and int(json.loads(e.message)["id"]) in tail_ids)
    ]
    from tests.test_daemon_lifecycle import Scripted

    client = Scripted(sim)
    sink, registry = Collector(), CollectorRegistry()
    caplog.set_level(logging.INFO)
    exporter = virtual.run(90, client=client, sink=sink, registry=registry)
    told = [
        r
        for r in caplog.records
        if r.getMessage() == "ended SUCCEEDED, but not in its log; reading its history"
    ]
    assert len(told) == 1 and getattr(told[0], "execution_arn", None) == cut.arn  # said once
    # only its history was read, once (its log gave the others whole, and it ended in one read)
    assert client.history_calls == {cut.arn: 1}
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)
    assert workflow_counts(registry) == truth(executions)
    assert_settled(exporter, registry)
    cursor = exporter.store.get(cut.arn)
    assert cursor is not None and cursor.finished and cursor.event_id == len(cut.history())


def test_a_log_group_that_cannot_be_read_is_logged_once_counted_and_read_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from simulator.stepfunctions import DirectLogsClient

    class Refusing(DirectLogsClient):
        def __init__(self, sim: Simulator) -> None:
            super().__init__(sim)
            self.refusals = 6

        async def filter_log_events(self, **params: Any) -> dict[str, Any]:
            if self.refusals:
                self.refusals -= 1
                from botocore.exceptions import ClientError

                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"},
                     "ResponseMetadata": {"HTTPStatusCode": 400}}, "FilterLogEvents",
                )  # fmt: skip
            return await super().filter_log_events(**params)

    virtual = VirtualRun(settings())
    executions = express(virtual.sim, count=3)
    sink, registry = Collector(), CollectorRegistry()
    caplog.set_level(logging.INFO)
    exporter = virtual.run(90, sink=sink, registry=registry, logs_client=Refusing(virtual.sim))
    refused = [
        r for r in caplog.records if r.getMessage().startswith("cannot read log group: FilterLogEvents")
    ]
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR  # once, not once a read
    assert getattr(refused[0], "log_group_arn", "").endswith(f"log-group:{GROUP}")
    assert "reading the log group again" in caplog.text
    value = registry.get_sample_value
    assert value("sfn_exporter_discovery_errors_total", {**TARGET, "operation": "FilterLogEvents"}) == 6
    assert (
        value(
            "sfn_exporter_api_calls_total",
            {**TARGET, "operation": "FilterLogEvents", "outcome": "client_error"},
        )
        == 6
    )
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)
    assert_settled(exporter, registry)


def test_the_checkpoint_keeps_a_log_groups_position_at_the_oldest_open_execution() -> None:
    virtual = VirtualRun(settings(overlap_seconds=1))
    executions = express(virtual.sim, count=6)
    store = SyncStore(":memory:")
    registry = CollectorRegistry()
    exporter = virtual.run(7, sink=Collector(), store=store, registry=registry)
    group_arn = f"arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}"
    open_express = [t for t in exporter.tracked.values() if t.group == group_arn]
    assert open_express, "stopped while executions were open"
    saved = store.watermark("logs:" + group_arn)
    assert saved is not None
    oldest = min(t.first_ms for t in open_express)
    assert saved == oldest / 1000  # held back to the oldest open execution's first event
    assert oldest == min(round(e.appear_time(1) * 1000) for e in executions if e.arn in exporter.tracked)
    assert registry.get_sample_value("sfn_exporter_log_groups", TARGET) == 1
    lag = registry.get_sample_value("sfn_exporter_log_watermark_lag_seconds", TARGET)
    assert lag is not None and 0 <= lag <= 2  # read to within an interval of now


def test_a_state_machine_no_longer_read_from_logs_drops_its_group() -> None:
    virtual = VirtualRun(settings())
    express(virtual.sim, count=2)
    registry = CollectorRegistry()

    def delete_all() -> None:
        virtual.sim.machines.clear()

    virtual.loop.call_later(30, delete_all)
    exporter = virtual.run(60, sink=Collector(), registry=registry)
    assert exporter.groups == {}
    assert registry.get_sample_value("sfn_exporter_log_groups", TARGET) == 0


def test_messages_of_executions_that_ended_or_that_have_no_execution_arn_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(settings())
    sim = virtual.sim
    executions = express(sim, count=2)
    done = executions[0]
    first = json.loads(next(e.message for e in sim.logs.groups[GROUP].events if done.arn in e.message))
    # the same message again, long after its execution ended (another stream, another event id)
    sim.logs.put(GROUP, EPOCH + 50, json.dumps(first), stream="states/orders/late")
    bad_arn = {**first, "execution_arn": "arn:aws:states:us-east-1:123456789012:activity:nope"}
    sim.logs.put(GROUP, EPOCH + 6, json.dumps(bad_arn))
    # an event that cannot be read (a negative predecessor), among good ones of its execution
    other = executions[1]
    broken = {
        **first,
        "execution_arn": other.arn,
        "id": str(len(other.history()) + 1),
        "previous_event_id": "-1",
    }
    sim.logs.put(GROUP, other.appear_time(2), json.dumps(broken))
    sink, registry = Collector(), CollectorRegistry()
    caplog.set_level(logging.WARNING)
    virtual.run(90, sink=sink, registry=registry)
    value = registry.get_sample_value
    assert value("sfn_exporter_log_messages_total", {"outcome": "late"}) == 1
    assert value("sfn_exporter_log_messages_total", {"outcome": "invalid"}) == 2
    # the broken one is refused as it is read, naming the message and what is wrong with it
    refused = [r for r in caplog.records if "previousEventId" in r.getMessage()]
    assert len(refused) == 1 and getattr(refused[0], "log_group_arn", "").endswith(GROUP)
    assert refused[0].getMessage().startswith("skipping a log message: log message ")
    assert refused[0].getMessage().endswith("previousEventId: expected an integer >= 0, got -1")
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)  # the rest of it went on
    warning = next(
        r for r in caplog.records if r.getMessage().startswith("skipping log messages: execution ARN")
    )
    assert "activity:nope" in warning.getMessage() and getattr(warning, "log_group_arn", "").endswith(GROUP)
    assert workflow_counts(registry) == truth(executions)


def test_a_standard_state_machine_that_logs_is_read_from_its_history_unless_chosen() -> None:
    """`auto` reads STANDARD state machines from their history even when they log: their log
    group is not read at all."""
    virtual = VirtualRun(settings())
    sim = virtual.sim
    machine = sim.add_machine("std", waiter_definition(2), logging=Logging(GROUP))
    executions = [sim.start(machine, waiter(random.Random(1), 1, 2, (0.5, 1.0)), "s-1", start=EPOCH + 1)]
    sink, registry = Collector(), CollectorRegistry()
    exporter = virtual.run(40, sink=sink, registry=registry)
    assert sim.calls["FilterLogEvents"] == 0 and sim.calls["GetExecutionHistory"] > 0
    assert registry.get_sample_value("sfn_exporter_log_groups", TARGET) == 0
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)
    assert_settled(exporter, registry)


def test_a_group_shared_with_a_state_machine_read_from_its_history_loses_nothing() -> None:
    """A STANDARD state machine read from its history logs to the group an EXPRESS one is read
    from: its messages there are skipped (counted as ignored), and every EXPRESS execution's
    spans still arrive; both are read whole, each once."""
    virtual = VirtualRun(settings())
    sim = virtual.sim
    sim.logs.delivery = Delivery(delay_s=(0.1, 1.0), streams=2)
    machine = sim.add_machine("std", waiter_definition(2), logging=Logging(GROUP))
    standard = [
        sim.start(machine, waiter(random.Random(n), 2, 2, (0.5, 1.0)), f"s-{n}", start=EPOCH + 1 + n)
        for n in range(5)
    ]  # fmt: skip
    executions = express(sim)
    sink, registry = Collector(), CollectorRegistry()
    exporter = virtual.run(120, sink=sink, registry=registry)
    exported = [span.context.span_id for span in sink.spans]
    assert len(exported) == len(set(exported)) and set(exported) == span_ids(executions + standard)
    assert workflow_counts(registry) == truth(executions + standard)
    assert registry.get_sample_value("sfn_exporter_log_messages_total", {"outcome": "ignored"}) == sum(
        len(e.history()) for e in standard
    )
    assert_settled(exporter, registry)


def test_the_read_position_lag_grows_while_a_log_group_cannot_be_read() -> None:
    from simulator.stepfunctions import DirectLogsClient

    class Failing(DirectLogsClient):
        """Answers until 10 s, refuses until 40 s, answers again."""

        async def filter_log_events(self, **params: Any) -> dict[str, Any]:
            if 10 <= self.sim.clock() - EPOCH < 40:
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "ServiceUnavailableException", "Message": "down"},
                                   "ResponseMetadata": {"HTTPStatusCode": 503}}, "FilterLogEvents")  # fmt: skip
            return await super().filter_log_events(**params)

    virtual = VirtualRun(settings())
    executions = express(virtual.sim, count=3)
    registry = CollectorRegistry()
    lags: list[float] = []
    for at in (8, 30, 60):
        virtual.loop.call_later(
            at,
            lambda: lags.append(
                registry.get_sample_value("sfn_exporter_log_watermark_lag_seconds", TARGET) or 0.0
            ),
        )
    sink = Collector()
    virtual.run(90, sink=sink, registry=registry, logs_client=Failing(virtual.sim))
    # the seconds since the last read began, plus logs.settle_seconds (2): where it read up to
    assert 1.9 <= lags[0] < 3.5 and 20 <= lags[1] <= 24 and 1.9 <= lags[2] < 3.5
    assert {s.context.span_id for s in sink.spans} == span_ids(executions)


def test_ended_executions_are_remembered_for_the_overlap_then_forgotten() -> None:
    """An execution that ended is known at once while its messages can still be read again
    (the overlap, two reads, a minute), then only the checkpoint remembers it."""
    virtual = VirtualRun(settings())  # settle 2 s, overlap 4 s, a read a second: remembered 68 s
    executions = express(virtual.sim, count=2)
    ended_at: dict[str, float] = {}

    def sample() -> None:
        assert virtual.exporter is not None
        ended_at.update({arn: virtual.loop.time() for arn in virtual.exporter._ended})

    for at in range(5, 40):
        virtual.loop.call_later(at, sample)
    exporter = virtual.run(200, sink=Collector())
    assert set(ended_at) == {e.arn for e in executions}  # remembered while they could come back
    assert exporter._ended == {}  # and forgotten 66 s later


@pytest.mark.parametrize("kind", ["EXPRESS", "STANDARD"])
def test_state_machines_read_from_logs_that_move_shards_are_counted_once(kind: str) -> None:
    """The state machines move to a shard with no checkpoint of them mid-run (exporter.shards):
    what their logs say happened before the move is left to the old owner (EXPRESS: dropped;
    STANDARD: rebuilt from the history without being exported); no span twice, no counter above
    the truth, and what started after the move arrives whole."""
    virtual = VirtualRun(settings(source="logs"))
    sim = virtual.sim
    sim.logs.delivery = Delivery(delay_s=(0.05, 0.5), streams=3)
    rng = random.Random(4)
    machine = sim.add_machine("moving", waiter_definition(2), kind, logging=Logging(GROUP))
    early = [sim.start(machine, waiter(rng, loops=3, wait_s=2, task_s=(0.5, 1.0)), f"e-{n}", start=EPOCH + 2 + n)
             for n in range(6)]  # fmt: skip
    late = [sim.start(machine, waiter(rng, loops=2, wait_s=2, task_s=(0.5, 1.0)), f"l-{n}", start=EPOCH + 16 + n)
            for n in range(4)]  # fmt: skip
    first_sink, second_sink = Collector(), Collector()
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    virtual.run(9, sink=first_sink, store=SyncStore(":memory:"), registry=first_registry, close=False)
    moved_at = virtual.wall()
    assert any(e.status(moved_at) == "RUNNING" for e in early)
    layout = Layout.first(owner(machine.arn, 2), 2, moved_at)  # a new shard: it takes them over
    virtual.run(120, sink=second_sink, store=SyncStore(":memory:"), registry=second_registry, layout=layout)
    first_ids = [s.context.span_id for s in first_sink.spans]
    second_ids = [s.context.span_id for s in second_sink.spans]
    assert len(set(first_ids) | set(second_ids)) == len(first_ids) + len(second_ids)  # none twice
    assert span_ids(late) <= set(second_ids)  # started after the move: whole
    every = truth(early + late)
    combined = counted_by_all(first_registry, second_registry)
    over = {k: (v, every.get(k, 0)) for k, v in combined.items() if v > every.get(k, 0)}
    assert not over  # nothing counted twice
    finished = (
        "sfn_executions_finished_total",
        tuple(sorted({**TARGET, "state_machine": "moving", "status": "SUCCEEDED"}.items())),
    )
    assert combined[finished] >= len(late)  # the ends after the move are counted (the late ones all)
