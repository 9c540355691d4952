"""Token buckets, one per AWS API operation, that slow down when AWS says they throttle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# After a ThrottlingException the refill rate is multiplied by this, down to a floor; every
# success gives back a small part, so the rate climbs again while AWS keeps answering.
_PENALTY = 0.5
_FLOOR = 0.05
_RECOVERY = 1.02


@dataclass
class TokenBucket:
    capacity: float
    refill_per_second: float
    tokens: float
    updated: float
    factor: float = 1.0  # 1.0 is full speed; throttles lower it

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_second * self.factor)
        self.updated = now

    def wait_for_one(self) -> float:
        """Seconds until one token is there (0 if it is)."""
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 0 else missing / (self.refill_per_second * self.factor)


class RateLimiter:
    """`await acquire(op)` before each call of `op`. Clock and sleep are injected for tests."""

    def __init__(
        self,
        quotas: dict[str, tuple[float, float]],
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        now = clock()
        self._clock = clock
        self._sleep = sleep
        self._buckets = {op: TokenBucket(cap, rate, cap, now) for op, (cap, rate) in quotas.items()}
        self._locks = {op: asyncio.Lock() for op in quotas}
        self.waited_seconds = dict.fromkeys(quotas, 0.0)

    async def acquire(self, operation: str) -> None:
        bucket = self._buckets[operation]
        async with self._locks[operation]:  # first come, first served
            while True:
                bucket.refill(self._clock())
                delay = bucket.wait_for_one()
                if delay <= 0:
                    bucket.tokens -= 1
                    return
                self.waited_seconds[operation] += delay
                await self._sleep(delay)

    def throttled(self, operation: str) -> None:
        """AWS answered ThrottlingException: the account's bucket is shared, so slow down."""
        bucket = self._buckets[operation]
        bucket.refill(self._clock())
        bucket.factor = max(_FLOOR, bucket.factor * _PENALTY)
        bucket.tokens = min(bucket.tokens, 0.0)

    def succeeded(self, operation: str) -> None:
        bucket = self._buckets[operation]
        if bucket.factor < 1.0:
            bucket.refill(self._clock())
            bucket.factor = min(1.0, bucket.factor * _RECOVERY)

    def rate(self, operation: str) -> float:
        """Calls per second currently allowed for `operation`."""
        bucket = self._buckets[operation]
        return bucket.refill_per_second * bucket.factor

    def available(self, operation: str) -> float:
        bucket = self._buckets[operation]
        bucket.refill(self._clock())
        return bucket.tokens
