"""When can an execution next change? Not before every running state is a Wait that has ended."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.model import SpanKind, SpanRecord


def _states(definition: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (name, state) of a definition, branches and Map iterators included."""
    states = definition.get("States")
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        yield name, state
        for branch in state.get("Branches") or ():
            if isinstance(branch, Mapping):
                yield from _states(branch)
        for key in ("Iterator", "ItemProcessor"):
            inner = state.get(key)
            if isinstance(inner, Mapping):
                yield from _states(inner)


def wait_end(definition: Mapping[str, Any] | None, state_name: str, entered_s: float) -> float | None:
    """Epoch seconds at which the Wait state `state_name`, entered at `entered_s`, ends; None when
    the definition does not say (a path into the input, or two different states of that name)."""
    if not definition:
        return None
    ends: set[float] = set()
    for name, state in _states(definition):
        if name != state_name or state.get("Type") != "Wait":
            continue
        seconds = state.get("Seconds")
        stamp = state.get("Timestamp")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            ends.add(entered_s + float(seconds))
        elif isinstance(stamp, str) and not stamp.startswith("{%"):
            try:
                ends.add(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
            except ValueError:
                return None
        else:
            return None
    return ends.pop() if len(ends) == 1 else None


@dataclass(frozen=True)
class Quiet:
    """Until when an execution is unlikely to change, and whether that is a guess."""

    until: float  # epoch seconds
    guessed: bool  # from past durations of a state, not only from Waits' known ends


def quiet_until(
    open_spans: list[SpanRecord], definition: Mapping[str, Any] | None,
    durations: DurationModel | None = None, state_machine: str = "",
) -> Quiet | None:  # fmt: skip
    """When the execution can next produce an event: if every innermost open span is a Wait
    state whose end the definition gives, or a state whose past visits `durations` knows, the
    earliest of those ends (for a state known from past visits, the earliest it is likely to end)."""
    parents = {span.parent_span_id for span in open_spans}
    by_id = {span.span_id: span for span in open_spans}
    leaves = [span for span in open_spans if span.span_id not in parents]
    ends = []
    guessed = False
    for leaf in leaves:
        if leaf.kind in (SpanKind.TASK, SpanKind.LAMBDA, SpanKind.ACTIVITY):
            leaf = by_id.get(leaf.parent_span_id or 0, leaf)  # noqa: PLW2901 (an attempt: its state decides)
        if leaf.kind == SpanKind.PARALLEL_BRANCH:
            continue  # a branch opens with its first state: with none open, it is done
        if leaf.kind == SpanKind.STATE and leaf.state_type == "Wait":
            end = wait_end(definition, leaf.name, leaf.start_ns / 1e9)
        elif leaf.kind == SpanKind.STATE and durations is not None:
            end = durations.earliest_end(state_machine, leaf.name, leaf.start_ns / 1e9)
            guessed = True
        else:
            return None
        if end is None:
            return None
        ends.append(end)
    return Quiet(min(ends), guessed) if ends else None


class DurationModel:
    """What recent visits of each state took, per state machine: a bounded sample per state.

    A state that has always taken at least a minute is not worth polling in its first seconds:
    `earliest_end` gives a fraction (`margin`) of a low quantile of the durations seen
    (interpolated; by default 80% of the shortest), once there are enough of them. A visit that
    ends before it is the price: it is seen late, by at most that much."""

    def __init__(
        self, keep: int = 64, min_samples: int = 8, quantile: float = 0.0, margin: float = 0.8
    ) -> None:
        self._keep = keep
        self._min_samples = min_samples
        self._quantile = quantile
        self._margin = margin  # a fraction of that quantile: below 1, a little early
        self._samples: dict[tuple[str, str], list[float]] = {}

    def observe(self, state_machine: str, state: str, seconds: float) -> None:
        sample = self._samples.setdefault((state_machine, state), [])
        sample.append(seconds)
        if len(sample) > self._keep:
            del sample[0]

    def earliest_end(self, state_machine: str, state: str, entered_s: float) -> float | None:
        sample = self._samples.get((state_machine, state))
        if sample is None or len(sample) < self._min_samples:
            return None
        ordered = sorted(sample)
        position = self._quantile * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        seconds = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
        return entered_s + self._margin * seconds
