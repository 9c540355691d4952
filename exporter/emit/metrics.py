"""The metric catalogue as prometheus-client metrics in an injected registry."""

from __future__ import annotations

import copy
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from math import isnan

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from exporter.history.catalogue import (
    DURATION_BUCKETS,
    MAP_RUN_METRICS,
    WORKFLOW_METRICS,
    MetricSpec,
    MetricType,
)
from exporter.model import MapRun, MapRunDescription, Observation

# Every workflow and map run series leads with its target's account and region (bounded: the
# configured targets), so that one process's series of many accounts never mix.
TARGET_LABELS = ("account", "region")
Target = tuple[str, str]


def _make(spec: MetricSpec, registry: CollectorRegistry) -> MetricWrapperBase:
    # prometheus-client appends `_total` to counters itself.
    labels = (*TARGET_LABELS, *spec.labels)
    if spec.type == MetricType.COUNTER:
        return Counter(spec.name.removesuffix("_total"), spec.help, labels, registry=registry)
    if spec.type == MetricType.HISTOGRAM:
        return Histogram(spec.name, spec.help, labels, registry=registry, buckets=DURATION_BUCKETS)
    return Gauge(spec.name, spec.help, labels, registry=registry)


class WorkflowMetrics:
    """Applies the assembler's observations to the workflow metrics of the catalogue, as one
    target's (`for_target` gives another target's view of the same metrics)."""

    def __init__(self, registry: CollectorRegistry, target: Target = ("", "")) -> None:
        self.registry = registry
        self.target = target
        self._metrics = {spec.name: (spec, _make(spec, registry)) for spec in WORKFLOW_METRICS}
        # label sets in use, by state machine (every workflow metric's first label), to forget
        # them when the state machine is gone
        self._children: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
        self._shared: dict[str, MapRunMetrics] = {}  # the map run metrics, made when first needed
        # each series' update (its child's inc or observe), by metric and labels: resolving a
        # child through prometheus-client's labels() on every observation costs more than the update
        self._updates: dict[tuple[str, tuple[str, ...]], Callable[[float], None]] = {}
        self._observed: list[_Gathered] = []  # histogram series with values gathered in `apply`

    def for_target(self, account: str, region: str) -> WorkflowMetrics:
        view = copy.copy(self)  # the same metrics (and _shared), another target's series
        view.target = (account, region)
        view._children = {}
        view._updates = {}
        view._observed = []
        return view

    def map_runs(self) -> MapRunMetrics:
        """The map run metrics of this registry, as this target's."""
        if "base" not in self._shared:
            self._shared["base"] = MapRunMetrics(self.registry)
        return self._shared["base"].for_target(self.target)

    def apply(self, observations: Iterable[Observation]) -> None:
        updates = self._updates
        observed = self._observed
        for metric, labels, value in observations:
            update = updates.get((metric, labels))
            if update is None:
                update = self._bind(metric, labels)
            update(value)
        while observed:  # each histogram series' values of this batch, at once
            observed.pop().flush()

    def _bind(self, name: str, labels: tuple[str, ...]) -> Callable[[float], None]:
        """A series' update, made once: for a histogram, its child's values gathered to be
        observed at the end of the batch; else its child's `inc`."""
        spec, metric = self._metrics[name]
        if len(labels) != len(spec.labels):
            raise ValueError(f"{name}: expected labels {spec.labels}, got {labels}")
        child = metric.labels(*self.target, *labels)
        self._children.setdefault(labels[0], set()).add((name, labels))
        gathered = _Gathered(child, self._observed) if isinstance(child, Histogram) else None
        update: Callable[[float], None] = gathered.add if gathered is not None else child.inc  # type: ignore[attr-defined]
        self._updates[(name, labels)] = update
        return update

    def set_running(self, state_machine: str, count: int) -> None:
        _, gauge = self._metrics["sfn_running_executions"]
        gauge.labels(*self.target, state_machine).set(count)  # type: ignore[attr-defined]
        self._children.setdefault(state_machine, set()).add(("sfn_running_executions", (state_machine,)))

    def forget(self, state_machine: str) -> None:
        """Drop every series of a state machine that is gone, so its label sets do not live on
        until a restart (Prometheus marks them stale)."""
        for name, labels in self._children.pop(state_machine, ()):
            self._metrics[name][1].remove(*self.target, *labels)
            self._updates.pop((name, labels), None)


class _Gathered:
    """One histogram series' values of a batch of observations, observed together."""

    __slots__ = ("child", "pending", "values")

    def __init__(self, child: Histogram, pending: list[_Gathered]) -> None:
        self.child = child
        self.pending = pending  # the series with values to observe
        self.values: list[float] = []

    def add(self, value: float) -> None:
        if not self.values:
            self.pending.append(self)
        self.values.append(value)

    def flush(self) -> None:
        observe_all(self.child, self.values)
        self.values.clear()


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(value)` for each value (of a histogram without labels, or of one
    series), with one increment of each bucket that takes any and one of the sum, where `observe`
    takes two each (each under its own lock): at 20,000 events a second the event lag histogram
    alone made 40,000. prometheus-client has no public way to do this; `tests/test_metrics.py`
    checks the samples against `observe`'s."""
    if not values:
        return
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for value in values:
        total += value
        if not isnan(value):  # NaN: in the sum, in no bucket (as `observe` has it)
            counts[bisect_left(bounds, value)] += 1
    histogram._sum.inc(total)
    buckets = histogram._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)


# DescribeMapRun's count keys, as the status label says them (AWS's execution statuses)
_STATUS_LABELS = {"pending": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED",
                  "timedOut": "TIMED_OUT", "aborted": "ABORTED", "total": "TOTAL"}  # fmt: skip


_BY_STATUS = ("sfn_map_run_executions", "sfn_map_run_items")
_PER_RUN = ("sfn_map_run_tolerated_failure_percentage", "sfn_map_run_tolerated_failure_count",
            "sfn_map_run_max_concurrency", "sfn_map_runs_running")  # fmt: skip


class MapRunMetrics:
    """Distributed Map runs, labelled by parent state machine and Map state (never by map run
    ARN: one series per map run would grow without bound). Several map runs of one Map state
    running at once are summed."""

    def __init__(self, registry: CollectorRegistry, target: Target = ("", "")) -> None:
        self._m = {spec.name: _make(spec, registry) for spec in MAP_RUN_METRICS}
        self.target = target
        self._shown: set[tuple[str, str, str, str]] = set()  # label sets with progress series

    def for_target(self, target: Target) -> MapRunMetrics:
        view = copy.copy(self)  # the same metrics, another target's series
        view.target = target
        view._shown = set()
        return view

    def set_progress(self, runs: Sequence[tuple[MapRun, MapRunDescription]]) -> None:
        """The progress gauges of the map runs running now (those that ended lose their series)."""
        sums: dict[tuple[str, str, str, str], dict[str, float]] = {}
        for run, description in runs:
            total = sums.setdefault((*self.target, run.parent_state_machine, run.map_state), {})
            for key, label in _STATUS_LABELS.items():
                total[f"e:{label}"] = total.get(f"e:{label}", 0) + description.executions[key]
                total[f"i:{label}"] = total.get(f"i:{label}", 0) + description.items[key]
            total["pct"] = description.tolerated_failure_percentage
            total["count"] = description.tolerated_failure_count
            total["conc"] = description.max_concurrency
            total["runs"] = total.get("runs", 0) + 1
        for labels in self._shown - set(sums):  # no map run of theirs runs any more
            for name in _BY_STATUS:
                for status in _STATUS_LABELS.values():
                    self._m[name].remove(*labels, status)
            for name in _PER_RUN:
                self._m[name].remove(*labels)
        for labels, total in sums.items():
            for label in _STATUS_LABELS.values():
                self._m["sfn_map_run_executions"].labels(*labels, label).set(total[f"e:{label}"])  # type: ignore[attr-defined]
                self._m["sfn_map_run_items"].labels(*labels, label).set(total[f"i:{label}"])  # type: ignore[attr-defined]
            self._m["sfn_map_run_tolerated_failure_percentage"].labels(*labels).set(total["pct"])  # type: ignore[attr-defined]
            self._m["sfn_map_run_tolerated_failure_count"].labels(*labels).set(total["count"])  # type: ignore[attr-defined]
            self._m["sfn_map_run_max_concurrency"].labels(*labels).set(total["conc"])  # type: ignore[attr-defined]
            self._m["sfn_map_runs_running"].labels(*labels).set(total["runs"])  # type: ignore[attr-defined]
        self._shown = set(sums)

    def children_finished(self, run: MapRun, status: str, count: int) -> None:
        self._m["sfn_map_run_child_executions_finished_total"].labels(  # type: ignore[attr-defined]
            *self.target, run.parent_state_machine, run.map_state, status
        ).inc(count)

    def finished(self, run: MapRun, status: str) -> None:
        self._m["sfn_map_runs_finished_total"].labels(
            *self.target, run.parent_state_machine, run.map_state, status
        ).inc()  # type: ignore[attr-defined]
