"""An asyncio event loop on a virtual clock: when nothing is ready, time jumps to the next timer.

For benchmarks that run the real exporter code over hours of simulated time in seconds. Only
for code that does no real I/O and starts no threads (a thread finishing would not be waited
for: time would run on)."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from typing import Any


class _VirtualSelector(selectors.DefaultSelector):
    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("virtual time: nothing is scheduled and nothing can wake the loop")
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = start

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def run_until(
    loop: VirtualTimeLoop, exporter: Any, done: Callable[[], bool], limit: float = float("inf")
) -> None:
    """Run `exporter` on `loop` until `done()` holds (checked each virtual second) or the loop's
    clock reaches `limit`; then stop it as a shutdown does."""

    async def main() -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            while not done() and loop.time() < limit:
                await asyncio.sleep(1)
            stop.set()

        watcher = asyncio.create_task(watch())
        await exporter.run(stop)
        await watcher

    loop.run_until_complete(main())
