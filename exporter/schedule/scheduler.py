"""PollScheduler: which execution to poll next, and when.

Busy executions are polled again soon, idle ones back off, an execution sitting in a Wait state
is left alone until the wait can end, and none is polled twice at once. How far idle ones back
off follows the API budget: with calls to spare they are polled more often than the configured
maximum interval would have it (down to what the budget sustains), and when the budget cannot
cover every execution the interval stretches to what it can. An execution in a state whose past
visits tell when it is likely to end (see `exporter.schedule.waits.DurationModel`) is parked until then
and polled at the budget's pace after it, rather than backing off from the minimum interval.

Polls come out in two classes. Urgent ones are for what is known to be there or about to be: a
new or woken execution, a Wait's end, the rest of a burst just read. Paced ones are guesses: an
idle execution's back-off, a state that may end any moment. Due urgent polls go first (oldest
due first), then due paced ones (oldest due first); the caller takes only as many as it can
start now, so when the budget is short an urgent poll waits for the next free call, not behind
every paced poll that fell due before it, and every execution is still polled, each a little
late (reported as staleness)."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(eq=False, slots=True)
class Slot:
    """Scheduling state of one execution."""

    key: str
    due: float
    interval: float
    in_flight: bool = False
    failures: int = 0
    parked: bool = False  # waiting for a Wait state to end, or for its state to be likely to
    opens: float = 0.0  # parked on a guess until then
    urgent: bool = True  # its next poll is for something known to be there (see the module's doc)


class PollScheduler:
    def __init__(
        self, min_interval: float, max_interval: float, clock: Callable[[], float],
        jitter: Callable[[], float] = random.random, budget: Callable[[], float] | None = None,
    ) -> None:  # fmt: skip
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._clock = clock
        self._jitter = jitter
        self._budget = budget  # history polls per second the rate limiter allows now
        self._waiting = 0  # slots parked until a Wait ends or their state is likely to: no polls meanwhile
        self._slots: dict[str, Slot] = {}
        self._heap: list[tuple[float, int, str]] = []  # paced slots by due
        self._urgent: list[tuple[float, int, str]] = []  # urgent slots by due
        self._opening: list[tuple[float, int, str]] = []  # (opens, _, key) of slots parked on a guess
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: str) -> bool:
        return key in self._slots

    def _push(self, slot: Slot) -> None:
        heapq.heappush(self._urgent if slot.urgent else self._heap, (slot.due, next(self._seq), slot.key))

    def _current(self, heap: list[tuple[float, int, str]], when: float, key: str) -> Slot | None:
        """The slot a heap entry stands for, or None if the entry is stale: the slot was removed,
        is out being polled, or was rescheduled (to another time or class) since."""
        slot = self._slots.get(key)
        if slot is None or slot.in_flight or slot.due != when or slot.urgent != (heap is self._urgent):
            return None
        return slot

    def add(self, key: str, delay: float = 0.0) -> None:
        if key in self._slots:
            return
        slot = Slot(key, self._clock() + delay, self.min_interval)
        self._slots[key] = slot
        self._push(slot)

    def remove(self, key: str) -> None:
        slot = self._slots.pop(key, None)  # its heap entry is skipped when it surfaces
        if slot is not None and slot.parked:
            self._waiting -= 1

    def idle_cap(self) -> float:
        """The longest an idle execution waits for its next poll: the interval at which the
        budget could poll every execution not parked in a Wait (all of it: urgent polls go first),
        bounded below by the minimum interval. Without a budget: the configured maximum."""
        if self._budget is None:
            return self.max_interval
        self._open_due()
        active = max(1, len(self._slots) - self._waiting)
        return max(self.min_interval, active / max(1e-9, self._budget()))

    def _open_due(self) -> None:
        """Slots parked until their state was likely to end, and now there: active again."""
        now = self._clock()
        while self._opening and self._opening[0][0] <= now:
            when, _, key = heapq.heappop(self._opening)
            slot = self._slots.get(key)
            if slot is not None and slot.parked and slot.opens == when:
                self._park(slot, False)

    def wake(self, key: str) -> None:
        """Poll soon: discovery saw this execution change status."""
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.interval = self.min_interval
        self._park(slot, False)
        now = self._clock()
        if not slot.in_flight and (slot.due > now or not slot.urgent):
            slot.due, slot.urgent = min(slot.due, now), True
            self._push(slot)

    def pop_due(self, limit: int | None = None) -> list[str]:
        """Keys due now, at most `limit`: urgent ones first, then paced ones, each oldest due
        first. They are in flight until `done`."""
        now = self._clock()
        due: list[str] = []
        for heap in (self._urgent, self._heap):
            while heap and heap[0][0] <= now and (limit is None or len(due) < limit):
                when, _, key = heapq.heappop(heap)
                slot = self._current(heap, when, key)
                if slot is not None:
                    slot.in_flight = True
                    due.append(key)
        return due

    def next_due(self, urgent_only: bool = False) -> float | None:
        """When the next poll (or the next urgent one) falls due; None: nothing waits."""
        earliest = None
        for heap in (self._urgent,) if urgent_only else (self._urgent, self._heap):
            while heap and self._current(heap, heap[0][0], heap[0][2]) is None:
                heapq.heappop(heap)
            if heap and (earliest is None or heap[0][0] < earliest):
                earliest = heap[0][0]
        return earliest

    def done(
        self, key: str, found_events: bool, not_before: float | None = None, failed: bool = False,
        steady: bool = False, by: float | None = None,
    ) -> None:  # fmt: skip
        """A poll ended: schedule the next one. `not_before` (monotonic time) keeps it away
        until, say, a Wait state can end. `steady`: the execution is in a state whose past visits
        say when it is likely to end; from `not_before` on, it is polled at the pace the budget
        sustains rather than backing off from the minimum interval (that back-off is for
        executions nothing is known of), and polled at `by` if that comes before a pace is up:
        when the budget's pace is longer than the state's visits, the first poll goes when the
        visit has almost surely ended rather than a whole pace after it was likely to."""
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.in_flight = False
        now = self._clock()
        if steady and not failed and not_before is not None:
            # polled every `pace` from the moment the state is likely to end; counted among the
            # executions the pace is shared by from then on, not before
            slot.failures = 0
            slot.interval = self.idle_cap()
            slot.due = max(now, not_before) + slot.interval
            if by is not None:
                slot.due = max(min(slot.due, by), now, not_before)
            slot.urgent = False
            self._park(slot, not_before > now)
            if slot.parked:
                slot.opens = not_before
                heapq.heappush(self._opening, (not_before, next(self._seq), key))
            self._push(slot)
            return
        if failed:
            slot.failures += 1
            backoff = min(self.max_interval, self.min_interval * 2 ** min(slot.failures, 10))
            slot.interval = backoff * (0.5 + self._jitter() / 2)  # jittered, capped
        else:
            slot.failures = 0
            slot.interval = self.min_interval if found_events else min(self.idle_cap(), slot.interval * 2)
        slot.due = now + slot.interval
        slot.urgent = found_events and not failed  # the rest of what was just read
        parked = not_before is not None and not_before > slot.due
        if parked:
            slot.due = not_before  # type: ignore[assignment]
            slot.urgent = not failed  # a Wait's end
        self._park(slot, parked)
        self._push(slot)

    def _park(self, slot: Slot, parked: bool) -> None:
        if slot.parked != parked:
            self._waiting += 1 if parked else -1
            slot.parked = parked

    def staleness(self) -> float:
        """How late the most overdue execution is (waiting in the queue or not yet taken)."""
        now = self._clock()
        overdue = [now - slot.due for slot in self._slots.values() if slot.due < now]
        return max(overdue, default=0.0)
