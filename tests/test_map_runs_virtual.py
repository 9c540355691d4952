"""Distributed Map runs on a virtual clock against the in-process simulator: a map run of 500
children, 5% of them failing; which children are followed, the shape of their traces, the
progress gauges while it runs, the counters once it ended, and a restart in the middle; EXPRESS
children read from their parent's log group; map runs sharing a label; the checkpoint's map run
rows pruned."""

from __future__ import annotations

import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bench.freshness import EPOCH, SyncStore, VirtualRun
from exporter.history.ids import span_id_for, trace_id_for
from exporter.shards import Layout, owner
from simulator.logs import Delivery, Logging
from simulator.stepfunctions import SimMapRun
from simulator.workloads import distributed_map, waiter_definition
from tests.test_daemon_virtual import Collector, no_bug_is_logged  # noqa: F401 (a fixture)
from tests.truth import TARGET, map_run_children, span_ids

CHILDREN = 500


def settings(**map_runs: Any) -> dict[str, Any]:
    return {"discovery": {"executions_interval_seconds": 1, "state_machines_interval_seconds": 5,
                          "lookback_seconds": 3600},
            "map_runs": {"interval_seconds": 2, **map_runs}}  # fmt: skip


GROUP = "/aws/vendedlogs/states/batch"


def start(
    virtual: VirtualRun, seed: int = 5, children: int = CHILDREN, child_type: str = "STANDARD",
    logging: Logging | None = None, names: tuple[str, ...] = ("nightly",),
) -> SimMapRun:  # fmt: skip
    """The parent `batch` and its map run (one per name in `names`, all with the label `Batch`,
    each starting a second after the one before; the first is returned)."""
    machine = virtual.sim.add_machine("batch", waiter_definition(1), logging=logging)
    runs = []
    for offset, name in enumerate(names):
        spec = distributed_map(random.Random(seed + offset), children, fail_rate=0.05, max_concurrency=100)
        runs.append(
            virtual.sim.start_map_run(machine, spec, name, start=EPOCH + 2 + offset, child_type=child_type)
        )
    return runs[0]


def express_run(virtual: VirtualRun, children: int = CHILDREN, logs: bool = True) -> SimMapRun:
    """A map run of EXPRESS children that log, as their parent does, to GROUP (delivered 0.2 to
    2 s late over 3 streams), unless `logs` is False."""
    virtual.sim.logs.delivery = Delivery(delay_s=(0.2, 2.0), streams=3)
    return start(virtual, children=children, child_type="EXPRESS", logging=Logging(GROUP) if logs else None)


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


def express_settings(**map_runs: Any) -> dict[str, Any]:
    return {**settings(**map_runs), "logs": {"interval_seconds": 1, "reorder_window_seconds": 5}}


@pytest.mark.parametrize("follow", ["sample", "all"])
def test_express_children_are_read_from_their_parents_log(follow: str) -> None:
    # listed less often than the log is read under `all`: children first seen in the log are
    # followed from there
    virtual = VirtualRun(
        express_settings(follow=follow, sample_size=10, interval_seconds=6 if follow == "all" else 2)
    )
    run = express_run(virtual, children=200 if follow == "all" else CHILDREN)
    assert all(":express:" in c.arn for c in run.children)
    filtered = []  # the filtered reads of single children
    read = virtual.sim.logs.filter_log_events

    def counting(params: dict[str, Any], now: float) -> dict[str, Any]:
        if params.get("filterPattern"):
            filtered.append(params["filterPattern"])
        return read(params, now)

    virtual.sim.logs.filter_log_events = counting  # type: ignore[method-assign]
    sink, registry = Collector(), CollectorRegistry()
    exporter = virtual.run(150, sink=sink, registry=registry)
    roots = child_roots(sink)
    failed = {c.arn for c in run.children if c.status(float("inf")) != "SUCCEEDED"}
    if follow == "all":
        assert set(roots) == {c.arn for c in run.children}
        # each began after its map run was watched: followed through the group's tail from its
        # first message, without a read of its own
        assert not filtered
    else:
        assert failed and failed <= set(roots)
        assert 5 <= len(set(roots) - failed) <= 10
    # every span of every followed child, once, with the ids its history would give
    children = {c.arn: c for c in run.children}
    traces = {trace_id_for(arn) for arn in children}  # linked: each child its own trace
    exported = [span.context.span_id for span in sink.spans if span.context.trace_id in traces]
    assert len(exported) == len(set(exported))
    assert set(exported) == span_ids([children[arn] for arn in roots])
    for arn, root in roots.items():
        assert root.status.is_ok == (arn not in failed)
    assert value(registry, "sfn_exporter_map_run_children_total", handling="followed") == len(roots)
    assert value(registry, "sfn_exporter_map_run_children_total", handling="counted") == len(children) - len(
        roots
    )
    assert value(registry, "sfn_exporter_map_run_children_total", handling="unlogged") == 0
    truth = map_run_children(run)
    for status in ("SUCCEEDED", "FAILED"):
        assert value(registry, "sfn_map_run_child_executions_finished_total", state_machine="batch",
                     map_state="Batch", status=status) == truth[status]  # fmt: skip
    assert not exporter.tracked and not exporter.map_runs.watches


def test_express_children_with_no_log_to_read_are_counted_as_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(express_settings(sample_size=10))
    run = express_run(virtual, logs=False)
    sink, registry = Collector(), CollectorRegistry()
    virtual.run(120, sink=sink, registry=registry)
    failed = sum(1 for c in run.children if c.status(float("inf")) != "SUCCEEDED")
    assert not child_roots(sink)
    unlogged = value(registry, "sfn_exporter_map_run_children_total", handling="unlogged")
    assert failed <= unlogged <= failed + 10  # the ones it chose to follow: every failure and a sample
    assert value(registry, "sfn_exporter_map_run_children_total", handling="followed") == 0
    assert value(registry, "sfn_exporter_map_run_children_total", handling="counted") == CHILDREN - unlogged
    warnings = [r.getMessage() for r in caplog.records if "cannot be followed" in r.getMessage()]
    assert len(warnings) == 1 and "batch does not log" in warnings[0]
    truth = map_run_children(run)
    assert value(registry, "sfn_map_run_child_executions_finished_total", state_machine="batch",
                 map_state="Batch", status="FAILED") == truth["FAILED"]  # fmt: skip


def test_express_children_whose_messages_are_not_in_their_parents_group_are_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    virtual = VirtualRun(express_settings(sample_size=3))
    run = express_run(virtual, children=50)
    group = virtual.sim.logs.groups[GROUP]
    group.events = [e for e in group.events if ":express:" not in e.message]  # written elsewhere
    store, registry = SyncStore(":memory:"), CollectorRegistry()
    exporter = virtual.run(400, sink=Collector(), store=store, registry=registry)
    failed = [c for c in run.children if c.status(float("inf")) != "SUCCEEDED"]
    assert not exporter.tracked  # each followed child given up after logs.express_max_seconds (330)
    given_up = [r for r in caplog.records if "no message of this EXPRESS execution" in r.getMessage()]
    followed = value(registry, "sfn_exporter_map_run_children_total", handling="followed")
    assert len(failed) <= len(given_up) == followed <= len(failed) + 3
    for child in failed:
        cursor = store.get(child.arn)
        assert cursor is not None and cursor.finished and cursor.event_id == 0


def test_express_children_a_restart_loses_nothing_and_takes_no_second_sample() -> None:
    virtual = VirtualRun(express_settings(sample_size=10))
    run = express_run(virtual)
    store = SyncStore(":memory:")
    first_sink, second_sink = Collector(), Collector()
    virtual.run(10, sink=first_sink, store=store, close=False)
    assert run.status(virtual.wall()) == "RUNNING" and child_roots(first_sink)
    virtual.run(150, sink=second_sink, store=store)
    roots = {**child_roots(first_sink), **child_roots(second_sink)}
    failed = {c.arn for c in run.children if c.status(float("inf")) != "SUCCEEDED"}
    assert failed <= set(roots) and 5 <= len(set(roots) - failed) <= 10
    children = {c.arn: c for c in run.children}
    traces = {trace_id_for(arn) for arn in children}  # linked: each child its own trace
    exported = {s.context.span_id for sink in (first_sink, second_sink) for s in sink.spans
                if s.context.trace_id in traces}  # fmt: skip
    assert exported == span_ids([children[arn] for arn in roots])  # nothing lost across the restart
    for arn in roots:
        cursor = store.get(arn)
        assert cursor is not None and cursor.finished


def test_map_runs_sharing_a_label_keep_their_own_children_across_a_restart() -> None:
    """Two parents whose Distributed Maps have the same label: their children's ARNs share a
    prefix; after a restart each child read on still links to its own map run."""
    virtual = VirtualRun(settings(sample_size=30, trace="linked"))
    first = start(virtual, children=150, names=("a", "b"))
    second = next(r for r in virtual.sim.map_runs.values() if r is not first)
    store = SyncStore(":memory:")
    first_sink, second_sink = Collector(), Collector()
    virtual.run(7, sink=first_sink, store=store, close=False)
    resumed = [arn for arn in store.unfinished("arn:aws:states:") if "/Batch:" in arn]
    assert resumed  # children of both runs were being read when it stopped
    virtual.run(120, sink=second_sink, store=store)
    parent_of = {c.arn: run.parent.arn for run in (first, second) for c in run.children}
    roots = child_roots(second_sink)
    assert set(resumed) <= set(roots)
    for arn, root in roots.items():
        assert [link.context.trace_id for link in root.links] == [trace_id_for(parent_of[arn])]


def test_express_children_of_map_runs_sharing_a_label_link_to_their_own_parent() -> None:
    """Listed less often than their log is read: many children are first seen in the log."""
    virtual = VirtualRun(express_settings(follow="all", interval_seconds=6))
    virtual.sim.logs.delivery = Delivery(delay_s=(0.2, 2.0), streams=3)
    first = start(virtual, children=80, child_type="EXPRESS", logging=Logging(GROUP), names=("a", "b"))
    second = next(r for r in virtual.sim.map_runs.values() if r is not first)
    sink = Collector()
    virtual.run(240, sink=sink)  # each child is read by a filter of its own: the tail cannot tell
    parent_of = {c.arn: run.parent.arn for run in (first, second) for c in run.children}
    roots = child_roots(sink)
    assert set(roots) == set(parent_of)
    for arn, root in roots.items():
        assert [link.context.trace_id for link in root.links] == [trace_id_for(parent_of[arn])]


def test_a_map_runs_rows_are_pruned_after_retention_and_never_recounted() -> None:
    virtual = VirtualRun(settings(sample_size=5))
    run = start(virtual, children=60)
    store = SyncStore(":memory:")
    virtual.run(60, sink=Collector(), store=store, close=False)
    assert run.status(virtual.wall()) != "RUNNING"
    rows = store.watermarks(f"maprun:{run.arn}:")
    assert rows and f"maprun:{run.arn}:done" in rows
    assert virtual.exporter is not None and virtual.exporter.map_runs.prune(3600) == 0  # not yet
    assert virtual.exporter.map_runs.prune(0) == 1
    assert not store.watermarks(f"maprun:{run.arn}:")
    # the parent is read again from its history (its cursor short of its end): the map run it
    # shows is known to be over, not watched and counted a second time
    parent = store.get(run.parent.arn)
    assert parent is not None and parent.finished
    store.save_now(run.parent.arn, parent.event_id - 1, False)
    registry, sink = CollectorRegistry(), Collector()
    virtual.run(30, sink=sink, store=store, registry=registry)
    assert store.get(run.parent.arn) == parent
    assert not child_roots(sink)
    for status in ("SUCCEEDED", "FAILED"):
        assert value(registry, "sfn_map_run_child_executions_finished_total", state_machine="batch",
                     map_state="Batch", status=status) == 0  # fmt: skip
    assert value(registry, "sfn_exporter_map_run_children_total", handling="followed") == 0
