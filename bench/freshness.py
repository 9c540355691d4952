"""Freshness under quota: lag from an event's appearance to its export, for three schedulers
spending the same API budget, with 100, 1,000 and 10,000 running executions.

    python -m bench.freshness [--sizes 100,1000,10000] [--hours 3]

The real exporter (discovery, scheduler, rate limiter, tail, assembler, checkpoint) runs against
the in-process simulator at the default quotas (the exporter's share: half of each), on a
virtual clock, so hours of simulated time take minutes. Executions sit in long Wait and Task
states (the workload is below). Schedulers:
- `exporter`: this project's PollScheduler (Wait-aware, budget-aware back-off);
- `round-robin`: every execution polled at one fixed interval, the shortest the budget sustains;
- `oracle`: knows from the simulator when each execution's next event appears and polls right
  then; same discovery, same budget. Its lag is what the budget alone forces.
Lag is measured for the events that appear after a warm-up (the first reading of every history)."""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from bench.virtual_time import VirtualTimeLoop
from exporter.checkpoint import CursorStore
from exporter.config import DEFAULT_QUOTAS, Config
from exporter.daemon import Exporter, Tracked
from exporter.health import HealthMetrics
from exporter.metrics import WorkflowMetrics
from exporter.ratelimit import RateLimiter
from exporter.scheduler import PollScheduler
from exporter.source import AwsStepFunctions
from tests.builder import History
from tests.sfn_simulator import DirectClient, Simulator, Template
from tests.workloads import LAMBDA, waiter_definition

EPOCH = 1_700_000_000.0
MACHINES = 20


class SyncStore(CursorStore):
    """The checkpoint without a thread (virtual time cannot wait for one)."""

    async def save(self, arn: str, event_id: int, finished: bool, redrives: int = 0) -> None:
        self.save_now(arn, event_id, finished, redrives)


class NullSink:
    """Accepts every span at once: this benchmark is about when polls happen."""

    def __init__(self) -> None:
        self.spans = 0

    def start(self) -> None:
        pass

    async def export(self, spans: Any) -> None:
        self.spans += len(spans)

    async def close(self, timeout_s: float) -> None:
        pass


class RoundRobinScheduler(PollScheduler):
    """Every execution at one fixed interval, whatever it found."""

    def __init__(self, interval: float, clock: Any) -> None:
        super().__init__(interval, interval, clock)
        self.interval = interval

    def done(
        self, key: str, found_events: bool, not_before: float | None = None, failed: bool = False,
        steady: bool = False,
    ) -> None:  # fmt: skip
        super().done(key, found_events=True)


class OracleScheduler(PollScheduler):
    """Polls an execution exactly when its next event appears (the simulator tells)."""

    def __init__(self, sim: Simulator, clock: Any) -> None:
        super().__init__(1.0, 1e9, clock)
        self.sim = sim
        self.exporter: Exporter | None = None

    def done(
        self, key: str, found_events: bool, not_before: float | None = None, failed: bool = False,
        steady: bool = False,
    ) -> None:  # fmt: skip
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.in_flight = False
        tracked = self.exporter.tracked.get(key) if self.exporter else None
        cursor = tracked.assembler.last_event_id if tracked and tracked.assembler else 0
        appears = self.sim.next_appearance(key, cursor)
        now = self._clock()
        # a millisecond after it appears: float rounding must not make it invisible at "its" instant
        slot.due = now + 1.0 if failed or appears is None else max(now + 0.001, appears - EPOCH + 0.001)
        self._push(slot)


@dataclass
class Result:
    scheduler: str
    size: int
    lags: list[float]
    history_calls: int
    unexported: int

    def quantile(self, q: float) -> float:
        if not self.lags:
            return math.nan
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _template(rng: random.Random, wait_s: int, task_median: float, horizon: float, chain: bool) -> Template:
    """Waiters: Fetch (a Lambda task), Sleep (a fixed Wait), Check, over and over. Chains: long
    tasks back to back. Task durations are lognormal around a per-state-machine median."""
    h = History()
    offsets = [0.0]
    now = 0.0
    h.add("ExecutionStarted", prev=0, input="{}")

    def add(event_type: str, gap: float = 0.05, **details: Any) -> None:
        nonlocal now
        now += gap
        offsets.append(now)
        h.add(event_type, **details)

    while now < horizon:
        add("TaskStateEntered", name="Fetch")
        add("TaskScheduled", **LAMBDA)
        add("TaskStarted", **LAMBDA)
        add("TaskSucceeded", gap=task_median * math.exp(rng.gauss(0, 0.3)), output="{}", **LAMBDA)
        add("TaskStateExited", name="Fetch")
        if not chain:
            add("WaitStateEntered", name="Sleep")
            add("WaitStateExited", gap=wait_s, name="Sleep")
        add("ChoiceStateEntered", name="Check")
        add("ChoiceStateExited", name="Check")
    add("ExecutionSucceeded")
    return Template("bench", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])


def build(sim: Simulator, size: int, seed: int, horizon: float) -> None:
    rng = random.Random(seed)
    for m in range(MACHINES):
        chain = m % 10 >= 7  # 30% of the state machines chain tasks without waits
        wait_s = rng.choice([1800, 2700, 3600])
        task_median = rng.uniform(900, 3600) if chain else rng.uniform(60, 900)
        machine = sim.add_machine(f"machine-{m:02d}", waiter_definition(wait_s))
        for n in range(size // MACHINES):
            # started earlier, each at its own phase
            start = EPOCH - rng.uniform(0, wait_s)
            sim.start(
                machine,
                _template(rng, wait_s, task_median, horizon + wait_s, chain),
                f"e-{n:05d}",
                start=start,
            )


class VirtualRun:
    """The real exporter against the in-process simulator on a virtual clock (no HTTP, no
    threads): hours of simulated time in minutes. Add state machines and executions to `sim`,
    then `run`."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.loop = VirtualTimeLoop()
        asyncio.set_event_loop(self.loop)
        self.sim = Simulator(clock=self.wall)
        self.config = Config.model_validate(
            {"checkpoint": {"path": ":memory:"}, "discovery": {"lookback_seconds": 0}, **(settings or {})}
        )
        quotas = {op: self.config.api.quota(op) for op in DEFAULT_QUOTAS}
        self.limiter = RateLimiter(
            {op: (q.bucket, q.refill_per_second) for op, q in quotas.items()}, clock=self.loop.time
        )
        self.budget = quotas["GetExecutionHistory"].refill_per_second  # history calls a second

    def wall(self) -> float:
        return EPOCH + self.loop.time()

    def run(
        self, seconds: float, scheduler: PollScheduler | None = None,
        on_events: Callable[[Tracked, list[int]], None] | None = None, client: Any = None,
    ) -> Exporter:  # fmt: skip
        registry = CollectorRegistry()
        health = HealthMetrics(registry)
        api = AwsStepFunctions(client or DirectClient(self.sim), self.limiter, health)
        exporter = Exporter(
            self.config, api, SyncStore(":memory:"), NullSink(), WorkflowMetrics(registry), health,  # type: ignore[arg-type]
            clock=self.loop.time, wall=self.wall, on_events=on_events, scheduler=scheduler,
            budget=lambda: self.limiter.rate("GetExecutionHistory"),
        )  # fmt: skip
        if isinstance(scheduler, OracleScheduler):
            scheduler.exporter = exporter

        async def main() -> None:
            stop = asyncio.Event()
            self.loop.call_later(seconds, stop.set)
            await exporter.run(stop)

        self.loop.run_until_complete(main())
        self.loop.close()
        asyncio.set_event_loop(None)
        return exporter


def run(size: int, scheduler: str, hours: float, seed: int = 1, warmup: float | None = None) -> Result:
    virtual = VirtualRun()
    horizon = hours * 3600
    sim = virtual.sim
    build(sim, size, seed, horizon)
    budget = virtual.budget
    chosen: PollScheduler | None = None
    if scheduler == "round-robin":
        chosen = RoundRobinScheduler(max(1.0, size / budget), virtual.loop.time)
    elif scheduler == "oracle":
        chosen = OracleScheduler(sim, virtual.loop.time)
    lags: list[float] = []
    warmup = max(1800.0, 2 * size / budget) if warmup is None else warmup

    def on_events(tracked: Tracked, times_ns: list[int]) -> None:
        now = virtual.wall()
        lags.extend(now - t / 1e9 for t in times_ns if t / 1e9 - EPOCH >= warmup)

    virtual.run(horizon, chosen, on_events)
    # events that appeared in the measured window but were never exported: lag at least until the end
    exported_after_warmup = len(lags)
    appeared = sum(
        1 for e in sim.executions.values() for offset in e.template.offsets
        if warmup <= e.start + offset - EPOCH <= horizon
    )  # fmt: skip
    unexported = max(0, appeared - exported_after_warmup)
    return Result(scheduler, size, lags, sim.calls["GetExecutionHistory"], unexported)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{'executions':>10} {'scheduler':<12} {'events':>8} {'p50 lag s':>10} {'p99 lag s':>10} {'history calls':>14} {'unexported':>10} {'wall s':>7}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        results = {}
        for scheduler in ("exporter", "round-robin", "oracle"):
            started = time.perf_counter()
            result = run(size, scheduler, args.hours, args.seed)
            results[scheduler] = result
            print(
                f"{size:>10,} {scheduler:<12} {len(result.lags):>8,} {result.quantile(0.5):>10.1f} "
                f"{result.quantile(0.99):>10.1f} {result.history_calls:>14,} {result.unexported:>10,} "
                f"{time.perf_counter() - started:>7.1f}",
                flush=True,
            )
        ours, rr, oracle = results["exporter"], results["round-robin"], results["oracle"]
        print(
            f"{'':>10} p99 exporter/oracle = {ours.quantile(0.99) / max(oracle.quantile(0.99), 1e-9):.2f}x, "
            f"round-robin/exporter = {rr.quantile(0.99) / max(ours.quantile(0.99), 1e-9):.2f}x, "
            f"p50 exporter {statistics.median(ours.lags) if ours.lags else math.nan:.1f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
