"""Wiring: builds the exporter's parts from a Config and runs them until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import StepFunctionsApi, aws_cloudwatch_logs, aws_step_functions
from exporter.checkpoint import CursorStore
from exporter.config import DEFAULT_QUOTAS, Config, ConfigError
from exporter.daemon import Exporter, Tracked
from exporter.emit.health import HealthMetrics
from exporter.emit.metrics import WorkflowMetrics
from exporter.emit.otlp import make_span_exporter
from exporter.emit.sinks import SpanSink
from exporter.emit.web import make_app, serve
from exporter.emit.webconfig import WebConfigError, WebGuard, load_web_config
from exporter.model import SpanRecord
from exporter.preflight import effective_region

log = logging.getLogger(__name__)


@dataclass
class Hooks:
    """For tests and the demo: where the exporter is, and what it emitted."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    handle_signals: bool = True
    on_listening: Callable[[int], None] | None = None
    on_spans: Callable[[Tracked, list[SpanRecord]], None] | None = None
    wrap_api: Callable[[StepFunctionsApi], StepFunctionsApi] | None = None  # fault injection
    exporter: Exporter | None = None


async def run_exporter(config: Config, hooks: Hooks | None = None) -> int:
    """Run until stopped; 0 after a clean shutdown."""
    from botocore.exceptions import NoRegionError

    hooks = hooks or Hooks()
    registry = hooks.registry
    health = HealthMetrics(registry)
    workflow = WorkflowMetrics(registry)
    quotas = {op: config.quota(op) for op in DEFAULT_QUOTAS}
    limiter = RateLimiter({op: (q.bucket, q.refill_per_second) for op, q in quotas.items()})
    for op, quota in quotas.items():
        health.api_rate.labels(op).set(quota.refill_per_second)
    store = CursorStore(config.checkpoint.path)  # first: an unusable checkpoint stops the start here
    otlp = config.otlp
    span_exporter = (
        make_span_exporter(otlp.endpoint, otlp.protocol, otlp.timeout_seconds)
        if otlp.exporting(os.environ)
        else None
    )
    sink = SpanSink(span_exporter, health, otlp.batch_max_spans, otlp.batch_linger_seconds)
    sink.start()
    loop = asyncio.get_running_loop()
    if hooks.handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, hooks.stop.set)
    runner = None
    try:
        # botocore reads AWS_DEFAULT_REGION and profiles; the SDKs' newer AWS_REGION is read here.
        region, _ = effective_region(config, os.environ)
        async with aws_step_functions(
            region, config.aws.endpoint_url, limiter, health,
            connect_timeout=config.aws.connect_timeout_seconds, read_timeout=config.aws.read_timeout_seconds,
            max_connections=max(10, config.polling.concurrency + 4),
        ) as aws, aws_cloudwatch_logs(
            region, config.aws.logs_endpoint_url, limiter, health,
            connect_timeout=config.aws.connect_timeout_seconds, read_timeout=config.aws.read_timeout_seconds,
        ) as logs:  # fmt: skip
            api: StepFunctionsApi = hooks.wrap_api(aws) if hooks.wrap_api else aws
            exporter = Exporter(
                config, api, store, sink, workflow, health, on_spans=hooks.on_spans,
                budget=lambda: limiter.rate("GetExecutionHistory"), logs_api=logs,
                log_calls_spare=lambda: limiter.spare("FilterLogEvents"),
            )  # fmt: skip
            hooks.exporter = exporter
            runner, bound = await _serve_web(config, registry, lambda: exporter.ready)
            if hooks.on_listening is not None:
                hooks.on_listening(bound)
            await exporter.run(hooks.stop)
            remaining = max(1.0, config.shutdown.grace_period_seconds - exporter.seconds_since_stop())
            await sink.close(remaining)
    except NoRegionError:
        raise ConfigError("aws.region: no AWS region: set AWS_REGION, or aws.region in the config") from None
    finally:
        if runner is not None:
            await runner.cleanup()
        store.close()
        if hooks.handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    log.info("stopped")
    return 0


async def _serve_web(
    config: Config, registry: CollectorRegistry, ready: Callable[[], bool]
) -> tuple[web.AppRunner, int]:
    """The endpoints, behind the web configuration file when one is given."""
    host, port = config.web.host_port
    try:
        guard = WebGuard(
            load_web_config(config.web.config_file) if config.web.config_file else None,
            on_error=lambda exc: log.warning("web configuration not reloaded: %s", exc),
        )
        runner, bound = await serve(
            make_app(registry, config.web.telemetry_path, ready, guard), host, port, guard.ssl_context
        )
    except WebConfigError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(
            f"web.listen_address: {config.web.listen_address!r}: cannot listen: {reason}"
        ) from None
    scheme = "https" if guard.ssl_context else "http"
    log.info("serving %s, /healthz and /readyz on %s://%s:%d", config.web.telemetry_path, scheme, host, bound)
    return runner, bound
