"""The exporter in this process, against moto, with faults put between it and the API."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter.app import Hooks
from exporter.aws.source import Denied, HistoryPage, InvalidToken, StepFunctionsApi
from exporter.config import Config
from tests.harness import CREDENTIALS, Workload, fast_config, running_exporter, until
from tests.moto_server import MotoServer
from tests.otlp_receiver import GrpcOtlpServer
from tests.truth import TARGET


class FaultyApi:
    """Passes calls to the real API, except those the test breaks."""

    def __init__(self, inner: StepFunctionsApi) -> None:
        self.inner = inner
        self.denied_machines: set[str] = set()
        self.expire_tokens = 0  # answer this many paged history reads with InvalidToken
        self.history_calls: list[tuple[str, bool, int, str | None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self, arn: str, operation: str) -> None:
        machine = arn.split(":")[6]
        if any(denied.endswith(f":{machine}") for denied in self.denied_machines):
            raise Denied(operation, "AccessDeniedException", f"not allowed on {arn}")

    async def list_executions(self, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        self._check(state_machine_arn, "ListExecutions")
        return await self.inner.list_executions(state_machine_arn, *args, **kwargs)

    async def history_page(self, arn: str, **kwargs: Any) -> HistoryPage:
        self._check(arn, "GetExecutionHistory")
        self.history_calls.append((arn, kwargs["reverse"], kwargs["max_results"], kwargs["next_token"]))
        if kwargs["next_token"] and self.expire_tokens > 0:
            self.expire_tokens -= 1
            raise InvalidToken("GetExecutionHistory", "InvalidToken", "expired")
        return await self.inner.history_page(arn, **kwargs)


@pytest.fixture
async def environment(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[MotoServer, GrpcOtlpServer]]:
    for key in list(os.environ):
        if key.startswith(("AWS_", "OTEL_", "SFN_EXPORTER_")):
            monkeypatch.delenv(key)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    with MotoServer() as moto, GrpcOtlpServer() as otlp:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", moto.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
        yield moto, otlp


def spans_of(workload: Workload, arns: list[str]) -> set[str]:
    return {f"{s.span_id:016x}" for arn in arns for s in workload.expected_spans(arn)}


async def test_one_broken_state_machine_does_not_stop_the_others(
    environment: tuple[MotoServer, GrpcOtlpServer], tmp_path: Path
) -> None:
    moto, otlp = environment
    workload = Workload(moto.endpoint)
    workload.deploy(["parallel-fanout", "always-fails", "long-wait"])
    express = workload.client.create_state_machine(
        name="fire-and-forget", definition='{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}',
        roleArn="arn:aws:iam::123456789012:role/r", type="EXPRESS",
    )["stateMachineArn"]  # fmt: skip
    denied = workload.machines["always-fails"]
    good = [workload.start("parallel-fanout") for _ in range(3)]
    workload.start("always-fails")
    doomed = workload.start("long-wait")
    faulty: FaultyApi | None = None

    def wrap(api: StepFunctionsApi) -> StepFunctionsApi:
        nonlocal faulty
        faulty = FaultyApi(api)
        faulty.denied_machines.add(denied)
        return faulty  # type: ignore[return-value]

    hooks = Hooks(handle_signals=False, wrap_api=wrap)
    config = Config.model_validate(fast_config(tmp_path))
    async with running_exporter(config, hooks):
        await until(
            lambda: hooks.exporter is not None and hooks.exporter.discovery.completed_pass,
            30,
            "a discovery pass",
        )
        # the deleted one: its executions and listings now answer "does not exist"
        await asyncio.to_thread(
            workload.client.delete_state_machine, stateMachineArn=workload.machines["long-wait"]
        )
        good += [await asyncio.to_thread(workload.start, "parallel-fanout") for _ in range(3)]
        await until(
            lambda: spans_of(workload, good) <= {s.span_id for s in otlp.receiver.snapshot()},
            60,
            "the good spans",
        )
        registry = hooks.registry
        value = registry.get_sample_value
        assert value("sfn_exporter_discovery_errors_total", {**TARGET, "operation": "ListExecutions"}) >= 1
        assert value("sfn_exporter_state_machines", {**TARGET, "status": "failing"}) == 1
        # moto's EXPRESS state machine has no loggingConfiguration: skipped, with that reason
        assert value("sfn_exporter_state_machines", {**TARGET, "status": "skipped_express_not_logging"}) == 1
        assert (
            value(
                "sfn_exporter_api_calls_total",
                {**TARGET, "operation": "ListExecutions", "outcome": "success"},
            )
            >= 3
        )
        assert express not in hooks.exporter.discovery.machines  # type: ignore[union-attr]
        assert hooks.exporter.ready  # type: ignore[union-attr]
        await until(
            lambda: doomed not in hooks.exporter.tracked, 30, "the deleted machine's execution to be dropped"
        )  # type: ignore[union-attr]


async def test_a_poll_with_new_events_costs_one_call_and_expired_tokens_restart_the_read(
    environment: tuple[MotoServer, GrpcOtlpServer], tmp_path: Path
) -> None:
    moto, otlp = environment
    workload = Workload(moto.endpoint)
    workload.deploy(["map-concurrency", "long-wait"])
    faulty: FaultyApi | None = None

    def wrap(api: StepFunctionsApi) -> StepFunctionsApi:
        nonlocal faulty
        faulty = FaultyApi(api)
        faulty.expire_tokens = 2
        return faulty  # type: ignore[return-value]

    # small pages, so that a first read of a whole history needs several pages (and tokens)
    config = Config.model_validate(
        fast_config(tmp_path, polling={"page_size": 5, "min_interval_seconds": 0.2})
    )
    hooks = Hooks(handle_signals=False, wrap_api=wrap)
    async with running_exporter(config, hooks):
        arns = [await asyncio.to_thread(workload.start, "long-wait") for _ in range(2)]
        arns.append(await asyncio.to_thread(workload.start, "map-concurrency"))
        await until(
            lambda: spans_of(workload, arns) <= {s.span_id for s in otlp.receiver.snapshot()}, 60, "all spans"
        )
    assert faulty is not None and faulty.expire_tokens == 0
    # Every call is newest first; a poll reads on (with a token) only when a page was all new.
    assert all(reverse for _, reverse, _, _ in faulty.history_calls)
    first_pages = [call for call in faulty.history_calls if call[3] is None]
    continued = [call for call in faulty.history_calls if call[3] is not None]
    assert all(size == 1000 for _, _, size, _ in continued)
    long_wait_calls = [call for call in faulty.history_calls if call[0] in arns[:2]]
    assert len(long_wait_calls) <= 12, long_wait_calls  # 8 events each, polled while they run
    assert len(first_pages) >= len(arns)


async def test_execution_data_is_captured_redacted_and_sent_over_http(
    environment: tuple[MotoServer, GrpcOtlpServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.otlp_receiver import HttpOtlpServer

    moto, _ = environment
    workload = Workload(moto.endpoint)
    workload.deploy(["map-concurrency"])
    with HttpOtlpServer() as http:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "payments-workflows")
        config = Config.model_validate(
            fast_config(
                tmp_path,
                data={"include_execution_data": True, "redact_paths": ["$.items[1]"], "max_bytes": 64},
            )
        )
        hooks = Hooks(handle_signals=False)
        async with running_exporter(config, hooks):
            arn = await asyncio.to_thread(workload.start, "map-concurrency")
            wanted = spans_of(workload, [arn])
            await until(
                lambda: wanted <= {s.span_id for s in http.receiver.snapshot()}, 60, "the spans over HTTP"
            )
        root = next(s for s in http.receiver.snapshot() if s.parent_span_id is None)
    assert root.attributes["sfn.execution.input"] == '{"items":[1,"[REDACTED]",3,4]}'
    assert root.resource["service.name"] == "payments-workflows"


async def test_readyz_waits_for_the_first_discovery_pass(
    environment: tuple[MotoServer, GrpcOtlpServer], tmp_path: Path
) -> None:
    import aiohttp

    release = asyncio.Event()

    class SlowApi(FaultyApi):
        async def list_state_machines(self, next_token: str | None = None) -> Any:
            await release.wait()
            return await self.inner.list_state_machines(next_token)

    ports: list[int] = []
    config = Config.model_validate(fast_config(tmp_path, web={"listen_address": "127.0.0.1:0"}))
    hooks = Hooks(handle_signals=False, wrap_api=SlowApi, on_listening=ports.append)  # type: ignore[arg-type,return-value]
    async with running_exporter(config, hooks):
        await until(lambda: bool(ports), 30, "the web server")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{ports[0]}/healthz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{ports[0]}/readyz") as response:
                assert response.status == 503
            release.set()
            await until(lambda: hooks.exporter is not None and hooks.exporter.ready, 30, "readiness")
            async with session.get(f"http://127.0.0.1:{ports[0]}/readyz") as response:
                assert response.status == 200
            async with session.get(
                f"http://127.0.0.1:{ports[0]}/metrics", headers={"Accept": "application/openmetrics-text"}
            ) as response:
                assert response.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await response.text()).rstrip().endswith("# EOF")


async def test_state_machines_are_chosen_by_name_and_tags(
    environment: tuple[MotoServer, GrpcOtlpServer], tmp_path: Path
) -> None:
    moto, _ = environment
    workload = Workload(moto.endpoint)
    definition = '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}'
    role = "arn:aws:iam::123456789012:role/r"
    for name, team in (
        ("orders-main", "payments"),
        ("orders-test", "payments"),
        ("orders-other", "search"),
        ("billing", "payments"),
    ):
        workload.client.create_state_machine(
            name=name, definition=definition, roleArn=role, tags=[{"key": "team", "value": team}]
        )
    config = Config.model_validate(
        fast_config(
            tmp_path,
            state_machines={
                "name_pattern": "^orders-",
                "exclude_pattern": "-test$",
                "tags": {"team": "payments"},
            },
        )
    )
    hooks = Hooks(handle_signals=False)
    async with running_exporter(config, hooks):
        await until(
            lambda: hooks.exporter is not None and hooks.exporter.discovery.completed_pass,
            30,
            "a discovery pass",
        )
        watched = sorted(w.machine.name for w in hooks.exporter.discovery.machines.values())  # type: ignore[union-attr]
        assert watched == ["orders-main"]
        # orders-test and billing by name, orders-other by its tag
        assert (
            hooks.registry.get_sample_value(
                "sfn_exporter_state_machines", {**TARGET, "status": "filtered_out"}
            )
            == 3
        )
        # tags change: the next refresh of the state machines sees it
        other = "arn:aws:states:us-east-1:123456789012:stateMachine:orders-other"
        await asyncio.to_thread(
            workload.client.tag_resource, resourceArn=other, tags=[{"key": "team", "value": "payments"}]
        )
        await until(lambda: other in hooks.exporter.discovery.machines, 30, "the retagged state machine")  # type: ignore[union-attr]
