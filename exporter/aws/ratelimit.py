"""Token buckets, one per AWS API operation, that slow down when AWS says they throttle."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# After a ThrottlingException the refill rate is halved (at most once a second, since one burst
# of throttles is one signal), down to a floor; after a calm spell it climbs back by a quarter a
# second, so a storm of a few seconds costs seconds, not minutes.
_PENALTY = 0.5
_FLOOR = 0.05
_PENALTY_SPACING_S = 1.0
_CALM_S = 2.0
_RECOVERY_PER_S = 1.25


@dataclass
class TokenBucket:
    capacity: float
    refill_per_second: float
    tokens: float
    updated: float
    factor: float = 1.0  # 1.0 is full speed; throttles lower it
    last_throttle: float = float("-inf")

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        if self.factor < 1.0 and now - self.last_throttle > _CALM_S:
            calm = min(elapsed, now - self.last_throttle - _CALM_S)
            self.factor = min(1.0, self.factor * _RECOVERY_PER_S**calm)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_second * self.factor)
        self.updated = now

    def wait_for_one(self) -> float:
        """Seconds until one token is there (0 if it is)."""
        missing = 1.0 - self.tokens
        # a hair short of a token is a token: float rounding must not make callers spin
        return 0.0 if missing <= 1e-9 else missing / (self.refill_per_second * self.factor)


# Calls taken before the code that makes them was chosen: `RateLimiter.prepay`.
_PREPAID: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "sfn_exporter_prepaid", default=None
)


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
        held = _PREPAID.get()
        if held is not None and operation in held:
            held.remove(operation)  # taken already (see `prepay`)
            return
        bucket = self._buckets[operation]
        async with self._locks[operation]:  # first come, first served
            while True:
                bucket.refill(self._clock())
                delay = bucket.wait_for_one()
                if delay <= 0:
                    bucket.tokens -= 1
                    return
                delay = max(delay, 0.001)
                self.waited_seconds[operation] += delay
                await self._sleep(delay)

    def prepay(self, operation: str) -> contextvars.Context:
        """A context whose first `acquire(operation)` goes at once: the caller has acquired that
        call already. So a dispatcher can wait for a free call first and only then choose what to
        spend it on. Run the work in the context, then `refund` it."""
        context = contextvars.copy_context()
        context.run(_PREPAID.set, [operation])
        return context

    def refund(self, context: contextvars.Context) -> None:
        """Gives back the calls `context` was prepaid and did not make."""
        for operation in context.get(_PREPAID) or ():
            bucket = self._buckets[operation]
            bucket.tokens = min(bucket.capacity, bucket.tokens + 1)

    def throttled(self, operation: str) -> None:
        """AWS answered ThrottlingException: the account's bucket is shared, so slow down."""
        bucket = self._buckets[operation]
        now = self._clock()
        bucket.refill(now)
        if now - bucket.last_throttle >= _PENALTY_SPACING_S:
            bucket.factor = max(_FLOOR, bucket.factor * _PENALTY)
        bucket.last_throttle = now
        bucket.tokens = min(bucket.tokens, 0.0)

    def rate(self, operation: str) -> float:
        """Calls per second currently allowed for `operation`."""
        bucket = self._buckets[operation]
        return bucket.refill_per_second * bucket.factor

    def spare(self, operation: str) -> bool:
        """Whether a call of `operation` could go now without waiting (nobody waits for one)."""
        return self.available(operation) >= 1

    def available(self, operation: str) -> float:
        bucket = self._buckets[operation]
        bucket.refill(self._clock())
        return bucket.tokens
