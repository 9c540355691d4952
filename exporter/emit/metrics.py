"""The metric catalogue as prometheus-client metrics in an injected registry."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from exporter.history.catalogue import DURATION_BUCKETS, WORKFLOW_METRICS, MetricSpec, MetricType
from exporter.model import Observation


def _make(spec: MetricSpec, registry: CollectorRegistry) -> MetricWrapperBase:
    # prometheus-client appends `_total` to counters itself.
    if spec.type == MetricType.COUNTER:
        return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)
    if spec.type == MetricType.HISTOGRAM:
        return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=DURATION_BUCKETS)
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


class WorkflowMetrics:
    """Applies the assembler's observations to the workflow metrics of the catalogue."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._metrics = {spec.name: (spec, _make(spec, registry)) for spec in WORKFLOW_METRICS}
        # label sets in use, by state machine (every workflow metric's first label), to forget
        # them when the state machine is gone
        self._children: dict[str, set[tuple[str, tuple[str, ...]]]] = {}

    def apply(self, observations: Iterable[Observation]) -> None:
        for observation in observations:
            spec, metric = self._metrics[observation.metric]
            if len(observation.labels) != len(spec.labels):
                raise ValueError(
                    f"{observation.metric}: expected labels {spec.labels}, got {observation.labels}"
                )
            child = metric.labels(*observation.labels)
            self._children.setdefault(observation.labels[0], set()).add(
                (observation.metric, observation.labels)
            )
            if spec.type == MetricType.COUNTER:
                child.inc(observation.value)  # type: ignore[attr-defined]
            elif spec.type == MetricType.HISTOGRAM:
                child.observe(observation.value)  # type: ignore[attr-defined]
            else:
                child.inc(observation.value)  # type: ignore[attr-defined]

    def set_running(self, state_machine: str, count: int) -> None:
        _, gauge = self._metrics["sfn_running_executions"]
        gauge.labels(state_machine).set(count)  # type: ignore[attr-defined]
        self._children.setdefault(state_machine, set()).add(("sfn_running_executions", (state_machine,)))

    def forget(self, state_machine: str) -> None:
        """Drop every series of a state machine that is gone, so its label sets do not live on
        until a restart (Prometheus marks them stale)."""
        for name, labels in self._children.pop(state_machine, ()):
            self._metrics[name][1].remove(*labels)
