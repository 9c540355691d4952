"""The catalogue in a fresh registry, fed from real assembler output."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.emit.metrics import WorkflowMetrics
from exporter.history.assembler import SpanAssembler
from exporter.history.catalogue import WORKFLOW_METRICS, MetricType, clip_label
from exporter.model import ExecutionIdentity, Observation
from tests.corpus import recorded_histories

IDENTITY = ExecutionIdentity.from_arn("arn:aws:states:eu-west-1:123456789012:execution:Orders:run-1")


def test_catalogue_names_follow_prometheus_conventions() -> None:
    for spec in WORKFLOW_METRICS:
        assert spec.name.startswith("sfn_")
        if spec.type == MetricType.COUNTER:
            assert spec.name.endswith("_total"), spec.name
        if spec.type == MetricType.HISTOGRAM:
            assert spec.name.endswith("_seconds"), spec.name
        assert "execution_arn" not in spec.labels and "execution" not in spec.labels


def test_observations_land_in_the_injected_registry() -> None:
    registry = CollectorRegistry()
    metrics = WorkflowMetrics(registry).for_target("111111111111", "eu-west-1")
    history = next(h for h in recorded_histories() if "test_service_lambda_map_timeout" in h.case)
    out = SpanAssembler(IDENTITY).feed(history.events)
    metrics.apply(out.observations)
    target = {"account": "111111111111", "region": "eu-west-1"}

    def value(name: str, labels: dict[str, str]) -> float | None:
        return registry.get_sample_value(name, {**target, **labels})

    assert value("sfn_executions_started_total", {"state_machine": "Orders"}) == 1
    assert value("sfn_executions_finished_total", {"state_machine": "Orders", "status": "TIMED_OUT"}) is None
    assert value("sfn_executions_finished_total", {"state_machine": "Orders", "status": "FAILED"}) == 1
    assert (
        value(
            "sfn_map_iterations_total",
            {"state_machine": "Orders", "state": "MapWait", "outcome": "failed"},
        )
        == 1
    )
    assert (
        value(
            "sfn_map_iterations_total",
            {"state_machine": "Orders", "state": "MapWait", "outcome": "aborted"},
        )
        == 3
    )
    failures = {"state_machine": "Orders", "state": "LambdaInvoke", "kind": "task", "error": "States.Timeout"}
    assert value("sfn_task_failures_total", failures) == 4
    assert value("sfn_execution_duration_seconds_count", {"state_machine": "Orders", "status": "FAILED"}) == 1
    assert (
        value("sfn_execution_duration_seconds_sum", {"state_machine": "Orders", "status": "FAILED"}) == 32.0
    )
    # nothing landed in the global registry
    assert b"sfn_executions_started_total" not in generate_latest()


def test_running_gauge_is_set_not_counted() -> None:
    registry = CollectorRegistry()
    base = WorkflowMetrics(registry)
    first, second = base.for_target("111111111111", "eu-west-1"), base.for_target("222222222222", "eu-west-1")
    first.set_running("Orders", 3)
    first.set_running("Orders", 2)
    second.set_running("Orders", 7)
    labels = {"account": "111111111111", "region": "eu-west-1", "state_machine": "Orders"}
    assert registry.get_sample_value("sfn_running_executions", labels) == 2
    assert registry.get_sample_value("sfn_running_executions", {**labels, "account": "222222222222"}) == 7
    first.forget("Orders")  # one target's series go, the other's stay
    assert registry.get_sample_value("sfn_running_executions", labels) is None
    assert registry.get_sample_value("sfn_running_executions", {**labels, "account": "222222222222"}) == 7


def test_a_forgotten_state_machines_series_start_again_from_nothing() -> None:
    """Updates are bound to their series once; a series forgotten is bound afresh when it comes back."""
    registry = CollectorRegistry()
    metrics = WorkflowMetrics(registry).for_target("111111111111", "eu-west-1")
    started = Observation("sfn_executions_started_total", ("Orders",))
    duration = Observation("sfn_execution_duration_seconds", ("Orders", "SUCCEEDED"), 2.0)
    metrics.apply([started, started, duration])
    labels = {"account": "111111111111", "region": "eu-west-1", "state_machine": "Orders"}
    assert registry.get_sample_value("sfn_executions_started_total", labels) == 2
    metrics.forget("Orders")
    assert registry.get_sample_value("sfn_executions_started_total", labels) is None
    metrics.apply([started, duration])
    assert registry.get_sample_value("sfn_executions_started_total", labels) == 1
    assert (
        registry.get_sample_value("sfn_execution_duration_seconds_count", {**labels, "status": "SUCCEEDED"})
        == 1
    )


def test_wrong_label_count_is_a_clear_error() -> None:
    metrics = WorkflowMetrics(CollectorRegistry())
    with pytest.raises(
        ValueError, match=r"sfn_executions_started_total: expected labels \('state_machine',\)"
    ):
        metrics.apply([Observation("sfn_executions_started_total", ("a", "b"))])


def test_long_error_names_are_clipped() -> None:
    assert clip_label("x" * 500) == "x" * 63 + "…"
    assert clip_label(None) == ""
    assert clip_label("States.Timeout") == "States.Timeout"


def histogram_samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


@pytest.mark.parametrize("labelled", [False, True])
def test_observing_all_at_once_gives_the_samples_observing_each_gives(labelled: bool) -> None:
    import math
    import random

    from prometheus_client import Histogram

    from exporter.emit.metrics import observe_all

    rng = random.Random(7)
    buckets = (0.1, 1.0, 2.5, 10.0)
    values = [rng.choice([0.0, 0.1, 1.0, 2.5, 10.0, 11.0, -1.0, math.inf, math.nan]) for _ in range(200)]
    values += [rng.uniform(-1, 20) for _ in range(500)]
    registries = []
    for batched in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram("h", "h", ["a"] if labelled else [], buckets=buckets, registry=registry)
        series = histogram.labels("x") if labelled else histogram
        for start in range(0, len(values), 100):
            part = values[start : start + 100]
            if batched:
                observe_all(series, part)
            else:
                for value in part:
                    series.observe(value)
        observe_all(series, [])  # nothing: nothing changes
        registries.append(registry)
    each, together = (histogram_samples(r) for r in registries)
    assert [s for s in together if not s[0].endswith("_sum")] == [
        s for s in each if not s[0].endswith("_sum")
    ]
    assert [s[0] for s in together if s[0].endswith("_sum")] == ["h_sum"]  # NaN in the sum, as observe has it
    assert math.isnan(next(s[2] for s in together if s[0] == "h_sum"))
    not_a_number = sum(1 for v in values if math.isnan(v))
    assert not_a_number and next(s[2] for s in together if s[0] == "h_count") == len(values) - not_a_number


def test_a_batchs_histogram_values_are_observed_as_one_by_one() -> None:
    identity = ExecutionIdentity.from_arn("arn:aws:states:us-east-1:123456789012:execution:m:e")
    observations = [Observation("sfn_state_duration_seconds", ("m", f"s{i % 3}", "Task"), i / 7)
                    for i in range(60)]  # fmt: skip
    observations += [Observation("sfn_states_entered_total", ("m", "s0", "Task"))] * 5
    registries = []
    for one_by_one in (True, False):
        metrics = WorkflowMetrics(CollectorRegistry(), (identity.account, identity.region))
        if one_by_one:
            for observation in observations:
                metrics.apply([observation])
        else:
            metrics.apply(observations[:30])
            metrics.apply(observations[30:])
        registries.append(metrics.registry)
    one, batched = (histogram_samples(r) for r in registries)
    assert [s for s in batched if not s[0].endswith("_sum")] == [s for s in one if not s[0].endswith("_sum")]
    sums = [(s[2], t[2]) for s, t in zip(one, batched, strict=True) if s[0].endswith("_sum")]
    assert sums and all(abs(a - b) < 1e-9 for a, b in sums)
