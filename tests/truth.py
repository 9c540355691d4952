"""What the workflow metrics and spans must be once executions were exported exactly once."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from exporter.emit.metrics import WorkflowMetrics
from exporter.history.assembler import SpanAssembler
from exporter.model import ExecutionIdentity
from exporter.translate import assemble
from simulator.stepfunctions import SimExecution, SimMapRun

# the account and region of the simulator's and moto's executions: every workflow series' leading labels
TARGET = {"account": "123456789012", "region": "us-east-1"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def workflow_counts(registry: CollectorRegistry) -> Samples:
    """Every workflow counter and histogram count (not the running gauge, not sfn_exporter_*)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        if family.name.startswith("sfn_") and not family.name.startswith("sfn_exporter")
        for sample in family.samples
        if sample.name.endswith(("_total", "_count", "_bucket")) and sample.value
    }


def counted_by_all(*registries: CollectorRegistry) -> Samples:
    """What several processes counted together (each event should be counted by one of them)."""
    combined: Samples = {}
    for registry in registries:
        for key, value in workflow_counts(registry).items():
            combined[key] = combined.get(key, 0) + value
    return combined


def truth(executions: list[SimExecution], upto: dict[str, int] | None = None) -> Samples:
    """The counters once every execution's events (or its first `upto[arn]`) were counted once."""
    registry = CollectorRegistry()
    metrics = WorkflowMetrics(registry)
    for execution in executions:
        events = execution.history()[: (upto or {}).get(execution.arn)]
        identity = ExecutionIdentity.from_arn(execution.arn)  # its target: the ARN's account and region
        observations = SpanAssembler(identity).feed(events).observations
        metrics.for_target(identity.account, identity.region).apply(observations)
    return workflow_counts(registry)


def span_ids(executions: list[SimExecution]) -> set[int]:
    return {s.span_id for e in executions for s in assemble(e.history(), ExecutionIdentity.from_arn(e.arn))}


def map_run_children(run: SimMapRun) -> dict[str, float]:
    """A map run's children once all ended, by status: what its finished-children counter must hold."""
    counts: dict[str, float] = {}
    for child in run.children:
        status = child.status(float("inf"))
        counts[status] = counts.get(status, 0) + 1
    return counts
