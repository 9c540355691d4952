"""Which process owns which state machine, when the work is split over shards.

A state machine belongs to the shard that scores highest for its ARN (rendezvous hashing): every
process computes the same answer with no coordinator, and when the number of shards changes
from M to M', only the state machines whose winner changed move (about |M' - M| / max(M, M') of
them), never a reshuffle of all.

The hand-over rule, when state machines move (the number of shards changed, or a shard starts
with no checkpoint of its own): the new owner rebuilds each moved execution's state from its
history and exports and counts only what happens after its start. An execution that began
before the move and has no cursor of this process newer than the move is "taken over": its
history up to the first read is replayed without emitting anything; what ends later is
exported as usual (a span that opened before the move and closes after it is exported whole,
once, by the new owner). What ended between the previous owner's last read and the new owner's
first read is exported by neither: nothing is counted twice, at the cost of a gap as long as the
hand-over. The previous owner stops reading the state machine when it restarts with the new
layout."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

_ORDINAL = re.compile(r"-(\d+)$")


@lru_cache(maxsize=65536)
def owner(key: str, total: int) -> int:
    """The shard, 0 to total-1, that owns `key` (a state machine ARN)."""
    if total <= 1:
        return 0
    scores = [hashlib.blake2b(f"{shard}\0{key}".encode(), digest_size=8).digest() for shard in range(total)]
    return max(range(total), key=scores.__getitem__)


def ordinal(name: str) -> int | None:
    """A StatefulSet pod's ordinal from its name (`sfn-exporter-3` -> 3), or None."""
    match = _ORDINAL.search(name.strip())
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Layout:
    """This process's place in the fleet, and the one its checkpoint last recorded."""

    shard: int = 0
    total: int = 1
    previous: tuple[int, int] | None = None  # (shard, total) before the change; None: no record
    changed_at: float = 0.0  # epoch seconds the layout last changed (0: it never did)

    def owns(self, arn: str) -> bool:
        return owner(arn, self.total) == self.shard

    def moved_in(self, arn: str) -> bool:
        """Whether `arn` came to this shard at the last change (it was another's, or this shard
        has no record of owning it: a new shard of a fleet, which was someone else's)."""
        if self.changed_at == 0.0:
            return False
        if self.previous is None:
            return True
        shard, total = self.previous
        return owner(arn, total) != shard

    def encode(self) -> str:
        before = "-" if self.previous is None else f"{self.previous[0]}/{self.previous[1]}"
        return f"{self.shard}/{self.total} {before} {self.changed_at!r}"

    @staticmethod
    def decode(text: str) -> Layout:
        """What `encode` wrote; ValueError when it is not that."""
        current, before, changed = text.split(" ")
        shard, total = (int(part) for part in current.split("/"))
        previous = None
        if before != "-":
            was_shard, was_total = (int(part) for part in before.split("/"))
            previous = (was_shard, was_total)
        return Layout(shard, total, previous, float(changed))

    def after_start(self, shard: int, total: int, now: float) -> Layout:
        """The layout to run with, given this one (the checkpoint's record) and the process's:
        the same record when nothing changed, else a change at `now`."""
        if (shard, total) == (self.shard, self.total):
            return self
        return Layout(shard, total, (self.shard, self.total), now)

    @staticmethod
    def first(shard: int, total: int, now: float) -> Layout:
        """With no record: a lone process starts afresh; a shard of a fleet takes over (its
        state machines may have been another's, whose exports it must not repeat)."""
        return Layout(shard, total, None, now if total > 1 else 0.0)
