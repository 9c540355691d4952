"""The exporter's own metrics: API calls, throttles, lag, tracked executions, exports, checkpoints."""

from __future__ import annotations

import os
import platform
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from exporter import __version__


def revision() -> str:
    """The source revision this build came from: SFN_EXPORTER_REVISION (the image sets it from
    its build argument), else "unknown"."""
    return os.environ.get("SFN_EXPORTER_REVISION") or "unknown"


LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class HealthMetrics:
    """All `sfn_exporter_*` metrics, in an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # Counters without their `_created` twins: half the series, as most exporters do.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=r)  # python_info
        GCCollector(registry=r)  # python_gc_collections_total, ... (see app.tune_garbage_collector)
        self.build_info = Info(
            "sfn_exporter_build", "Version, source revision and Python version of this exporter.", registry=r
        )
        self.build_info.info(
            {"version": __version__, "revision": revision(), "python_version": platform.python_version()}
        )
        self.api_calls = Counter(
            "sfn_exporter_api_calls", "AWS API calls, by operation and outcome (success, throttled, client_error, server_error, network_error, invalid_response).",
            ["account", "region", "operation", "outcome"], registry=r,
        )  # fmt: skip
        self.api_throttles = Counter(
            "sfn_exporter_api_throttles",
            "ThrottlingException answers, by operation.",
            ["account", "region", "operation"],
            registry=r,
        )
        self.api_rate = Gauge(
            "sfn_exporter_api_rate_limit", "Calls per second this exporter currently allows itself, by operation.",
            ["account", "region", "operation"], registry=r,
        )  # fmt: skip
        self.history_bytes = Counter(
            "sfn_exporter_history_response_bytes", "Bytes of GetExecutionHistory responses.", registry=r
        )
        self.events = Counter(
            "sfn_exporter_events_processed", "History events handed to the sinks.", registry=r
        )
        self.lag = Histogram(
            "sfn_exporter_event_lag_seconds", "Time from an event's timestamp to its export.",
            buckets=LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self.tracked = Gauge(
            "sfn_exporter_tracked_executions", "Executions being tailed.", ["account", "region"], registry=r
        )
        self.state_machines = Gauge(
            "sfn_exporter_state_machines", "State machines seen, by status (tracked, skipped_express, skipped_express_not_logging, filtered_out, failing).",
            ["account", "region", "status"], registry=r,
        )  # fmt: skip
        self.spans_exported = Counter(
            "sfn_exporter_spans_exported", "Spans the OTLP backend accepted.", registry=r
        )
        self.spans_failed = Counter(
            "sfn_exporter_spans_failed", "Spans whose export failed (they are sent again).", registry=r
        )
        self.checkpoint_writes = Counter(
            "sfn_exporter_checkpoint_writes", "Checkpoint writes, by outcome.", ["outcome"], registry=r
        )
        self.history_errors = Counter(
            "sfn_exporter_history_errors",
            "History reads that could not be used, by reason (IncompleteResponse, UnparsableResponse, "
            "IncompleteHistory, InvalidEvent, InvalidHistory); each is retried, see the log for the event.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.quarantined = Gauge(
            "sfn_exporter_quarantined_executions",
            "Executions no longer polled because their history stayed unreadable (logged once each).",
            ["account", "region"],
            registry=r,
        )
        self.discovery_errors = Counter(
            "sfn_exporter_discovery_errors",
            "Discovery failures, by operation.",
            ["account", "region", "operation"],
            registry=r,
        )
        self.last_success = Gauge(
            "sfn_exporter_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful AWS API call.", ["account", "region"], registry=r,
        )  # fmt: skip
        self.staleness = Gauge(
            "sfn_exporter_poll_staleness_seconds",
            "How overdue the most overdue tracked execution's poll is (0 when the budget keeps up).",
            ["account", "region"], registry=r,
        )  # fmt: skip
        self.log_messages = Counter(
            "sfn_exporter_log_messages",
            "CloudWatch Logs messages read, by outcome (accepted, reread: seen before, read again going back over the overlap, "
            "late: after their execution moved past them, invalid: not a Step Functions log message, ignored: "
            "a state machine not watched).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.log_late_reads = Counter(
            "sfn_exporter_log_late_reads",
            "Reads of a log group that went back over the overlap window for late deliveries (read), or "
            "did not, FilterLogEvents having no call to spare (skipped).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.log_late_messages = Counter(
            "sfn_exporter_log_late_messages",
            "Log messages only going back over the overlap found: delivered more than logs.settle_seconds after their time.",
            registry=r,
        )  # fmt: skip
        self.map_runs = Gauge(
            "sfn_exporter_map_runs", "Distributed Map runs being watched (described and their children listed).",
            ["account", "region"], registry=r,
        )  # fmt: skip
        self.map_run_children = Counter(
            "sfn_exporter_map_run_children",
            "Child executions of map runs: followed (read, their spans exported), only counted (in the "
            "map run metrics), as map_runs.follow chooses, or unlogged (EXPRESS children chosen to follow "
            "whose parent logs nowhere the exporter reads: counted only).",
            ["handling"], registry=r,
        )  # fmt: skip
        self.log_groups = Gauge(
            "sfn_exporter_log_groups", "Log groups being read (those of the state machines read from logs).",
            ["account", "region"], registry=r,
        )  # fmt: skip
        self.log_watermark = Gauge(
            "sfn_exporter_log_watermark_lag_seconds",
            "How far behind now the oldest log group's read position is.", ["account", "region"], registry=r,
        )  # fmt: skip
        self.target_up = Gauge(
            "sfn_exporter_target_up",
            "1 when the target's credentials work (its role was assumed at start), 0 while they fail.",
            ["account", "region"], registry=r,
        )  # fmt: skip
        self.credential_errors = Counter(
            "sfn_exporter_credential_errors",
            "Failures to get a target's credentials (sts:AssumeRole, sts:GetCallerIdentity); retried with back-off.",
            ["account", "region"], registry=r,
        )  # fmt: skip
        for outcome in ("accepted", "reread", "late", "invalid", "ignored"):
            self.log_messages.labels(outcome)
        for outcome in ("read", "skipped"):
            self.log_late_reads.labels(outcome)
        for handling in ("followed", "counted", "unlogged"):
            self.map_run_children.labels(handling)
        for outcome in ("ok", "error"):
            self.checkpoint_writes.labels(outcome)

    def target(self, account: str, region: str) -> TargetHealth:
        """The metrics of one target (an account in a region), their labels bound."""
        return TargetHealth(self, account, region)


STATE_MACHINE_STATUSES = (
    "tracked", "skipped_express", "skipped_express_not_logging", "filtered_out", "other_shards", "failing",
)  # fmt: skip


class _Bound:
    """A labelled metric with its leading labels (account, region) given."""

    def __init__(self, metric: Counter | Gauge, prefix: tuple[str, ...]) -> None:
        self._metric = metric
        self._prefix = prefix

    def labels(self, *values: str) -> Any:
        return self._metric.labels(*self._prefix, *values)

    def inc(self, amount: float = 1) -> None:
        self._metric.labels(*self._prefix).inc(amount)

    def set(self, value: float) -> None:
        self._metric.labels(*self._prefix).set(value)  # type: ignore[union-attr]


class TargetHealth:
    """The exporter's metrics as one target's parts (discovery, polling, API calls) use them:
    the per-target ones labelled with its account and region, the others shared."""

    def __init__(self, health: HealthMetrics, account: str, region: str) -> None:
        self.shared = health
        self.account, self.region = account, region
        bound = (account, region)
        self.api_calls = _Bound(health.api_calls, bound)
        self.api_throttles = _Bound(health.api_throttles, bound)
        self.api_rate = _Bound(health.api_rate, bound)
        self.tracked = _Bound(health.tracked, bound)
        self.state_machines = _Bound(health.state_machines, bound)
        self.quarantined = _Bound(health.quarantined, bound)
        self.discovery_errors = _Bound(health.discovery_errors, bound)
        self.staleness = _Bound(health.staleness, bound)
        self.map_runs = _Bound(health.map_runs, bound)
        self.log_groups = _Bound(health.log_groups, bound)
        self.log_watermark = _Bound(health.log_watermark, bound)
        self.up = _Bound(health.target_up, bound)
        self.credential_errors = _Bound(health.credential_errors, bound)
        self.credential_errors.inc(0)
        self.history_bytes = health.history_bytes
        self.events = health.events
        self.lag = health.lag
        self.spans_exported = health.spans_exported
        self.spans_failed = health.spans_failed
        self.checkpoint_writes = health.checkpoint_writes
        self.history_errors = health.history_errors
        self.log_messages = health.log_messages
        self.log_late_reads = health.log_late_reads
        self.log_late_messages = health.log_late_messages
        self.map_run_children = health.map_run_children
        self.last_success_time = 0.0
        for status in STATE_MACHINE_STATUSES:
            self.state_machines.labels(status).set(0)
        self.tracked.set(0)

    def api_succeeded(self, now: float) -> None:
        self.last_success_time = now
        self.shared.last_success.labels(self.account, self.region).set(now)
