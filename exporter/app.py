"""Wiring: builds the exporter's parts from a Config and runs them until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.aws.credentials import CredentialError, account_of, target_session
from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import StepFunctionsApi, aws_cloudwatch_logs, aws_step_functions, client_config
from exporter.checkpoint import CursorStore
from exporter.config import DEFAULT_QUOTAS, Config, ConfigError, Target
from exporter.daemon import Exporter, Tracked
from exporter.emit.health import HealthMetrics, TargetHealth
from exporter.emit.metrics import WorkflowMetrics
from exporter.emit.otlp import make_span_exporter
from exporter.emit.sinks import SpanSink
from exporter.emit.web import make_app, serve
from exporter.emit.webconfig import WebConfigError, WebGuard, load_web_config
from exporter.model import SpanRecord
from exporter.preflight import effective_region
from exporter.shards import Layout

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
    exporter: Exporter | None = None  # the first target's
    exporters: dict[tuple[str, str], Exporter] = field(default_factory=dict)  # by (account, region)


# Young collections every this many container objects allocated and not yet freed (Python's
# default is 700); the older generations keep their default ratios.
GC_YOUNG_THRESHOLD = 100_000


def tune_garbage_collector() -> None:
    """Fewer collections of the young generation, for a process that keeps many objects alive.

    Each young collection that finds survivors brings an old one closer, and an old one walks every
    object the process holds (botocore's service models, every tracked execution's spans): at the
    default threshold of 700 those walks took a third of the exporter's time (`bench.throughput`,
    which says so with `--gc-default`). At 10,000 the young collections themselves still took 6
    to 12% of the log path's time, walking pages of records still in use: at 100,000 most of what
    a page made is freed (by reference counting) before a collection comes. Garbage that
    forms cycles waits longer (at most 100,000 objects more per generation) before it is
    freed; the exporter makes little of it (`python_gc_objects_collected_total`)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


# A target whose credentials cannot be had is tried again after this back-off, doubled up to the cap.
CREDENTIAL_RETRY_SECONDS = (5.0, 300.0)


@dataclass
class Unit:
    """One account in one region: its own clients, rate limiter, discovery and polling."""

    target: Target
    region: str
    account: str | None = None  # known once its credentials work
    exporter: Exporter | None = None
    failing: bool = False  # its credentials could not be had at the last try

    @property
    def name(self) -> str:
        return f"{self.target.role_arn or 'ambient credentials'} in {self.region}"


def units(config: Config, default_region: str | None) -> list[Unit]:
    """Every (target, region) of the configuration; none listed: the ambient credentials in the
    default region, with the top-level state machine filter."""
    targets = config.targets or [Target()]
    found = []
    for index, target in enumerate(targets):
        regions = target.regions or ([default_region] if default_region else [])
        if not regions:
            where = f"targets.{index}.regions" if config.targets else "aws.region"
            raise ConfigError(f"{where}: no AWS region: set AWS_REGION, aws.region, or the target's regions")
        found += [Unit(target, region) for region in regions]
    return found


async def run_exporter(config: Config, hooks: Hooks | None = None) -> int:
    """Run until stopped; 0 after a clean shutdown."""
    hooks = hooks or Hooks()
    registry = hooks.registry
    health = HealthMetrics(registry)
    workflow = WorkflowMetrics(registry)
    # botocore reads AWS_DEFAULT_REGION and profiles; the SDKs' newer AWS_REGION is read here.
    region, _ = effective_region(config, os.environ)
    fleet = units(config, region)
    shard = config.sharding.resolve(os.environ, socket.gethostname())
    store = CursorStore(config.checkpoint.path)  # first: an unusable checkpoint stops the start here
    runner = None
    loop = asyncio.get_running_loop()
    try:
        layout = store.layout(shard, config.sharding.total_shards)
        if layout.total > 1:
            log.info("shard %d of %d", layout.shard, layout.total)
        otlp = config.otlp
        span_exporter = (
            make_span_exporter(otlp.endpoint, otlp.protocol, otlp.timeout_seconds)
            if otlp.exporting(os.environ)
            else None
        )
        sink = SpanSink(span_exporter, health, otlp.batch_max_spans, otlp.batch_linger_seconds)
        sink.start()
        if hooks.handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, hooks.stop.set)
        runner, bound = await _serve_web(config, registry, lambda: _ready(fleet))
        if hooks.on_listening is not None:
            hooks.on_listening(bound)
        limiters: dict[tuple[str, str], RateLimiter] = {}
        parts = _Parts(config, health, workflow, store, sink, layout, limiters, hooks)

        async def guarded(unit: Unit) -> None:
            try:
                await _run_unit(unit, parts)
            except BaseException:  # the others stop too: a process missing a target must say so
                hooks.stop.set()
                raise

        outcomes = await asyncio.gather(*(guarded(unit) for unit in fleet), return_exceptions=True)
        stopped = [u.exporter.seconds_since_stop() for u in fleet if u.exporter is not None]
        await sink.close(max(1.0, config.shutdown.grace_period_seconds - max(stopped, default=0.0)))
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    finally:
        if runner is not None:
            await runner.cleanup()
        store.close()
        if hooks.handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    log.info("stopped")
    return 0


def _ready(fleet: list[Unit]) -> bool:
    """Every target is running and ready, or failing on its credentials (counted and retried:
    one missing role must not keep the others' pod out of service), and at least one is ready."""
    ready = [u.exporter is not None and u.exporter.ready for u in fleet]
    return any(ready) and all(r or u.failing for r, u in zip(ready, fleet, strict=True))


@dataclass
class _Parts:
    """What the targets of one process share."""

    config: Config
    health: HealthMetrics
    workflow: WorkflowMetrics
    store: CursorStore
    sink: SpanSink
    layout: Layout
    limiters: dict[tuple[str, str], RateLimiter]  # by (account, region): AWS's quotas are
    hooks: Hooks


async def _run_unit(unit: Unit, parts: _Parts) -> None:
    """One target, until the process stops: its credentials (retried with back-off while they
    fail), then its exporter."""
    config, hooks = parts.config, parts.hooks
    aws = config.aws
    session = target_session(unit.target, unit.region, aws.sts_endpoint_url)
    sts_config = client_config(aws.connect_timeout_seconds, aws.read_timeout_seconds, 2)
    delay, cap = CREDENTIAL_RETRY_SECONDS
    failing: TargetHealth | None = None  # a role's metrics while it cannot be assumed (its account is known)
    while unit.account is None:
        try:
            unit.account = await account_of(
                session, unit.target, unit.region, sts_config, aws.sts_endpoint_url
            )
        except CredentialError as exc:
            if unit.target.role_arn is None:  # the ambient account stays unnamed; the calls go on
                log.warning(
                    'cannot tell the account of the ambient credentials (%s); its metrics say account=""', exc
                )
                unit.account = ""
                break
            unit.failing = True
            failing = failing or parts.health.target(unit.target.account or "", unit.region)
            failing.credential_errors.inc()
            failing.up.set(0)
            log.error("target %s: cannot assume the role: %s; trying again in %.0fs", unit.name, exc, delay)
            try:
                await asyncio.wait_for(hooks.stop.wait(), delay)
                return
            except TimeoutError:
                delay = min(cap, delay * 2)
    unit.failing = False
    if (unit.account, unit.region) in parts.limiters:
        # the same account twice (its role and the ambient credentials, say): read once
        log.error(
            "target %s: account %s in %s is already a target; this one is not read (it would export "
            "and count every execution twice)", unit.name, unit.account, unit.region,
        )  # fmt: skip
        unit.failing = True
        return
    health = parts.health.target(unit.account, unit.region)
    health.up.set(1)
    quotas = {op: config.quota(op) for op in DEFAULT_QUOTAS}
    limiter = RateLimiter({op: (q.bucket, q.refill_per_second) for op, q in quotas.items()})
    parts.limiters[(unit.account, unit.region)] = limiter
    for op, quota in quotas.items():
        health.api_rate.labels(op).set(quota.refill_per_second)
    unit_config = config
    if unit.target.state_machines is not None:
        unit_config = config.model_copy(update={"state_machines": unit.target.state_machines})
    async with aws_step_functions(
        unit.region, aws.endpoint_url, limiter, health, session=session,
        connect_timeout=aws.connect_timeout_seconds, read_timeout=aws.read_timeout_seconds,
        max_connections=max(10, config.polling.concurrency + 4),
    ) as sfn, aws_cloudwatch_logs(
        unit.region, aws.logs_endpoint_url, limiter, health, session=session,
        connect_timeout=aws.connect_timeout_seconds, read_timeout=aws.read_timeout_seconds,
    ) as logs:  # fmt: skip
        api: StepFunctionsApi = hooks.wrap_api(sfn) if hooks.wrap_api else sfn
        exporter = Exporter(
            unit_config, api, parts.store, parts.sink, parts.workflow.for_target(unit.account, unit.region),
            health, on_spans=hooks.on_spans, budget=lambda: limiter.rate("GetExecutionHistory"),
            limiter=limiter,
            logs_api=logs, log_calls_spare=lambda: limiter.spare("FilterLogEvents"), layout=parts.layout,
        )  # fmt: skip
        unit.exporter = exporter
        hooks.exporters[(unit.account, unit.region)] = exporter
        if hooks.exporter is None:
            hooks.exporter = exporter
        await exporter.run(hooks.stop)


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
