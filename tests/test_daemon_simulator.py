"""The exporter against the simulator over HTTP, through faults: a throttling storm, 5xx
answers, connection resets, slow answers, a deleted execution, and a redrive."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from exporter.app import Hooks
from exporter.checkpoint import Cursor, CursorStore
from exporter.config import Config
from exporter.model import ExecutionIdentity
from exporter.translate import assemble
from simulator.stepfunctions import SimExecution, Simulator, SimulatorServer
from tests.harness import fast_config, isolate_aws_env, running_exporter, until
from tests.otlp_receiver import GrpcOtlpServer
from tests.truth import TARGET
from tests.workloads import moto_templates, redriven, waiter, waiter_definition


def scenario() -> tuple[Simulator, list[SimExecution], SimExecution, SimExecution]:
    """The moto recordings twice each, Wait loops, one redrive, one execution to delete."""
    sim = Simulator()
    rng = random.Random(7)
    executions = []
    for template in moto_templates():
        machine = sim.add_machine(template.name, {"StartAt": "X", "States": {}})
        for n in range(2):
            executions.append(
                sim.start(machine, template, f"{template.name}-{n}", start=sim.clock() + rng.uniform(0, 3))
            )
    loops = sim.add_machine("loops", waiter_definition(2))
    for n in range(6):
        template = waiter(rng, loops=3, wait_s=2, task_s=(0.2, 1.0))
        executions.append(sim.start(loops, template, f"loop-{n}", start=sim.clock() + rng.uniform(0, 2)))
    redrives = sim.add_machine("redrives", {"StartAt": "Charge", "States": {}})
    redrive = sim.start(redrives, redriven(fail_at_s=0.5, redrive_after_s=4.0), "r-1")
    doomed = sim.start(loops, waiter(rng, loops=50, wait_s=2, task_s=(0.2, 1.0)), "doomed")
    return sim, executions, redrive, doomed


async def test_the_exporter_rides_out_faults_and_follows_a_redrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_aws_env(monkeypatch)
    sim, executions, redrive, doomed = scenario()
    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
        config = Config.model_validate(
            fast_config(
                tmp_path, polling={"min_interval_seconds": 0.2, "max_interval_seconds": 1, "concurrency": 8}
            )
        )
        hooks = Hooks(handle_signals=False)
        async with running_exporter(config, hooks):
            await asyncio.sleep(1.5)
            sim.faults.throttle_until = sim.clock() + 2.0  # a throttling storm
            await asyncio.sleep(2.5)
            sim.faults.server_error_rate, sim.faults.reset_rate, sim.faults.slow_seconds = 0.2, 0.1, 0.05
            await asyncio.sleep(2.0)
            sim.faults.server_error_rate = sim.faults.reset_rate = sim.faults.slow_seconds = 0.0
            sim.delete_execution(doomed.arn)

            def expected(execution: object) -> set[str]:
                history = execution.history()  # type: ignore[attr-defined]
                return {
                    f"{s.span_id:016x}" for s in assemble(history, ExecutionIdentity.from_arn(execution.arn))
                }  # type: ignore[attr-defined]

            wanted = set().union(*(expected(e) for e in [*executions, redrive]))
            try:
                await until(lambda: wanted <= {s.span_id for s in otlp.receiver.snapshot()}, 90, "every span")
            except AssertionError:
                got = {s.span_id for s in otlp.receiver.snapshot()}
                missing = [
                    (e.arn, len(expected(e) - got)) for e in [*executions, redrive] if expected(e) - got
                ]
                raise AssertionError(f"missing: {missing}; tracked: {list(hooks.exporter.tracked)}") from None  # type: ignore[union-attr]
            await until(
                lambda: doomed.arn not in hooks.exporter.tracked, 30, "the deleted execution to be dropped"
            )  # type: ignore[union-attr]
    value = hooks.registry.get_sample_value

    def total(metric: str, **labels: str) -> float:
        return sum(
            sample.value
            for family in hooks.registry.collect()
            for sample in family.samples
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    assert total("sfn_exporter_api_throttles_total") >= 1
    assert total("sfn_exporter_api_calls_total", outcome="server_error") >= 1
    assert total("sfn_exporter_api_calls_total", outcome="network_error") >= 1
    names = {s.name for s in otlp.receiver.snapshot()}
    assert "redrives redrive" in names
    finished = {**TARGET, "state_machine": "redrives", "status": "FAILED"}
    assert value("sfn_executions_finished_total", finished) == 1
    assert value("sfn_executions_finished_total", {**TARGET, **finished, "status": "SUCCEEDED"}) == 1
    assert value("sfn_executions_redriven_total", {**TARGET, "state_machine": "redrives"}) == 1
    # the checkpoint knows of the redrive, so later listings do not read the execution again
    store = CursorStore(str(config.checkpoint.path))
    assert store.get(redrive.arn) == Cursor(len(redrive.history()), True, 1)
    store.close()
