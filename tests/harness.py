"""Real components for daemon tests: the exporter as a process, sample workloads on moto."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Hooks, run_exporter
from exporter.config import Config
from exporter.demo.samples import ROLE_ARN, SAMPLES
from exporter.model import ExecutionIdentity, SpanRecord
from exporter.translate import assemble
from tests.moto_server import free_port

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@asynccontextmanager
async def running_exporter(config: Config, hooks: Hooks) -> AsyncIterator[asyncio.Task[int]]:
    """The exporter in this event loop for the block; then stopped, and it must exit 0."""
    task = asyncio.create_task(run_exporter(config, hooks))
    try:
        yield task
    finally:
        hooks.stop.set()
        assert await asyncio.wait_for(task, 30) == 0


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def fast_config(tmp: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """Quick intervals for tests; sections override."""
    config: dict[str, Any] = {
        "discovery": {
            "executions_interval_seconds": 1,
            "state_machines_interval_seconds": 2,
            "lookback_seconds": 600,
        },
        "polling": {"min_interval_seconds": 0.3, "max_interval_seconds": 2, "concurrency": 4},
        "checkpoint": {"path": str(tmp / "checkpoint.sqlite")},
        "otlp": {"batch_linger_seconds": 0.05, "timeout_seconds": 5},
        "web": {"listen_address": f"127.0.0.1:{free_port()}"},
        "shutdown": {"grace_period_seconds": 10},
        "log": {"level": "info", "format": "json"},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


class ExporterProcess:
    """`sfn-exporter run` as a subprocess, with its log in a file."""

    def __init__(
        self, tmp: Path, config: dict[str, Any], moto_endpoint: str, otlp_endpoint: str | None
    ) -> None:
        self.tmp = tmp
        self.config_path = tmp / f"config-{uuid.uuid4().hex[:6]}.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.listen = config["web"]["listen_address"]
        self.log_path = tmp / f"exporter-{uuid.uuid4().hex[:6]}.log"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTEL_", "SFN_EXPORTER_"))
        }
        self.env.update(CREDENTIALS, AWS_ENDPOINT_URL_SFN=moto_endpoint, AWS_ENDPOINT_URL_STS=moto_endpoint)
        if otlp_endpoint:
            self.env.update(OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def start(self) -> ExporterProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
        )  # fmt: skip
        wait_until(self._healthy, 30, f"the exporter to serve /healthz (log: {self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the exporter exited {self.process.returncode}: {self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, by (name, sorted labels)."""
        _, text = self.get("/metrics")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout_s)
        self._log.close()
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()


class Workload:
    """Deploys sample workflows on moto and starts executions of them."""

    def __init__(
        self, endpoint: str, region: str = "us-east-1", credentials: dict[str, str] | None = None
    ) -> None:
        keys = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.client = boto3.client("stepfunctions", endpoint_url=endpoint, region_name=region, **keys)
        self.machines: dict[str, str] = {}
        self.executions: list[str] = []

    def deploy(self, names: list[str] | None = None) -> None:
        for sample in SAMPLES:
            if names is None or sample.name in names:
                arn = self.client.create_state_machine(
                    name=sample.name, definition=sample.definition_json, roleArn=ROLE_ARN
                )
                self.machines[sample.name] = arn["stateMachineArn"]

    def start(self, name: str) -> str:
        sample = next(s for s in SAMPLES if s.name == name)
        arn = self.client.start_execution(
            stateMachineArn=self.machines[name], name=f"{name}-{len(self.executions):03d}-{uuid.uuid4().hex[:6]}",
            input=json.dumps(sample.input),
        )["executionArn"]  # fmt: skip
        self.executions.append(arn)
        return str(arn)

    def status(self, arn: str) -> str:
        return str(self.client.describe_execution(executionArn=arn)["status"])

    def all_finished(self) -> bool:
        return all(self.status(arn) != "RUNNING" for arn in self.executions)

    def history(self, arn: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("get_execution_history").paginate(executionArn=arn, maxResults=1000)
        events = [event for page in pages for event in page["events"]]
        return json.loads(json.dumps(events, default=lambda v: v.isoformat()))

    def expected_spans(self, arn: str) -> list[SpanRecord]:
        return assemble(self.history(arn), ExecutionIdentity.from_arn(arn))


async def until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Waits in the event loop (the exporter runs in it) until `condition()` holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def isolate_aws_env(monkeypatch: Any) -> None:
    """No AWS, OTEL or SFN_EXPORTER_ setting of the machine's; test credentials and region."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "OTEL_", "SFN_EXPORTER_")):
            monkeypatch.delenv(key)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
