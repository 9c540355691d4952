"""Every recorded AWS history goes through the assembler and gives a well-formed tree,
however the history is split into batches."""

from __future__ import annotations

import itertools
import json
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.history.assembler import SpanAssembler
from exporter.model import SpanRecord
from tests.corpus import AWS_RECORDED, DIGESTS, RecordedHistory, digest, key, recorded_histories
from tests.treecheck import assert_well_formed

HISTORIES = list(recorded_histories())


def run(
    history: RecordedHistory, batches: list[list[dict[str, object]]]
) -> tuple[list[SpanRecord], list[object]]:
    assembler = SpanAssembler(history.identity)
    spans: list[SpanRecord] = []
    observations: list[object] = []
    for batch in batches:
        out = assembler.feed(batch)
        spans += out.spans
        observations += out.observations
    return spans + assembler.open_spans(), observations


def test_the_whole_corpus_is_there() -> None:
    assert AWS_RECORDED.is_dir(), f"missing {AWS_RECORDED}"
    assert len(HISTORIES) == 691


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: f"{h.source}/{h.case}"[:120])
def test_recorded_history_gives_a_well_formed_tree(history: RecordedHistory) -> None:
    spans, _ = run(history, [history.events])
    assert_well_formed(spans)
    closed = [s for s in spans if s.end_ns is not None]
    # Histories that end in a terminal event leave nothing open.
    if (
        history.events[-1]["type"].startswith("Execution")
        and history.events[-1]["type"] != "ExecutionStarted"
    ):
        assert len(closed) == len(spans)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: f"{h.source}/{h.case}"[:120])
def test_batching_never_changes_the_result(history: RecordedHistory, data: st.DataObject) -> None:
    events = history.events
    cuts = sorted(data.draw(st.sets(st.integers(0, len(events)), max_size=len(events) + 1)))
    bounds = [0, *cuts, len(events)]
    batches = [events[a:b] for a, b in itertools.pairwise(bounds)]
    assert run(history, batches) == run(history, [events])


def test_the_corpus_gives_what_it_gave_before() -> None:
    """Every span and observation of every recorded history, against digests kept in the
    repository (`python -m tests.corpus` rewrites them after an intended change)."""
    expected = json.loads(DIGESTS.read_text())
    assert len(expected) == len(HISTORIES)
    changed = [key(h) for h in HISTORIES if expected.get(key(h)) != digest(h)]
    assert not changed, f"{len(changed)} histories give other spans or metrics, e.g. {changed[:5]}"


def test_closed_spans_share_one_empty_attribute_map_that_nothing_writes_to() -> None:
    """A closed span hands its attributes to its record and keeps a shared empty map (memory:
    thousands of executions tracked at once); no history makes the assembler write to it."""
    from exporter.history import assembler

    for history in HISTORIES:
        run(history, [history.events])
        run(history, [[event] for event in history.events])
    assert assembler._NO_ATTRIBUTES == {}


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: f"{h.source}/{h.case}"[:120])
def test_an_assembler_restored_from_a_snapshot_goes_on_as_the_original(history: RecordedHistory) -> None:
    """Cut after any event, snapshot, restore: the rest of the history gives the same spans and
    observations as the assembler that never stopped (a restart without reading the history
    again), and a snapshot of the restored assembler is the same bytes."""
    events = history.events
    whole, whole_observations = run(history, [events])
    for cut in range(1, len(events)):
        first = SpanAssembler(history.identity)
        head = first.feed(events[:cut])
        data = first.snapshot()
        second = SpanAssembler.restore(history.identity, data)
        assert second.snapshot() == data, f"cut after event {cut}"
        assert second.last_event_id == first.last_event_id and second.map_runs == first.map_runs
        tail = second.feed(events[cut:])
        assert head.spans + tail.spans + second.open_spans() == whole, f"cut after event {cut}"
        assert head.observations + tail.observations == whole_observations, f"cut after event {cut}"


def test_a_snapshot_that_is_not_one_is_refused_by_name() -> None:
    history = HISTORIES[0]
    for data in (b"", b"not zlib", zlib.compress(b"[]"), zlib.compress(b'{"v": 99}')):
        with pytest.raises(ValueError, match="cannot restore the assembler state"):
            SpanAssembler.restore(history.identity, data)
