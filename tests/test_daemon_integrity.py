"""Faults that used to lose or double data, against the simulator over HTTP (the real aiobotocore
client) and a real OTLP receiver: 200 answers cut short, an execution AWS briefly says does not
exist, corrupted events, and a checkpoint whose writes fail."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Hooks
from exporter.config import Config
from exporter.daemon import MALFORMED_POLLS
from exporter.logs import RepeatFilter
from simulator.stepfunctions import Simulator, SimulatorServer
from tests.harness import fast_config, isolate_aws_env, running_exporter, until
from tests.otlp_receiver import GrpcOtlpServer
from tests.truth import TARGET, span_ids, truth, workflow_counts
from tests.workloads import burster, moto_templates, waiter, waiter_definition


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    isolate_aws_env(monkeypatch)
    yield monkeypatch


@asynccontextmanager
async def exporting(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **sections: dict[str, Any]
) -> AsyncIterator[tuple[Hooks, GrpcOtlpServer]]:
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
        polling = {"min_interval_seconds": 0.2, "max_interval_seconds": 1, "concurrency": 8}
        config = Config.model_validate(
            fast_config(tmp_path, polling=polling | sections.pop("polling", {}), **sections)
        )
        hooks = Hooks(handle_signals=False)
        async with running_exporter(config, hooks):
            yield hooks, otlp


def received(otlp: GrpcOtlpServer) -> list[int]:
    return [int(span.span_id, 16) for span in otlp.receiver.snapshot()]


def api_calls(hooks: Hooks, operation: str, outcome: str) -> float:
    return (
        hooks.registry.get_sample_value(
            "sfn_exporter_api_calls_total", {**TARGET, "operation": operation, "outcome": outcome}
        )
        or 0.0
    )


async def test_answers_cut_short_are_retried_and_lose_no_span(
    tmp_path: Path, aws_env: pytest.MonkeyPatch
) -> None:
    sim = Simulator()
    rng = random.Random(3)
    machine = sim.add_machine("fanout", {"StartAt": "Fan", "States": {}})
    executions = [
        sim.start(
            machine,
            burster(rng, bursts=3, width=12, quiet_s=(0.5, 1.0)),
            f"b-{n}",
            start=sim.clock() + 1 + n * 0.3,
        )
        for n in range(6)
    ]
    for template in moto_templates():
        other = sim.add_machine(template.name, {"StartAt": "X", "States": {}})
        executions.append(sim.start(other, template, f"{template.name}-1", start=sim.clock() + 1))
    # Three history pages read with a nextToken, and the first listing of state machines, come
    # back as a 200 whose body stops half way (botocore makes that {"message": ...}).
    sim.faults.cut_short = {"GetExecutionHistory": 3, "ListStateMachines": 1}
    sim.faults.cut_short_paged_only = True
    async with exporting(sim, aws_env, tmp_path, polling={"page_size": 5}) as (hooks, otlp):
        wanted = span_ids(executions)
        await until(lambda: wanted <= set(received(otlp)), 90, "every span")
        await until(lambda: not hooks.exporter.tracked, 30, "every execution done")  # type: ignore[union-attr]
        assert sim.faults.cut_short == {"GetExecutionHistory": 0, "ListStateMachines": 0}
        assert api_calls(hooks, "GetExecutionHistory", "invalid_response") == 3
        assert api_calls(hooks, "ListStateMachines", "invalid_response") == 1
        assert (
            hooks.registry.get_sample_value(
                "sfn_exporter_history_errors_total", {"reason": "IncompleteResponse"}
            )
            == 3
        )
        assert set(received(otlp)) == wanted
        assert workflow_counts(hooks.registry) == truth(executions)


async def test_an_execution_that_briefly_does_not_exist_is_counted_once(
    tmp_path: Path, aws_env: pytest.MonkeyPatch
) -> None:
    sim = Simulator()
    rng = random.Random(5)
    loops = sim.add_machine("loops", waiter_definition(1))
    executions = [
        sim.start(
            loops, waiter(rng, loops=4, wait_s=1, task_s=(0.2, 0.5)), f"loop-{n}", start=sim.clock() + 0.5
        )
        for n in range(4)
    ]
    async with exporting(sim, aws_env, tmp_path) as (hooks, otlp):
        await until(lambda: hooks.exporter is not None and len(hooks.exporter.tracked) == 4, 30, "tracking")
        exporter = hooks.exporter
        await asyncio.sleep(1.5)  # some events exported and checkpointed
        for execution in executions[:2]:
            sim.faults.vanish[execution.arn] = 1
        await until(lambda: not any(sim.faults.vanish.values()), 30, "the vanishing answers")
        wanted = span_ids(executions)
        await until(lambda: wanted <= set(received(otlp)), 60, "every span")
        await until(lambda: not exporter.tracked, 30, "every execution done")  # type: ignore[union-attr]
        assert workflow_counts(hooks.registry) == truth(executions)
        events = sum(len(e.history()) for e in executions)
        assert hooks.registry.get_sample_value("sfn_exporter_events_processed_total") == events


async def test_corrupted_events_quarantine_their_execution_and_the_others_go_on(
    tmp_path: Path, aws_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sim = Simulator()
    rng = random.Random(9)
    loops = sim.add_machine("loops", waiter_definition(1))
    executions = [
        sim.start(
            loops, waiter(rng, loops=2, wait_s=1, task_s=(0.2, 0.5)), f"loop-{n}", start=sim.clock() + 0.5
        )
        for n in range(5)
    ]
    bad_time, no_id = executions[0], executions[1]
    sim.faults.corrupt = {bad_time.arn: (3, "timestamp"), no_id.arn: (2, "no_id")}
    good = executions[2:]
    caplog.set_level(logging.WARNING)
    async with exporting(sim, aws_env, tmp_path) as (hooks, otlp):
        await until(lambda: span_ids(good) <= set(received(otlp)), 60, "the good executions' spans")
        value = hooks.registry.get_sample_value
        await until(lambda: value("sfn_exporter_quarantined_executions", TARGET) == 2, 60, "two quarantined")
        assert value("sfn_exporter_history_errors_total", {"reason": "UnparsableResponse"}) == MALFORMED_POLLS
        assert value("sfn_exporter_history_errors_total", {"reason": "InvalidEvent"}) == MALFORMED_POLLS
        await asyncio.sleep(2.5)  # two more discovery passes list them again: not tracked again
        assert hooks.exporter is not None and not hooks.exporter.tracked
        assert value("sfn_exporter_history_errors_total", {"reason": "InvalidEvent"}) == MALFORMED_POLLS
    quarantined = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert sorted(r.execution_arn for r in quarantined) == sorted([bad_time.arn, no_id.arn])  # type: ignore[attr-defined]
    by_arn = {r.execution_arn: r.getMessage() for r in quarantined}  # type: ignore[attr-defined]
    assert "event 3: timestamp 'garbage' is not a time" in by_arn[bad_time.arn]
    assert "event 2 (position" in by_arn[no_id.arn] and "has no positive integer id" in by_arn[no_id.arn]
    assert "Fetch" not in by_arn[no_id.arn]  # the type, never the event's content
    per_execution = [r for r in caplog.records if getattr(r, "execution_arn", None) == bad_time.arn]
    assert len(per_execution) == MALFORMED_POLLS  # the retries and the quarantine, nothing more


class FullDisk:
    """A SQLite connection whose writes fail as on a full disk while `full` is set."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = False

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if self.full and sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, params)

    def close(self) -> None:
        self.db.close()


async def test_a_checkpoint_that_cannot_be_written_costs_readiness_not_data(
    tmp_path: Path, aws_env: pytest.MonkeyPatch
) -> None:
    sim = Simulator()
    rng = random.Random(11)
    loops = sim.add_machine("loops", waiter_definition(1))
    executions = [
        sim.start(
            loops, waiter(rng, loops=4, wait_s=1, task_s=(0.2, 0.5)), f"loop-{n}", start=sim.clock() + 0.5
        )
        for n in range(20)
    ]
    root = logging.getLogger()
    lines: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lines.append  # type: ignore[method-assign]
    handler.addFilter(RepeatFilter(interval_s=60))
    root.addHandler(handler)
    try:
        async with exporting(sim, aws_env, tmp_path) as (hooks, otlp):
            await until(
                lambda: (
                    hooks.exporter is not None and hooks.exporter.ready and len(hooks.exporter.tracked) == 20
                ),
                30,
                "ready",
            )
            exporter = hooks.exporter
            assert exporter is not None
            disk = FullDisk(exporter.store._db)
            exporter.store._db = disk  # type: ignore[assignment]
            disk.full = True
            errors = lambda: hooks.registry.get_sample_value(  # noqa: E731
                "sfn_exporter_checkpoint_writes_total", {"outcome": "error"}
            )
            await until(lambda: (errors() or 0) >= 40, 30, "failed checkpoint writes")
            assert not exporter.ready
            disk.full = False
            wanted = span_ids(executions)
            await until(lambda: wanted <= set(received(otlp)) and not exporter.tracked, 60, "everything")
            assert exporter.ready
            assert workflow_counts(hooks.registry) == truth(executions)
    finally:
        root.removeHandler(handler)
    failures = [r for r in lines if "database or disk is full" in r.getMessage()]
    # one line per kind (a poll, a discovery pass, a pruning, whichever met the full disk), not one
    # per write: 40 and more writes failed
    kinds = Counter(str(r.msg) for r in failures)
    assert failures and all(n <= 2 for n in kinds.values()), [r.getMessage() for r in failures]


async def test_an_otlp_backend_that_refuses_for_a_while_loses_nothing(
    tmp_path: Path, aws_env: pytest.MonkeyPatch
) -> None:
    sim = Simulator()
    rng = random.Random(13)
    loops = sim.add_machine("loops", waiter_definition(1))
    executions = [
        sim.start(
            loops, waiter(rng, loops=2, wait_s=1, task_s=(0.2, 0.5)), f"loop-{n}", start=sim.clock() + 0.5
        )
        for n in range(8)
    ]
    # No re-listing overlap: an execution dropped before its spans were sent would not come back.
    sections: dict[str, Any] = {"otlp": {"timeout_seconds": 1}, "discovery": {"overlap_seconds": 0}}
    async with exporting(sim, aws_env, tmp_path, **sections) as (hooks, otlp):
        # The backend takes everything but the last batch of each execution (the one holding its
        # root span), as if it went down just as they ended.
        otlp.receiver.refuse = lambda span: span.parent_span_id is None
        await until(
            lambda: all(e.status(sim.clock()) != "RUNNING" for e in executions), 30, "the runs to end"
        )
        await until(lambda: otlp.receiver.refused >= 8, 30, "refused final batches")
        await asyncio.sleep(2.0)
        exporter = hooks.exporter
        assert exporter is not None and len(exporter.tracked) == 8  # finished, but not dropped: unsent
        failed = hooks.registry.get_sample_value("sfn_exporter_spans_failed_total")
        assert failed and failed > 0
        finished = hooks.registry.get_sample_value(
            "sfn_executions_finished_total", {**TARGET, "state_machine": "loops", "status": "SUCCEEDED"}
        )
        assert not finished  # not counted before its spans were taken
        otlp.receiver.refuse = None  # the backend is back
        wanted = span_ids(executions)
        await until(lambda: wanted <= set(received(otlp)) and not exporter.tracked, 60, "every span")
        assert workflow_counts(hooks.registry) == truth(executions)


async def test_a_deleted_state_machine_takes_its_series_with_it(
    tmp_path: Path, aws_env: pytest.MonkeyPatch
) -> None:
    sim = Simulator()
    rng = random.Random(17)
    kept, deleted = (
        sim.add_machine("kept", waiter_definition(1)),
        sim.add_machine("deleted", waiter_definition(1)),
    )
    executions = [
        sim.start(
            machine,
            waiter(rng, loops=1, wait_s=1, task_s=(0.1, 0.2)),
            f"{machine.name}-{n}",
            start=sim.clock() + 0.3,
        )
        for machine in (kept, deleted)
        for n in range(2)
    ]
    async with exporting(sim, aws_env, tmp_path) as (hooks, otlp):
        await until(lambda: span_ids(executions) <= set(received(otlp)), 30, "every span")
        value = hooks.registry.get_sample_value
        labels = {**TARGET, "state_machine": "deleted", "status": "SUCCEEDED"}
        await until(lambda: value("sfn_executions_finished_total", labels) == 2, 30, "the counts")
        del sim.machines[deleted.arn]  # DeleteStateMachine: no longer listed
        await until(lambda: value("sfn_executions_finished_total", labels) is None, 30, "its series to go")
        assert value("sfn_running_executions", {**TARGET, "state_machine": "deleted"}) is None
        assert value("sfn_executions_finished_total", {**TARGET, **labels, "state_machine": "kept"}) == 2
