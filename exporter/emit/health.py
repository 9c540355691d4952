"""The exporter's own metrics: API calls, throttles, lag, tracked executions, exports, checkpoints."""

from __future__ import annotations

import os
import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
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
        self.build_info = Info(
            "sfn_exporter_build", "Version, source revision and Python version of this exporter.", registry=r
        )
        self.build_info.info(
            {"version": __version__, "revision": revision(), "python_version": platform.python_version()}
        )
        self.api_calls = Counter(
            "sfn_exporter_api_calls", "AWS API calls, by operation and outcome (success, throttled, client_error, server_error, network_error, invalid_response).",
            ["operation", "outcome"], registry=r,
        )  # fmt: skip
        self.api_throttles = Counter(
            "sfn_exporter_api_throttles",
            "ThrottlingException answers, by operation.",
            ["operation"],
            registry=r,
        )
        self.api_rate = Gauge(
            "sfn_exporter_api_rate_limit", "Calls per second this exporter currently allows itself, by operation.",
            ["operation"], registry=r,
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
        self.tracked = Gauge("sfn_exporter_tracked_executions", "Executions being tailed.", registry=r)
        self.state_machines = Gauge(
            "sfn_exporter_state_machines", "State machines seen, by status (tracked, skipped_express, skipped_express_not_logging, filtered_out, failing).",
            ["status"], registry=r,
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
            registry=r,
        )
        self.discovery_errors = Counter(
            "sfn_exporter_discovery_errors", "Discovery failures, by operation.", ["operation"], registry=r
        )
        self.last_success = Gauge(
            "sfn_exporter_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful AWS API call.", registry=r,
        )  # fmt: skip
        self.staleness = Gauge(
            "sfn_exporter_poll_staleness_seconds",
            "How overdue the most overdue tracked execution's poll is (0 when the budget keeps up).", registry=r,
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
            "sfn_exporter_map_runs", "Distributed Map runs being watched (described and their children listed).", registry=r
        )  # fmt: skip
        self.map_run_children = Counter(
            "sfn_exporter_map_run_children",
            "Child executions of map runs: followed (their history read, their spans exported) or only "
            "counted (in the map run metrics), as map_runs.follow chooses.",
            ["handling"], registry=r,
        )  # fmt: skip
        self.log_groups = Gauge(
            "sfn_exporter_log_groups", "Log groups being read (those of the state machines read from logs).", registry=r
        )  # fmt: skip
        self.log_watermark = Gauge(
            "sfn_exporter_log_watermark_lag_seconds",
            "How far behind now the oldest log group's read position is.", registry=r,
        )  # fmt: skip
        self.last_success_time = 0.0
        for outcome in ("accepted", "reread", "late", "invalid", "ignored"):
            self.log_messages.labels(outcome)
        for outcome in ("read", "skipped"):
            self.log_late_reads.labels(outcome)
        for handling in ("followed", "counted"):
            self.map_run_children.labels(handling)
        for status in (
            "tracked",
            "skipped_express",
            "skipped_express_not_logging",
            "filtered_out",
            "failing",
        ):
            self.state_machines.labels(status).set(0)
        for outcome in ("ok", "error"):
            self.checkpoint_writes.labels(outcome)

    def api_succeeded(self, now: float) -> None:
        self.last_success_time = now
        self.last_success.set(now)
