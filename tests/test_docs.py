"""The README stays in step with the code it documents."""

from __future__ import annotations

import re

from exporter.history.catalogue import MAP_RUN_METRICS, WORKFLOW_METRICS
from tests.corpus import REPO


def test_readme_metric_table_is_the_catalogue() -> None:
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `(sfn_[a-z_]+)` \| (\w+) \| ([a-z_, ]+) \| (.+) \|$", readme, re.MULTILINE)
    documented = {name: (kind, tuple(labels.split(", ")), text) for name, kind, labels, text in rows}
    expected = {
        spec.name: (spec.type.value, spec.labels, spec.help) for spec in (*WORKFLOW_METRICS, *MAP_RUN_METRICS)
    }
    assert {k: v for k, v in documented.items() if k in expected} == expected


def test_readme_names_the_two_commands_and_ci_calls_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert "./dev demo" in readme and "./dev test" in readme
    assert "./dev test" in (REPO / ".ci" / "run").read_text()


def test_readme_configuration_table_is_the_model() -> None:
    from exporter.config import reference

    readme = (REPO / "README.md").read_text()
    for field, default, meaning in reference():
        assert f"| `{field}` | `{default}` | {meaning} |" in readme, field


def test_readme_lists_every_exporter_metric() -> None:
    from prometheus_client import CollectorRegistry

    from exporter.emit.health import HealthMetrics

    registry = CollectorRegistry()
    HealthMetrics(registry)
    readme = (REPO / "README.md").read_text()
    suffix = {"counter": "_total", "info": "_info"}
    for family in registry.collect():
        name = family.name + suffix.get(family.type, "")
        assert f"| `{name}` |" in readme, name
