"""Distributed Map runs on a virtual clock against the in-process simulator: a map run of 500
children, 5% of them failing; which children are followed, the shape of their traces, the
progress gauges while it runs, the counters once it ended, and a restart in the middle."""

from __future__ import annotations

import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bench.freshness import EPOCH, SyncStore, VirtualRun
from exporter.history.ids import span_id_for, trace_id_for
from exporter.shards import Layout, owner
from simulator.stepfunctions import SimMapRun
from simulator.workloads import distributed_map, waiter_definition
from tests.test_daemon_virtual import Collector, no_bug_is_logged  # noqa: F401 (a fixture)
from tests.truth import TARGET, map_run_children

CHILDREN = 500


def settings(**map_runs: Any) -> dict[str, Any]:
    return {"discovery": {"executions_interval_seconds": 1, "state_machines_interval_seconds": 5,
                          "lookback_seconds": 3600},
            "map_runs": {"interval_seconds": 2, **map_runs}}  # fmt: skip


def start(virtual: VirtualRun, seed: int = 5, children: int = CHILDREN) -> SimMapRun:
    machine = virtual.sim.add_machine("batch", waiter_definition(1))
    spec = distributed_map(random.Random(seed), children, fail_rate=0.05, max_concurrency=100)
    return virtual.sim.start_map_run(machine, spec, "nightly", start=EPOCH + 2)


def child_roots(sink: Collector) -> dict[str, Any]:
    """The root span of each child execution exported, by execution ARN."""
    return {
        str(span.attributes["sfn.execution.arn"]): span
        for span in sink.spans
        if span.attributes.get("sfn.map_run.arn") and "sfn.execution.arn" in span.attributes
    }


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    target = {} if name.startswith("sfn_exporter_map_run_children") else TARGET  # that one is process-wide
    return registry.get_sample_value(name, {**target, **labels}) or 0.0


@pytest.mark.parametrize("shape", ["linked", "nested"])
def test_a_sample_and_every_failed_child_are_followed_in_the_chosen_shape(shape: str) -> None:
    virtual = VirtualRun(settings(trace=shape, sample_size=10))
    run = start(virtual)
    failed = {c.arn for c in run.children if c.status(float("inf")) != "SUCCEEDED"}
    assert 10 < len(failed) < 60
    sink, registry = Collector(), CollectorRegistry()
    exporter = virtual.run(120, sink=sink, registry=registry)
    roots = child_roots(sink)
    assert failed <= set(roots)  # every failure is followed
    assert 5 <= len(set(roots) - failed) <= 10  # and the sample of 10 (a few of which may fail)
    parent_trace = trace_id_for(run.parent.arn)
    map_run_event = next(
        i + 1 for i, e in enumerate(run.parent.template.events) if e["type"] == "MapRunStarted"
    )
    map_run_span = span_id_for(run.parent.arn, map_run_event)
    for arn, root in roots.items():
        if shape == "nested":
            assert root.context.trace_id == parent_trace and root.parent.span_id == map_run_span
            assert not root.links
        else:
            assert root.context.trace_id == trace_id_for(arn) and root.parent is None
            assert [(link.context.trace_id, link.context.span_id) for link in root.links] == [
                (parent_trace, map_run_span)
            ]
        assert root.name == "batch/Batch"  # the Map state names them, not the map run's label
    # every span of a followed child arrives, once
    exported = [span.context.span_id for span in sink.spans]
    assert len(exported) == len(set(exported))
    assert value(registry, "sfn_exporter_map_run_children_total", handling="followed") == len(roots)
    assert value(registry, "sfn_exporter_map_run_children_total", handling="counted") == CHILDREN - len(roots)
    assert value(registry, "sfn_exporter_map_runs") == 0
    assert not exporter.map_runs.watches


def test_the_counters_equal_the_truth_and_the_gauges_follow_it_while_it_runs() -> None:
    virtual = VirtualRun(settings(follow="failed"))
    run = start(virtual)
    registry = CollectorRegistry()
    seen: list[tuple[float, dict[str, float]]] = []

    def sample() -> None:
        now = virtual.wall()
        seen.append((now, {s: value(registry, "sfn_map_run_executions", state_machine="batch", map_state="Batch",
                                    status=s) for s in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "TOTAL")}))  # fmt: skip

    for at in range(6, 30, 3):
        virtual.loop.call_later(at, sample)
    virtual.run(120, sink=Collector(), registry=registry)
    moving = [(now, gauges) for now, gauges in seen if gauges["TOTAL"]]
    assert len(moving) >= 4 and len({g["SUCCEEDED"] for _, g in moving}) >= 3  # it moved while it ran
    for now, gauges in moving:  # described at most one interval (and a pass) before
        before, after = run.counts(now - 3), run.counts(now)
        assert before["succeeded"] <= gauges["SUCCEEDED"] <= after["succeeded"]
        assert after["pending"] <= gauges["PENDING"] <= before["pending"]
        assert gauges["TOTAL"] == CHILDREN
    truth = map_run_children(run)
    for status in ("SUCCEEDED", "FAILED"):
        assert value(registry, "sfn_map_run_child_executions_finished_total", state_machine="batch",
                     map_state="Batch", status=status) == truth[status]  # fmt: skip
    assert value(registry, "sfn_map_runs_finished_total", state_machine="batch", map_state="Batch",
                 status=run.status(float("inf"))) == 1  # fmt: skip
    # the gauges go once the map run ended
    assert (
        registry.get_sample_value(
            "sfn_map_run_executions",
            {**TARGET, "state_machine": "batch", "map_state": "Batch", "status": "TOTAL"},
        )
        is None
    )
    # a child's execution is counted by its map run, not as an execution of its own
    assert value(registry, "sfn_executions_started_total", state_machine="batch/Batch") == 0
    assert value(registry, "sfn_task_failures_total", state_machine="batch/Batch", state="Process",
                 kind="task", error="Item.Invalid") == truth["FAILED"]  # fmt: skip


def test_follow_all_reads_every_child() -> None:
    virtual = VirtualRun(settings(follow="all", trace="nested"))
    run = start(virtual, children=120)
    sink = Collector()
    virtual.run(90, sink=sink)
    assert set(child_roots(sink)) == {c.arn for c in run.children}


def test_a_restart_mid_run_loses_nothing_and_counts_nothing_twice() -> None:
    virtual = VirtualRun(settings(sample_size=10))
    run = start(virtual)
    store = SyncStore(":memory:")
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first_sink, second_sink = Collector(), Collector()
    virtual.run(12, sink=first_sink, store=store, registry=first_registry, close=False)
    assert run.status(virtual.wall()) == "RUNNING" and child_roots(first_sink) is not None
    virtual.run(120, sink=second_sink, store=store, registry=second_registry)
    truth = map_run_children(run)
    for status in ("SUCCEEDED", "FAILED"):
        counted = sum(
            value(r, "sfn_map_run_child_executions_finished_total", state_machine="batch", map_state="Batch",
                  status=status)
            for r in (first_registry, second_registry)
        )  # fmt: skip
        assert counted == truth[status]
    assert (
        sum(
            value(
                r, "sfn_map_runs_finished_total", state_machine="batch", map_state="Batch", status="SUCCEEDED"
            )
            for r in (first_registry, second_registry)
        )
        == 1
    )
    roots = {**child_roots(first_sink), **child_roots(second_sink)}
    failed = {c.arn for c in run.children if c.status(float("inf")) != "SUCCEEDED"}
    assert failed <= set(roots) and 5 <= len(set(roots) - failed) <= 10  # the sample is not taken twice
    # each followed child ends with every span exported: its cursor is at its end
    for arn in roots:
        cursor = store.get(arn)
        assert cursor is not None and cursor.finished


def test_a_map_run_whose_state_machine_moved_shards_is_counted_once() -> None:
    """The parent's state machine moves to a shard with no checkpoint of it mid-run
    (exporter.shards): the new owner takes what the map run counted so far as the old owner's,
    counts only what finishes after, and follows only children that end after the move."""
    virtual = VirtualRun(settings(sample_size=10))
    run = start(virtual)
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first_sink, second_sink = Collector(), Collector()
    virtual.run(12, sink=first_sink, store=SyncStore(":memory:"), registry=first_registry, close=False)
    moved_at = virtual.wall()
    assert run.status(moved_at) == "RUNNING"
    shard = owner(run.parent.machine.arn, 2)
    layout = Layout.first(shard, 2, moved_at)  # a new shard: its state machines are taken over
    virtual.run(120, sink=second_sink, store=SyncStore(":memory:"), registry=second_registry, layout=layout)
    truth = map_run_children(run)
    first = {s: value(first_registry, "sfn_map_run_child_executions_finished_total", state_machine="batch",
                      map_state="Batch", status=s) for s in ("SUCCEEDED", "FAILED")}  # fmt: skip
    second = {s: value(second_registry, "sfn_map_run_child_executions_finished_total", state_machine="batch",
                       map_state="Batch", status=s) for s in ("SUCCEEDED", "FAILED")}  # fmt: skip
    assert first["SUCCEEDED"] > 0 and second["SUCCEEDED"] > 0  # each counted its part
    ended_before = {
        s: sum(1 for c in run.children if c.status(moved_at - 6) == s) for s in ("SUCCEEDED", "FAILED")
    }
    for status in ("SUCCEEDED", "FAILED"):
        assert first[status] + second[status] <= truth[status]  # nothing twice
        assert second[status] <= truth[status] - ended_before[status]  # not what ended before the move
    finished = [value(r, "sfn_map_runs_finished_total", state_machine="batch", map_state="Batch", status="SUCCEEDED")
                for r in (first_registry, second_registry)]  # fmt: skip
    assert finished == [0.0, 1.0]
    # children followed after the move all ended after it; none is exported by both owners
    second_roots = child_roots(second_sink)
    ended = {c.arn: c.stop_time(float("inf")) for c in run.children}
    assert second_roots and all(ended[arn] >= moved_at - 1 for arn in second_roots)
    first_ids = {s.context.span_id for s in first_sink.spans}
    assert not first_ids & {s.context.span_id for s in second_sink.spans}
