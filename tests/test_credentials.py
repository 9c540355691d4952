"""A target's credentials through STS, against the simulator's AssumeRole and GetCallerIdentity:
the role's account is reached, credentials are renewed before they expire, a role that cannot
be assumed is a CredentialError naming it."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.app import Hooks
from exporter.aws.credentials import CredentialError, account_of, target_session
from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import aws_step_functions, client_config
from exporter.config import Config, Target
from exporter.emit.health import HealthMetrics
from exporter.logs import quiet_libraries
from simulator.stepfunctions import Simulator, SimulatorServer
from tests.harness import fast_config, running_exporter, until
from tests.otlp_receiver import GrpcOtlpServer
from tests.truth import span_ids, truth, workflow_counts
from tests.workloads import waiter, waiter_definition

ROLE = "arn:aws:iam::111111111111:role/sfn-exporter"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.harness import isolate_aws_env

    isolate_aws_env(monkeypatch)


async def test_a_role_reaches_its_account_and_is_renewed_before_it_expires(
    aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    home, other = Simulator(), Simulator(account="111111111111")
    home.add_machine("home-machine", {"StartAt": "x", "States": {}})
    other.add_machine("other-machine", {"StartAt": "x", "States": {}})
    caplog.set_level(logging.DEBUG)
    quiet_libraries()  # as `run` sets it up: the AWS SDK's body dumps stay off at debug
    with SimulatorServer(home, others=[other], roles={ROLE}) as server:
        config = client_config(5, 5, 2)
        ambient = Target()
        assert await account_of(target_session(ambient, "us-east-1", server.endpoint), ambient, "us-east-1", config,
                                server.endpoint) == "123456789012"  # fmt: skip
        # credentials of 900 s are inside the 15-minute renewal window at once: each use renews them
        role = Target(role_arn=ROLE, external_id="example", duration_seconds=900)
        session = target_session(role, "us-east-1", server.endpoint)
        assert await account_of(session, role, "us-east-1", config, server.endpoint) == "111111111111"
        limiter = RateLimiter({"ListStateMachines": (100, 100)})
        health = HealthMetrics(CollectorRegistry()).target("111111111111", "us-east-1")
        async with aws_step_functions("us-east-1", server.endpoint, limiter, health, session=session) as api:
            for _ in range(2):
                listed, _ = await api.list_state_machines()
                assert [m.name for m in listed] == [
                    "other-machine"
                ]  # the role's account, not the ambient one
        assert server.sts_calls["123456789012"] >= 3  # GetCallerIdentity, then AssumeRole, renewed
    secrets = [r.getMessage() for r in caplog.records if "ASIASIM" in r.getMessage()]
    assert not secrets  # the role's keys are never logged


async def test_a_role_that_cannot_be_assumed_is_an_error_naming_it(aws_env: None) -> None:
    with SimulatorServer(Simulator(), roles=set()) as server:
        role = Target(role_arn="arn:aws:iam::333333333333:role/missing")
        session = target_session(role, "eu-west-1", server.endpoint)
        with pytest.raises(
            CredentialError, match=r"arn:aws:iam::333333333333:role/missing in eu-west-1: AccessDenied"
        ):
            await account_of(session, role, "eu-west-1", client_config(5, 5, 2), server.endpoint)


async def test_the_same_account_twice_is_read_once(
    aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A role into the ambient credentials' own account, in the same region: one of the two is
    read, the other refused with an error (reading both would count every execution twice)."""
    sim = Simulator()
    machine = sim.add_machine("loops", waiter_definition(1))
    executions = [sim.start(machine, waiter(random.Random(n), 2, 1, (0.1, 0.2)), f"l-{n}", start=sim.clock() + 0.5)
                  for n in range(3)]  # fmt: skip
    same = "arn:aws:iam::123456789012:role/sfn-exporter"
    with SimulatorServer(sim, roles={same}) as server, GrpcOtlpServer() as otlp:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", server.endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", server.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)
        config = Config.model_validate(fast_config(tmp_path))
        config = config.model_copy(update={"targets": [Target(regions=["us-east-1"]), Target(role_arn=same)]})
        hooks = Hooks(handle_signals=False)
        async with running_exporter(config, hooks):
            await until(lambda: span_ids(executions) <= {int(s.span_id, 16) for s in otlp.receiver.snapshot()},
                        30, "every span")  # fmt: skip
            await until(lambda: hooks.exporter is not None and hooks.exporter.ready, 30, "readiness")
        assert len(hooks.exporters) == 1
        sent = [s.span_id for s in otlp.receiver.snapshot()]
        assert len(sent) == len(set(sent))
        assert workflow_counts(hooks.registry) == truth(executions)
    assert "is already a target; this one is not read" in caplog.text
