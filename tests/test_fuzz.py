"""The assembler against corrupted versions of the recorded AWS histories: events dropped,
duplicated, reordered, fields mistyped, details cut. It never crashes: a batch is either refused
whole with a HistoryError (nothing of it consumed, the assembler still usable) or consumed, and
what it consumes gives spans with sane times and only catalogued metrics."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.history.assembler import SpanAssembler
from exporter.history.catalogue import WORKFLOW_METRICS
from exporter.model import HistoryError
from tests.corpus import recorded_histories

HISTORIES = list(recorded_histories())
METRICS = {spec.name for spec in WORKFLOW_METRICS}
BAD_VALUES: list[Any] = [None, "x", -1, 0, 2**70, 1.5, True, [], {}, "", "\x00\n\u202e"]


def corrupt(events: list[dict[str, Any]], rng: random.Random, edits: int) -> list[dict[str, Any]]:
    events = copy.deepcopy(events)
    for _ in range(edits):
        if not events:
            break
        at = rng.randrange(len(events))
        kind = rng.choice(["drop", "duplicate", "swap", "mistype", "cut_details", "retype"])
        if kind == "drop":
            del events[at]
        elif kind == "duplicate":
            events.insert(at, copy.deepcopy(events[at]))
        elif kind == "swap":
            other = rng.randrange(len(events))
            events[at], events[other] = events[other], events[at]
        elif kind == "mistype":
            field = rng.choice(["id", "previousEventId", "timestamp", "type"])
            events[at][field] = rng.choice(BAD_VALUES)
        elif kind == "retype":  # a real type on the wrong event: details do not match it
            events[at]["type"] = rng.choice(events)["type"]
        else:
            for key, value in list(events[at].items()):
                if key.endswith("EventDetails"):
                    events[at][key] = (
                        {k: v for k, v in value.items() if rng.random() < 0.5}
                        if isinstance(value, dict) and rng.random() < 0.8
                        else rng.choice(BAD_VALUES)
                    )
    return events


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(HISTORIES) - 1),
    seed=st.integers(0, 2**32),
    edits=st.integers(1, 6),
    batch=st.integers(1, 40),
)
def test_corrupted_histories_give_documented_errors_or_anomalies_never_a_crash(
    index: int, seed: int, edits: int, batch: int
) -> None:
    history = HISTORIES[index]
    rng = random.Random(seed)
    events = corrupt(history.events, rng, edits)
    assembler = SpanAssembler(history.identity)
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        before = assembler.last_event_id
        try:
            out = assembler.feed(chunk)
        except HistoryError as exc:
            assert str(exc), "a HistoryError says what is wrong"
            assert assembler.last_event_id == before  # refused whole: nothing consumed
            continue
        for span in out.spans:
            assert (span.end_ns is not None and span.end_ns >= span.start_ns) or span.end_ns is None
            assert 0 < span.span_id < 2**64 and 0 < span.trace_id < 2**128
        assert {o.metric for o in out.observations} <= METRICS
    for span in assembler.open_spans():
        assert span.end_ns is None
