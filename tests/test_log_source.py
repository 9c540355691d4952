"""The log source end to end: the exporter reads EXPRESS and logging STANDARD state machines
from the simulator's CloudWatch Logs (over HTTP, messages delayed, reordered across streams and
lost), exports to a real OTLP receiver, and every span arrives once with the counters equal to
the truth."""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Hooks
from exporter.config import Config
from simulator.logs import Delivery, Logging
from simulator.stepfunctions import SimExecution, Simulator, SimulatorServer
from tests.harness import fast_config, isolate_aws_env, running_exporter, until
from tests.otlp_receiver import GrpcOtlpServer
from tests.truth import TARGET, span_ids, truth, workflow_counts
from tests.workloads import moto_templates, waiter, waiter_definition

GENEROUS = {op: (1e6, 1e6) for op in ("FilterLogEvents", "GetExecutionHistory", "ListExecutions")}


def log_config(tmp_path: Path, **logs: Any) -> Config:
    settings = {"interval_seconds": 0.3, "overlap_seconds": 5, "reorder_window_seconds": 1.5,
                "express_max_seconds": 60, "sources": {"std-logs": "logs"}, **logs}  # fmt: skip
    return Config.model_validate(
        fast_config(
            tmp_path, logs=settings,
            api={"quotas": {"FilterLogEvents": {"bucket": 100, "refill_per_second": 100}}},
        )
    )  # fmt: skip


def scenario(delivery: Delivery) -> tuple[Simulator, list[SimExecution], list[SimExecution]]:
    """EXPRESS executions of the moto recordings and of Wait loops, logged at ALL, and STANDARD
    ones logged at ALL; returns the simulator, the EXPRESS and the STANDARD executions."""
    sim = Simulator(quotas=GENEROUS)
    sim.logs.delivery = delivery
    rng = random.Random(11)
    express = sim.add_machine(
        "orders", waiter_definition(1), "EXPRESS", logging=Logging("/aws/vendedlogs/orders")
    )
    shared = Logging("/aws/vendedlogs/shared")
    recorded = sim.add_machine("recorded", {"StartAt": "X", "States": {}}, "EXPRESS", logging=shared)
    standard = sim.add_machine("std-logs", waiter_definition(1), "STANDARD", logging=shared)
    quiet = sim.add_machine("quiet", {"StartAt": "X", "States": {}}, "EXPRESS")  # logs nothing: skipped
    now = sim.clock()
    fast: list[SimExecution] = []
    for n in range(8):
        template = waiter(rng, loops=2, wait_s=1, task_s=(0.1, 0.4))
        fast.append(sim.start(express, template, f"o-{n}", start=now + rng.uniform(0, 2)))
    for template in moto_templates():
        fast.append(sim.start(recorded, template, f"{template.name}", start=now + rng.uniform(0, 2)))
    sim.start(quiet, moto_templates()[0], "unseen")
    slow = [
        sim.start(standard, waiter(rng, loops=2, wait_s=1, task_s=(0.1, 0.4)), f"s-{n}", start=now + rng.uniform(0, 2))
        for n in range(4)
    ]  # fmt: skip
    return sim, fast, slow


async def run_to_completion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: Simulator, wanted: set[int], **logs: Any
) -> tuple[Hooks, GrpcOtlpServer]:
    isolate_aws_env(monkeypatch)
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
        hooks = Hooks(handle_signals=False)
        async with running_exporter(log_config(tmp_path, **logs), hooks):

            def arrived() -> bool:
                return wanted <= {int(s.span_id, 16) for s in otlp.receiver.snapshot()}

            await until(arrived, 60, "every span")
            await until(lambda: not hooks.exporter.tracked, 30, "every execution to be done")  # type: ignore[union-attr]
        return hooks, otlp


async def test_express_and_logging_standard_executions_arrive_once_with_true_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, express, standard = scenario(Delivery(delay_s=(0.05, 1.5), streams=3))
    everything = [*express, *standard]
    hooks, otlp = await run_to_completion(tmp_path, monkeypatch, sim, span_ids(everything))
    spans = otlp.receiver.snapshot()
    assert len(spans) == len({s.span_id for s in spans}) == len(span_ids(everything))  # each once
    assert workflow_counts(hooks.registry) == truth(everything)
    value = hooks.registry.get_sample_value
    assert value("sfn_exporter_state_machines", {**TARGET, "status": "skipped_express_not_logging"}) == 1
    assert value("sfn_exporter_log_messages_total", {"outcome": "invalid"}) == 0
    assert value("sfn_exporter_log_groups", TARGET) == 2
    # logs carried the STANDARD executions: their histories were never read (they are listed, to
    # see the end of one whose log lost it)
    assert sim.calls["GetExecutionHistory"] == 0


async def test_lost_messages_are_anomalies_for_express_and_read_from_the_history_for_standard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, express, standard = scenario(Delivery(delay_s=(0.05, 0.5), streams=2, loss_rate=0.15))
    lost = sum(group.lost for group in sim.logs.groups.values())
    assert lost > 5  # the scenario loses messages of both kinds
    hooks, _ = await run_to_completion(tmp_path, monkeypatch, sim, span_ids(standard), express_max_seconds=8)
    value = hooks.registry.get_sample_value
    # STANDARD: the history filled every hole; the counts are the truth
    got = workflow_counts(hooks.registry)
    wanted = truth(standard)
    assert {key: got.get(key) for key in wanted} == wanted
    assert sim.calls["GetExecutionHistory"] > 0
    # EXPRESS: what was lost is counted as an anomaly, and every execution was closed
    anomalies = sum(
        value("sfn_history_anomalies_total", {**TARGET, "state_machine": name, "anomaly": anomaly}) or 0
        for name in ("orders", "recorded")
        for anomaly in ("missing_event_ids", "incomplete_log", "missing_execution_started")
    )
    assert anomalies >= 1
    started = sum(
        value("sfn_executions_started_total", {**TARGET, "state_machine": n}) or 0
        for n in ("orders", "recorded")
    )
    finished = sum(
        value("sfn_executions_finished_total", {**TARGET, "state_machine": n, "status": status}) or 0
        for n in ("orders", "recorded")
        for status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "UNKNOWN")
    )
    assert started == finished == len(express)


def test_sigkill_while_tailing_logs_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    """The exporter as a process, killed while EXPRESS executions are half logged: a second one
    resumes from the checkpoint; every span arrives (resent ones are the same span), and the
    counters of both processes together never exceed the truth."""
    import sqlite3
    import time
    from collections import defaultdict

    from tests.harness import ExporterProcess, wait_until
    from tests.test_daemon_restart import Scraper, counters

    sim = Simulator(quotas=GENEROUS)
    sim.logs.delivery = Delivery(delay_s=(0.05, 0.4), streams=3)
    rng = random.Random(5)
    machine = sim.add_machine(
        "orders", waiter_definition(1), "EXPRESS", logging=Logging("/aws/vendedlogs/orders")
    )
    start = sim.clock() + 1
    executions = [
        sim.start(machine, waiter(rng, loops=3, wait_s=1, task_s=(0.2, 0.5)), f"o-{n}", start=start + n * 0.5)
        for n in range(16)
    ]  # each runs about 4 s; they start over 8 s, so some are half done at the kill
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        # an overlap shorter than an execution: only the checkpointed read position (held back to
        # the oldest open execution's start) brings back the first events of those half done
        settings = {"interval_seconds": 0.3, "overlap_seconds": 0.5, "reorder_window_seconds": 3}
        config = fast_config(
            tmp_path, logs=settings, aws={"logs_endpoint_url": server.endpoint},
            api={"quotas": {"FilterLogEvents": {"bucket": 100, "refill_per_second": 100}}},
        )  # fmt: skip
        first = ExporterProcess(tmp_path, config, server.endpoint, otlp.endpoint).start()
        scraper = Scraper(first)
        scraper.start()
        time.sleep(5)
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        scraper.halt.set()
        scraper.join()
        before_kill = counters(scraper.last)
        db = sqlite3.connect(str(tmp_path / "checkpoint.sqlite"))
        open_at_kill = db.execute("SELECT count(*) FROM executions WHERE finished = 0").fetchone()[0]
        db.close()
        assert open_at_kill >= 1, "no execution was half exported at the kill"

        second = ExporterProcess(tmp_path, config, server.endpoint, otlp.endpoint).start()
        try:
            wanted = {f"{span_id:016x}" for span_id in span_ids(executions)}
            wait_until(lambda: wanted <= {s.span_id for s in otlp.receiver.snapshot()}, 60, "every span")
            by_id = defaultdict(set)
            for span in otlp.receiver.snapshot():
                by_id[span.span_id].add((span.parent_span_id, span.name, span.start_ns, span.end_ns))
            assert all(len(versions) == 1 for versions in by_id.values())
            time.sleep(1.0)  # the last counters are applied right after the last export
            after_restart = counters(second.samples())
        finally:
            second.signal(signal.SIGTERM)
            assert second.wait(30) == 0
    true_counts = truth(executions)
    for key in set(before_kill) | set(after_restart):
        counted = before_kill.get(key, 0.0) + after_restart.get(key, 0.0)
        assert counted <= true_counts.get(key, 0.0), (
            f"{key}: counted {counted}, true {true_counts.get(key, 0.0)}"
        )
    started = sum(v for (name, _), v in {**before_kill}.items() if name == "sfn_executions_started_total")
    started_after = sum(v for (name, _), v in after_restart.items() if name == "sfn_executions_started_total")
    assert started_after >= 1 and started + started_after <= len(executions)


def failing_express() -> list[Any]:
    """An EXPRESS execution that fails (Charge raises) and one that succeeds, as templates."""
    from simulator.builder import History
    from simulator.stepfunctions import Template

    templates = []
    for fails in (True, False):
        h = History()
        h.add("ExecutionStarted", prev=0, input="{}")
        h.add("TaskStateEntered", name="Charge")
        h.add("TaskScheduled", resource="invoke", resourceType="lambda")
        h.add("TaskStarted", resource="invoke", resourceType="lambda")
        if fails:
            h.add("TaskFailed", resource="invoke", resourceType="lambda", error="Card.Declined")
            h.add("ExecutionFailed", error="Card.Declined")
        else:
            h.add("TaskSucceeded", resource="invoke", resourceType="lambda", output="{}")
            h.add("TaskStateExited", name="Charge")
            h.add("ExecutionSucceeded", output="{}")
        events = [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events]
        templates.append(
            Template("fails" if fails else "works", [i * 0.1 for i in range(len(events))], events)
        )
    return templates


def test_the_failure_alert_fires_for_an_express_workflow_in_a_real_prometheus(tmp_path: Path) -> None:
    """EXPRESS executions read from their logs reach the workflow counters, and the shipped alert
    rules in a real Prometheus server, scraping the exporter, go pending for the failing EXPRESS
    state machine only; the counters Prometheus holds equal the truth."""
    import time

    from tests.corpus import REPO
    from tests.harness import ExporterProcess, wait_until
    from tests.prometheus import PrometheusServer

    sim = Simulator(quotas=GENEROUS)
    sim.logs.delivery = Delivery(delay_s=(0.05, 0.5), streams=2)
    fails, works = failing_express()
    payments = sim.add_machine(
        "payments", {"StartAt": "Charge", "States": {}}, "EXPRESS", logging=Logging("/aws/p")
    )
    healthy = sim.add_machine(
        "healthy", {"StartAt": "Charge", "States": {}}, "EXPRESS", logging=Logging("/aws/p")
    )
    with SimulatorServer(sim) as server:
        settings = {"interval_seconds": 0.3, "overlap_seconds": 3, "reorder_window_seconds": 2}
        config = fast_config(
            tmp_path, logs=settings, otlp={"enabled": False}, aws={"logs_endpoint_url": server.endpoint},
            api={"quotas": {"FilterLogEvents": {"bucket": 100, "refill_per_second": 100}}},
        )  # fmt: skip
        exporter = ExporterProcess(tmp_path, config, server.endpoint, None).start()
        rules = REPO / "deploy" / "prometheus" / "alerts.yml"
        try:
            with PrometheusServer(
                tmp_path / "prometheus", [exporter.listen], rule_files=[rules]
            ) as prometheus:
                started = time.time()
                wait_until(lambda: prometheus.scraped_after(started), 30, "a first scrape")
                executions = []
                for n in range(30):  # half of payments' executions fail; healthy's all succeed
                    now = sim.clock() + 1 + n * 0.2
                    executions.append(sim.start(payments, fails if n % 2 else works, f"p-{n}", start=now))
                    executions.append(sim.start(healthy, works, f"h-{n}", start=now))

                def alerts() -> dict[tuple[str, str], str]:
                    found = prometheus.query("ALERTS")
                    return {(a["metric"]["alertname"], a["metric"].get("state_machine", "")): a["metric"]["alertstate"]
                            for a in found}  # fmt: skip

                wait_until(
                    lambda: ("SfnExecutionFailureRateHigh", "payments") in alerts(), 60, "the failure alert"
                )
                assert not [key for key in alerts() if key[1] == "healthy"]
                wanted = truth(executions)

                def finished() -> dict[tuple[str, ...], float]:
                    return prometheus.vector("sfn_executions_finished_total", "state_machine", "status")

                expected = {
                    (dict(labels)["state_machine"], dict(labels)["status"]): value
                    for (name, labels), value in wanted.items()
                    if name == "sfn_executions_finished_total"
                }
                wait_until(lambda: finished() == expected, 30, "Prometheus to hold the true counts")
        finally:
            exporter.signal(signal.SIGTERM)
            assert exporter.wait(30) == 0
