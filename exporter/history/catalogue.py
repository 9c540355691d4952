"""The Prometheus metric catalogue: names, types, labels and help, shared by producer and sink."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MetricType(enum.StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    unit: str = ""


# Step Functions spans seconds to a year; these buckets cover 50 ms to a day.
DURATION_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)  # fmt: skip

# Label values taken from user data (error names) are cut to this length.
MAX_LABEL_LENGTH = 64

_C, _H, _G = MetricType.COUNTER, MetricType.HISTOGRAM, MetricType.GAUGE
_SM = ("state_machine",)
_STATE = ("state_machine", "state", "state_type")

WORKFLOW_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("sfn_executions_started_total", _C, _SM, "Executions started."),
    MetricSpec(
        "sfn_executions_finished_total", _C, (*_SM, "status"),
        "Executions finished, by status (SUCCEEDED, FAILED, TIMED_OUT, ABORTED).",
    ),
    MetricSpec(
        "sfn_execution_duration_seconds", _H, (*_SM, "status"),
        "Execution duration from ExecutionStarted to its terminal event.", "seconds",
    ),
    MetricSpec("sfn_executions_redriven_total", _C, _SM, "Executions redriven."),
    MetricSpec("sfn_running_executions", _G, _SM, "Executions tracked as running."),
    MetricSpec("sfn_states_entered_total", _C, _STATE, "State visits entered."),
    MetricSpec(
        "sfn_states_finished_total", _C, (*_STATE, "outcome"),
        "State visits finished, by outcome (succeeded, caught, failed, timed_out, aborted).",
    ),
    MetricSpec(
        "sfn_state_duration_seconds", _H, _STATE,
        "State visit duration from *StateEntered to its end.", "seconds",
    ),
    MetricSpec(
        "sfn_task_attempts_total", _C, ("state_machine", "state", "kind", "outcome"),
        "Task, Lambda and activity attempts finished, by kind and outcome.",
    ),
    MetricSpec(
        "sfn_task_failures_total", _C, ("state_machine", "state", "kind", "error"),
        "Task, Lambda and activity attempts that failed or timed out, by error name.",
    ),
    MetricSpec(
        "sfn_task_duration_seconds", _H, ("state_machine", "state", "kind"),
        "Attempt duration from *Scheduled to its end.", "seconds",
    ),
    MetricSpec(
        "sfn_task_retries_total", _C, ("state_machine", "state"),
        "Attempts scheduled after a failed attempt of the same state visit.",
    ),
    MetricSpec(
        "sfn_map_iterations_total", _C, ("state_machine", "state", "outcome"),
        "Map iterations finished, by outcome.",
    ),
    MetricSpec(
        "sfn_history_anomalies_total", _C, (*_SM, "anomaly"),
        "Events the assembler could not place exactly and handled best-effort.",
    ),
    MetricSpec(
        "sfn_unknown_events_total", _C, (*_SM, "event_type"),
        "Events of types this exporter does not model, kept as span events.",
    ),
)  # fmt: skip

_RUN = ("state_machine", "map_state")

# Distributed Map runs, from DescribeMapRun (exporter.aws.mapruns): every child, followed or not.
MAP_RUN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("sfn_map_runs_running", _G, _RUN, "Map runs running (summed below when several run at once)."),
    MetricSpec(
        "sfn_map_run_executions", _G, (*_RUN, "status"),
        "Child executions of the running map runs, by status (PENDING, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, TOTAL).",
    ),
    MetricSpec("sfn_map_run_items", _G, (*_RUN, "status"), "Items of the running map runs, by status (as sfn_map_run_executions)."),
    MetricSpec("sfn_map_run_tolerated_failure_percentage", _G, _RUN, "The running map run's toleratedFailurePercentage."),
    MetricSpec("sfn_map_run_tolerated_failure_count", _G, _RUN, "The running map run's toleratedFailureCount."),
    MetricSpec("sfn_map_run_max_concurrency", _G, _RUN, "The running map run's maxConcurrency."),
    MetricSpec(
        "sfn_map_run_child_executions_finished_total", _C, (*_RUN, "status"),
        "Child executions of map runs finished, by status (SUCCEEDED, FAILED, TIMED_OUT, ABORTED).",
    ),
    MetricSpec("sfn_map_runs_finished_total", _C, (*_RUN, "status"), "Map runs finished, by status (SUCCEEDED, FAILED, ABORTED)."),
)  # fmt: skip

BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in WORKFLOW_METRICS}

# What counts whole executions: a map run's children are counted by their map run instead.
EXECUTION_METRICS = frozenset({
    "sfn_executions_started_total", "sfn_executions_finished_total", "sfn_execution_duration_seconds",
    "sfn_executions_redriven_total",
})  # fmt: skip


def clip_label(value: str | None) -> str:
    """A user-supplied label value, cut so one odd error string cannot bloat the series."""
    if not value:
        return ""
    return value if len(value) <= MAX_LABEL_LENGTH else value[: MAX_LABEL_LENGTH - 1] + "…"
