"""`sfn-exporter demo`: the real exporter against an embedded emulator, traces drawn as they end."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import defaultdict

from exporter.app import Hooks, run_exporter, tune_garbage_collector
from exporter.config import Config
from exporter.daemon import Tracked
from exporter.demo.emulator import CREDENTIALS, REGION, Workload, embedded_step_functions
from exporter.logs import setup_logging
from exporter.model import SpanKind, SpanRecord
from exporter.translate import render_tree


def demo_config(config: Config, endpoint: str) -> Config:
    """The user's configuration, pointed at the emulator, with quick intervals where unset."""

    def unless_set(section: str, **values: object) -> dict[str, object]:
        chosen = getattr(config, section)
        return {key: value for key, value in values.items() if key not in chosen.model_fields_set}

    otlp_endpoint = (
        config.otlp.endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    updates = {
        "aws": config.aws.model_copy(
            update={
                "endpoint_url": endpoint,
                "logs_endpoint_url": endpoint,
                "sts_endpoint_url": endpoint,
                "region": REGION,
            }
        ),
        "logs": config.logs.model_copy(update=unless_set("logs", interval_seconds=1.0, overlap_seconds=5.0)),
        "discovery": config.discovery.model_copy(
            update=unless_set(
                "discovery", executions_interval_seconds=2.0, state_machines_interval_seconds=30.0
            )
        ),
        "polling": config.polling.model_copy(
            update=unless_set("polling", min_interval_seconds=0.5, max_interval_seconds=3.0)
        ),
        "checkpoint": config.checkpoint.model_copy(update=unless_set("checkpoint", path=":memory:")),
        "otlp": config.otlp.model_copy(update=unless_set("otlp", enabled=bool(otlp_endpoint))),
        "web": config.web.model_copy(update=unless_set("web", listen_address="127.0.0.1:9810")),
        "log": config.log.model_copy(update=unless_set("log", level="warning")),
    }
    return config.model_copy(update=updates)


def run_demo(config: Config, interval_s: float, duration_s: float, color: bool) -> int:
    # The emulator takes any credentials; never hand it real ones.
    os.environ.update({"AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"]})  # fmt: skip
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    with embedded_step_functions() as endpoint:
        config = demo_config(config, endpoint)
        setup_logging(config.log.format, config.log.level)
        workload = Workload(endpoint, interval_s=interval_s)
        workload.deploy()
        spans_by_execution: dict[str, list[SpanRecord]] = defaultdict(list)

        def show(tracked: Tracked, spans: list[SpanRecord]) -> None:
            collected = spans_by_execution[tracked.arn]
            collected.extend(spans)
            if any(s.kind == SpanKind.EXECUTION and s.opening_event_id == 1 for s in spans):
                root = next(s for s in collected if s.opening_event_id == 1 and s.kind == SpanKind.EXECUTION)
                outcome = str(root.attributes.get("sfn.outcome", "")).upper()
                print(f"\n{tracked.identity.state_machine_name}/{tracked.identity.execution_name}  {outcome}")
                sys.stdout.write(render_tree(collected, width=110, color=color))
                sys.stdout.flush()
                del spans_by_execution[tracked.arn]

        def listening(port: int) -> None:
            host = config.web.host_port[0]
            otlp = (
                config.otlp.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                if config.otlp.exporting(os.environ)
                else "off"
            )
            print(f"Step Functions emulator: {endpoint} (sample workflows: {', '.join(workload.machines)})")
            print(f"metrics: http://{host}:{port}{config.web.telemetry_path}   OTLP: {otlp}")
            print(
                f"starting an execution every {interval_s:g}s; traces appear below as executions end (Ctrl-C stops)"
            )
            sys.stdout.flush()
            workload.start()

        hooks = Hooks(on_spans=show, on_listening=listening)

        async def main() -> int:
            if duration_s:
                asyncio.get_running_loop().call_later(duration_s, hooks.stop.set)
            return await run_exporter(config, hooks)

        tune_garbage_collector()  # as `run` does
        try:
            return asyncio.run(main())
        finally:
            workload.stop()
