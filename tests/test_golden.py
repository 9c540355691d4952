"""Golden span trees for histories recorded with moto's interpreter, and a live re-recording."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exporter.demo.samples import SAMPLES
from exporter.model import ExecutionIdentity
from exporter.translate import assemble
from tests.moto_server import MotoServer
from tests.recording import FIXTURES, golden_lines, record_samples
from tests.treecheck import assert_well_formed

NAMES = [sample.name for sample in SAMPLES]


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def spans_of(lines: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines.splitlines()]


@pytest.mark.parametrize("name", NAMES)
def test_translate_matches_the_golden_file(name: str) -> None:
    document = load(name)
    assert golden_lines(document) == (FIXTURES / f"{name}.spans.jsonl").read_text()
    spans = assemble(document["events"], ExecutionIdentity.from_arn(document["executionArn"]))
    assert_well_formed(spans)
    assert all(span.end_ns is not None for span in spans)


def test_the_recordings_show_what_each_workflow_does() -> None:
    def summary(name: str) -> list[tuple[str, str, str, str | None]]:
        return sorted(
            (s["kind"], s["name"], s["status"], s["error"]) for s in spans_of(golden_lines(load(name)))
        )

    retry = summary("retry-then-catch")
    attempts = [s for s in retry if s[0] == "task"]
    assert attempts == [("task", "dynamodb:getItem", "ERROR", "DynamoDB.ResourceNotFoundException")] * 3
    assert ("state", "Lookup", "UNSET", "DynamoDB.ResourceNotFoundException") in retry  # caught
    assert ("execution", "retry-then-catch", "UNSET", None) in retry

    assert ("state", "Reject", "ERROR", "OrderRejected") in summary("always-fails")
    assert ("execution", "times-out", "ERROR", "States.Timeout") in summary("times-out")
    assert [s[0] for s in summary("map-concurrency")].count("map_iteration") == 4
    assert [s[0] for s in summary("parallel-fanout")].count("parallel_branch") == 2
    nested = [s[1] for s in summary("nested-map-parallel")]
    assert (nested.count("Leaf"), nested.count("Split branch"), nested.count("Inner iteration")) == (3, 4, 3)


def _structure(spans: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Each span by its path of names from the root: concurrent branches interleave differently
    from run to run, which changes event (and so span) ids but not the tree."""
    by_id = {s["span_id"]: s for s in spans}

    def path(span: dict[str, Any]) -> tuple[str, ...]:
        names = []
        current: dict[str, Any] | None = span
        while current is not None:
            names.append(current["name"])
            current = by_id.get(current["parent_span_id"])
        return tuple(reversed(names))

    return Counter((path(s), s["kind"], s["status"], s["error"]) for s in spans)


def test_a_fresh_recording_gives_the_golden_trees(tmp_path: Path) -> None:
    with MotoServer() as server:
        documents = record_samples(server.endpoint)
    for name in NAMES:
        fresh = spans_of(golden_lines(documents[name]))
        if name in ("always-fails", "times-out", "retry-then-catch"):
            # no concurrency that reorders events: the very same ids
            assert {s["span_id"] for s in fresh} == {
                s["span_id"] for s in spans_of((FIXTURES / f"{name}.spans.jsonl").read_text())
            }
        golden = spans_of((FIXTURES / f"{name}.spans.jsonl").read_text())
        assert documents[name]["status"] == next(s for s in SAMPLES if s.name == name).expected_status
        assert _structure(fresh) == _structure(golden), name


def test_another_interleaving_gives_the_same_tree() -> None:
    """A recording whose concurrent events interleave differently from the golden one; it once
    made the assembler close the wrong Inner Map (two events pointed at one iteration end)."""
    document = json.loads((FIXTURES / "nested-map-parallel-interleaved.json").read_text())
    golden = spans_of((FIXTURES / "nested-map-parallel.spans.jsonl").read_text())
    assert _structure(spans_of(golden_lines(document))) == _structure(golden)
