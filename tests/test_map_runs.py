"""Distributed Map runs end to end: the exporter as a process against the simulator over HTTP,
a real OTLP receiver and the real Prometheus server; a map run of 500 children, 5% of them
failing, a SIGKILL in the middle of one, and EXPRESS children read from their parent's log."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

from exporter.history.ids import span_id_for, trace_id_for
from simulator.logs import Delivery, Logging
from simulator.stepfunctions import SimMapRun, Simulator, SimulatorServer
from simulator.workloads import distributed_map, waiter_definition
from tests.harness import ExporterProcess, fast_config, wait_until
from tests.otlp_receiver import GrpcOtlpServer, ReceivedSpan
from tests.prometheus import PrometheusServer
from tests.test_daemon_restart import Scraper
from tests.truth import TARGET, map_run_children, span_ids

OPS = ("GetExecutionHistory", "ListExecutions", "DescribeMapRun", "DescribeExecution", "ListStateMachines",
       "DescribeStateMachine", "FilterLogEvents")  # fmt: skip
GENEROUS = {op: (1e6, 1e6) for op in OPS}
CHILDREN = 500
RUN = {**TARGET, "state_machine": "batch", "map_state": "Batch"}


def config(tmp_path: Path, **map_runs: Any) -> dict[str, Any]:
    return fast_config(
        tmp_path, map_runs={"interval_seconds": 0.5, **map_runs},
        api={"quotas": {op: {"bucket": 1000, "refill_per_second": 1000} for op in OPS}},
        polling={"min_interval_seconds": 0.3, "max_interval_seconds": 2, "concurrency": 8},
    )  # fmt: skip


def start_run(sim: Simulator, seed: int, child_type: str = "STANDARD") -> SimMapRun:
    """The map run; EXPRESS children log (with their parent) to a group, delivered late."""
    logging = Logging("/aws/vendedlogs/states/batch") if child_type == "EXPRESS" else None
    sim.logs.delivery = Delivery(delay_s=(0.1, 1.5), streams=3)
    machine = sim.add_machine("batch", waiter_definition(1), logging=logging)
    spec = distributed_map(
        random.Random(seed), CHILDREN, fail_rate=0.05, max_concurrency=100, seconds=(0.5, 2.5)
    )
    return sim.start_map_run(machine, spec, "nightly", start=sim.clock() + 1, child_type=child_type)


def failed(run: SimMapRun) -> list[Any]:
    return [c for c in run.children if c.status(float("inf")) != "SUCCEEDED"]


def map_run_span(run: SimMapRun) -> tuple[str, str]:
    event = next(i + 1 for i, e in enumerate(run.parent.template.events) if e["type"] == "MapRunStarted")
    return f"{trace_id_for(run.parent.arn):032x}", f"{span_id_for(run.parent.arn, event):016x}"


def roots(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {str(s.attributes["sfn.execution.arn"]): s for s in spans if s.attributes.get("sfn.map_run.arn")
            and "sfn.execution.arn" in s.attributes}  # fmt: skip


def test_followed_children_arrive_linked_and_prometheus_holds_the_truth(tmp_path: Path) -> None:
    sim = Simulator(quotas=GENEROUS)
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        exporter = ExporterProcess(tmp_path, config(tmp_path), server.endpoint, otlp.endpoint).start()
        try:
            with PrometheusServer(tmp_path / "prometheus", [exporter.listen]) as prometheus:
                started = time.time()
                wait_until(lambda: prometheus.scraped_after(started), 30, "a first scrape")
                run = start_run(sim, seed=7)
                wanted = {f"{i:016x}" for i in span_ids(failed(run))}

                def running_total() -> float:
                    found = prometheus.vector('sfn_map_run_executions{status="TOTAL"}', "map_state")
                    return found.get(("Batch",), 0.0)

                wait_until(lambda: running_total() == CHILDREN, 30, "the progress gauges while it runs")
                assert run.status(sim.clock()) == "RUNNING"
                wait_until(
                    lambda: wanted <= {s.span_id for s in otlp.receiver.snapshot()}, 90, "the failed children"
                )

                def finished() -> dict[tuple[str, ...], float]:
                    return prometheus.vector("sfn_map_run_child_executions_finished_total", "status")

                expected = {(status,): count for status, count in map_run_children(run).items()}
                wait_until(lambda: finished() == expected, 60, "Prometheus to hold the true child counts")
                wait_until(
                    lambda: prometheus.vector("sfn_map_runs_finished_total", "status") == {("SUCCEEDED",): 1.0},
                    30, "the map run's end",
                )  # fmt: skip
                assert run.status(sim.clock()) == "SUCCEEDED"
                wait_until(lambda: running_total() == 0, 30, "the gauges to go with the map run")
        finally:
            exporter.signal(signal.SIGTERM)
            assert exporter.wait(30) == 0
    spans = otlp.receiver.snapshot()
    assert len({s.span_id for s in spans}) == len(spans)  # each once
    children = roots(spans)
    failed_arns = {c.arn for c in failed(run)}
    assert failed_arns <= set(children) and 1 <= len(set(children) - failed_arns) <= 10
    trace, span = map_run_span(run)
    for arn, root in children.items():
        assert root.parent_span_id is None and root.trace_id == f"{trace_id_for(arn):032x}"
        assert root.links == [(trace, span)]


def test_sigkill_mid_run_loses_no_child_and_counts_none_twice(tmp_path: Path) -> None:
    sim = Simulator(quotas=GENEROUS)
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        settings = config(tmp_path, trace="nested", follow="failed")
        first = ExporterProcess(tmp_path, settings, server.endpoint, otlp.endpoint).start()
        scraper = Scraper(first)
        scraper.start()
        run = start_run(sim, seed=9)
        wait_until(
            lambda: sum(v for (name, _), v in scraper.last.items()
                        if name == "sfn_map_run_child_executions_finished_total") >= 50,
            30, "the first children to be counted",
        )  # fmt: skip
        assert run.status(sim.clock()) == "RUNNING"
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        scraper.halt.set()
        scraper.join()
        before = scraper.last
        second = ExporterProcess(tmp_path, settings, server.endpoint, otlp.endpoint).start()
        try:
            wanted = {f"{i:016x}" for i in span_ids(failed(run))}
            wait_until(
                lambda: wanted <= {s.span_id for s in otlp.receiver.snapshot()}, 90, "the failed children"
            )

            def ended() -> float:
                return sum(
                    v for (name, _), v in second.samples().items() if name == "sfn_map_runs_finished_total"
                )

            wait_until(lambda: ended() == 1, 60, "the map run's end")
            after = second.samples()
        finally:
            second.signal(signal.SIGTERM)
            assert second.wait(30) == 0
    true_counts = map_run_children(run)
    counted_after = 0.0
    for status, count in true_counts.items():
        key = (
            "sfn_map_run_child_executions_finished_total",
            tuple(sorted({**RUN, "status": status}.items())),
        )
        total = before.get(key, 0.0) + after.get(key, 0.0)
        counted_after += after.get(key, 0.0)
        assert total <= count, f"{status}: counted {total}, true {count}"
        assert total >= count - 5  # at most what the first process counted after its last scrape
    assert counted_after > 0
    trace, span = map_run_span(run)
    spans = otlp.receiver.snapshot()
    by_id: dict[str, set[tuple[Any, ...]]] = {}
    for s in spans:
        by_id.setdefault(s.span_id, set()).add((s.trace_id, s.parent_span_id, s.name, s.start_ns, s.end_ns))
    assert all(len(versions) == 1 for versions in by_id.values())  # a span sent again is the same span
    children = roots(spans)
    assert set(children) == {c.arn for c in failed(run)}  # follow: failed
    assert all(r.trace_id == trace and r.parent_span_id == span for r in children.values())


def test_express_children_arrive_from_their_parents_log_nested(tmp_path: Path) -> None:
    sim = Simulator(quotas=GENEROUS)
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        settings = config(tmp_path, trace="nested", sample_size=10)
        settings["logs"] = {"interval_seconds": 0.5, "settle_seconds": 1.5, "reorder_window_seconds": 3}
        settings["aws"] = {"logs_endpoint_url": server.endpoint}
        exporter = ExporterProcess(tmp_path, settings, server.endpoint, otlp.endpoint).start()
        try:
            run = start_run(sim, seed=11, child_type="EXPRESS")
            wanted = {f"{i:016x}" for i in span_ids(failed(run))}
            wait_until(
                lambda: wanted <= {s.span_id for s in otlp.receiver.snapshot()}, 90, "the failed children"
            )

            def counted() -> float:
                return sum(v for (name, labels), v in exporter.samples().items()
                           if name == "sfn_exporter_map_run_children_total" and ("handling", "counted") in labels)  # fmt: skip

            wait_until(lambda: counted() > 0, 60, "the map run's end")
            samples = exporter.samples()
        finally:
            exporter.signal(signal.SIGTERM)
            assert exporter.wait(30) == 0
    assert "InvalidArn" not in exporter.log()  # no child's history was asked for: they have none
    spans = otlp.receiver.snapshot()
    assert len({s.span_id for s in spans}) == len(spans)  # each once
    children = roots(spans)
    failed_arns = {c.arn for c in failed(run)}
    assert failed_arns <= set(children) and 1 <= len(set(children) - failed_arns) <= 10
    by_arn = {c.arn: c for c in run.children}
    assert {s.span_id for s in spans if s.trace_id == map_run_span(run)[0]} >= {
        f"{i:016x}" for i in span_ids([by_arn[arn] for arn in children])
    }  # every span of every followed child, in its parent's trace
    trace, span = map_run_span(run)
    assert all(r.trace_id == trace and r.parent_span_id == span for r in children.values())
    followed = sum(v for (name, labels), v in samples.items()
                   if name == "sfn_exporter_map_run_children_total" and ("handling", "followed") in labels)  # fmt: skip
    assert followed == len(children)
