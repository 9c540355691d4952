"""Freshness under quota: lag from an event's appearance to its export, for three schedulers
spending the same API budget, with 100, 1,000 and 10,000 running executions.

    python -m bench.freshness [--sizes 100,1000,10000] [--hours 3] [--workloads steady,fanout,slowdown]
                              [--seeds 1,2,3]

The real exporter (discovery, scheduler, rate limiter, tail, assembler, checkpoint) runs against
the in-process simulator at the default quotas (the exporter's share: half of each), on a
virtual clock, so hours of simulated time take minutes. Executions sit in long Wait and Task
states (the workload is below). Schedulers:
- `exporter`: this project's PollScheduler (Wait-aware, budget-aware, learning state durations);
- `round-robin`: every execution polled at one fixed interval, the shortest the budget sustains;
- `oracle`: knows from the simulator when each execution's next event appears and polls right
  then; same discovery, same budget. Its lag is what the budget alone forces.
A fourth row, `bound`, is computed, not run: the lowest p99 any scheduler that does not know the
future could reach with the same budget on this workload (`p99_lower_bound`). It is what "better
than round-robin" can be at most, and what the exporter is measured against.
Lag is measured for the events that appear after a warm-up (the first reading of every history).

Workloads (`--workloads`): `steady` (below); `fanout`, the same with an inline Map of 20 to 80
parallel Lambda iterations after half the waiters' tasks (bursts of 80 to 320 events twice
within seconds); `slowdown`, the same as `steady` until half way, then every task takes three
times as long (a downstream slowdown: what the exporter learned of durations is wrong). The
`bound` holds for `steady` only."""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from bench.virtual_time import VirtualTimeLoop
from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import AwsCloudWatchLogs, AwsStepFunctions
from exporter.checkpoint import CursorStore
from exporter.config import DEFAULT_QUOTAS, Config
from exporter.daemon import Exporter, Tracked
from exporter.emit.health import HealthMetrics
from exporter.emit.metrics import WorkflowMetrics
from exporter.schedule.scheduler import PollScheduler
from exporter.shards import Layout
from simulator.builder import History
from simulator.logs import Logging
from simulator.stepfunctions import ACCOUNT, REGION, DirectClient, DirectLogsClient, Simulator, Template
from tests.workloads import LAMBDA, waiter_definition

EPOCH = 1_700_000_000.0
MACHINES = 20


class SyncStore(CursorStore):
    """The checkpoint without a thread (virtual time cannot wait for one)."""

    async def save(
        self, arn: str, event_id: int, finished: bool, redrives: int = 0, state: bytes | None = None
    ) -> None:
        self.save_now(arn, event_id, finished, redrives, state)


class NullSink:
    """Accepts every span at once: this benchmark is about when polls happen."""

    def __init__(self) -> None:
        self.spans = 0

    def start(self) -> None:
        pass

    async def export(self, spans: Any) -> None:
        self.spans += len(spans.records)

    async def close(self, timeout_s: float) -> None:
        pass


class RoundRobinScheduler(PollScheduler):
    """Every execution at one fixed interval, whatever it found."""

    def __init__(self, interval: float, clock: Any) -> None:
        super().__init__(interval, interval, clock)
        self.interval = interval

    def done(
        self, key: str, found_events: bool, not_before: float | None = None, failed: bool = False,
        steady: bool = False, by: float | None = None,
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
        steady: bool = False, by: float | None = None,
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
    budget: float  # history calls a second the measured window allowed (the bucket spread over it)
    log_calls: int = 0
    exported: int = 0  # events exported over the whole run

    @property
    def calls_per_1000_events(self) -> float:
        """Step Functions and CloudWatch Logs calls (discovery's left out) per 1,000 events."""
        return 1000 * (self.history_calls + self.log_calls) / max(1, self.exported)

    def quantile(self, q: float) -> float:
        if not self.lags:
            return math.nan
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


SIGMA = 0.3  # spread of task durations: lognormal around each state machine's median
# Events of one loop, and of those the ones that appear with a task's end (below, `_template`):
# a waiter's loop has 9, three with the end (TaskSucceeded, TaskStateExited, WaitStateEntered) and
# six with the Wait's; a chain's loop has 7, all with the end.
WAITER_LOOP, WAITER_TASK_END = 9, 3
CHAIN_LOOP = CHAIN_TASK_END = 7


@dataclass(frozen=True)
class Shape:
    """One state machine of the workload."""

    chain: bool  # tasks back to back; otherwise a task, then a Wait
    wait_s: int
    task_median: float


def shapes(seed: int) -> list[Shape]:
    rng = random.Random(seed)
    out = []
    for m in range(MACHINES):
        chain = m % 10 >= 7  # 30% of the state machines chain tasks without waits
        wait_s = rng.choice([1800, 2700, 3600])
        out.append(Shape(chain, wait_s, rng.uniform(900, 3600) if chain else rng.uniform(60, 900)))
    return out


WORKLOADS = ("steady", "fanout", "slowdown")


def _template(
    rng: random.Random, shape: Shape, horizon: float, workload: str = "steady", slow_after: float = math.inf
) -> Template:
    """Waiters: Fetch (a Lambda task), Sleep (a fixed Wait), Check, over and over. Chains: long
    tasks back to back. Task durations are lognormal around a per-state-machine median. With
    `fanout`, half of the waiters' loops fan out through a Map after Fetch; with `slowdown`, tasks
    take three times as long from `slow_after` seconds into the execution."""
    h = History()
    offsets = [0.0]
    now = 0.0
    h.add("ExecutionStarted", prev=0, input="{}")

    def add(event_type: str, gap: float = 0.05, prev: int | None = None, **details: Any) -> int:
        nonlocal now
        now += gap
        offsets.append(now)
        return h.add(event_type, prev=prev, **details)

    while now < horizon:
        add("TaskStateEntered", name="Fetch")
        add("TaskScheduled", **LAMBDA)
        add("TaskStarted", **LAMBDA)
        slower = 3.0 if now >= slow_after else 1.0
        add(
            "TaskSucceeded",
            gap=slower * shape.task_median * math.exp(rng.gauss(0, SIGMA)),
            output="{}",
            **LAMBDA,
        )
        add("TaskStateExited", name="Fetch")
        if workload == "fanout" and not shape.chain and rng.random() < 0.5:
            _fan_out(add, rng)
        if not shape.chain:
            add("WaitStateEntered", name="Sleep")
            add("WaitStateExited", gap=shape.wait_s, name="Sleep")
        add("ChoiceStateEntered", name="Check")
        add("ChoiceStateExited", name="Check")
    add("ExecutionSucceeded")
    return Template("bench", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])


def _fan_out(add: Callable[..., int], rng: random.Random) -> None:
    """An inline Map of 20 to 80 Lambda iterations in parallel: their starts in one burst, their
    ends in another one to five seconds later."""
    add("MapStateEntered", name="Fan")
    started = add("MapStateStarted", length=0)
    running = []
    for index in range(rng.randint(20, 80)):
        iteration = add("MapIterationStarted", gap=0.002, prev=started, name="Fan", index=index)
        add("TaskStateEntered", gap=0.002, prev=iteration, name="Item")
        add("TaskScheduled", gap=0.002, **LAMBDA)
        running.append((index, add("TaskStarted", gap=0.002, **LAMBDA)))
    last, gap = started, rng.uniform(1.0, 5.0)
    for index, task in running:
        add("TaskSucceeded", gap=gap, prev=task, output="{}", **LAMBDA)
        exited = add("TaskStateExited", gap=0.002, name="Item")
        last = add("MapIterationSucceeded", gap=0.002, prev=exited, name="Fan", index=index)
        gap = 0.002
    add("MapStateSucceeded", prev=last)
    add("MapStateExited", name="Fan")


def build(
    sim: Simulator, size: int, seed: int, horizon: float, logging: bool = False, workload: str = "steady"
) -> None:
    """The workload; with `logging`, every state machine logs every event to one log group."""
    rng = random.Random(seed + 1)
    group = Logging("/aws/vendedlogs/states/bench") if logging else None
    for m, shape in enumerate(shapes(seed)):
        machine = sim.add_machine(f"machine-{m:02d}", waiter_definition(shape.wait_s), logging=group)
        for n in range(size // MACHINES):
            start = EPOCH - rng.uniform(0, shape.wait_s)  # started earlier, each at its own phase
            slow_after = EPOCH + horizon / 2 - start if workload == "slowdown" else math.inf
            template = _template(rng, shape, horizon + shape.wait_s, workload, slow_after)
            sim.start(machine, template, f"e-{n:05d}", start=start)


def p99_lower_bound(size: int, seed: int, budget: float, grid: int = 1000) -> float:
    """The lowest p99 lag any scheduler that does not know the future could reach on this
    workload with `budget` history calls a second (a relaxation: the true best is higher).

    A task of duration D (density f, survival S) is polled at times t1 < t2 < ... chosen knowing
    only that its end has not been seen; poll j is made only if D > t(j-1) (t0: the start), so it
    costs S(t(j-1)) calls on average. An end at x is read by the first poll after it, tj with
    t(j-1) < x <= tj, and within L if x >= tj - L: the ends read in time form a set U, and the
    part of U that poll j reads is at most L long with S(x) <= S(t(j-1)) all along it. So a
    schedule costs at least (integral over U of S(x) dx) / L calls per task and reads a share
    (integral over U of f(x) dx) of the ends within L. Letting U be any set, the most ends read
    in time for a given budget come from taking x in order of the hazard f(x) / S(x), across
    every state machine's tasks at the rate they end. Each Wait's end costs a call too (its
    events are counted as read at once). If the events left over (read later than L) are more
    than 1% of all events, no such scheduler has a p99 of L or less; the bound is the least L
    that passes."""
    normal = NormalDist()
    per = size // MACHINES

    def feasible(lag: float) -> bool:
        items: list[tuple[float, float]] = []  # (events a second, calls a second) at each x
        events = waits = 0.0
        for shape in shapes(seed):
            mean_task = shape.task_median * math.exp(SIGMA**2 / 2)
            loops = per / (mean_task + (0 if shape.chain else shape.wait_s))  # a second
            events += loops * (CHAIN_LOOP if shape.chain else WAITER_LOOP)
            waits += 0 if shape.chain else loops
            burst = CHAIN_TASK_END if shape.chain else WAITER_TASK_END
            step = shape.task_median * math.exp(6 * SIGMA) / grid
            for i in range(grid):
                x = (i + 0.5) * step
                density = normal.pdf(math.log(x / shape.task_median) / SIGMA) / (SIGMA * x)
                survival = 1 - normal.cdf(math.log(x / shape.task_median) / SIGMA)
                items.append((loops * burst * density * step, loops * survival * step / lag))
        spare = budget - waits
        late = sum(e for e, _ in items)
        items.sort(key=lambda item: item[0] / item[1] if item[1] > 0 else math.inf, reverse=True)
        for read, calls in items:
            if spare <= 0:
                break
            share = 1.0 if calls <= spare else spare / calls
            late -= read * share
            spare -= calls * share
        return late <= 0.01 * events

    low, high = 1e-3, 1e5
    for _ in range(40):
        middle = math.sqrt(low * high)
        low, high = (low, middle) if feasible(middle) else (middle, high)
    return high


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
        quotas = {op: self.config.quota(op) for op in DEFAULT_QUOTAS}
        self.limiter = RateLimiter(
            {op: (q.bucket, q.refill_per_second) for op, q in quotas.items()}, clock=self.loop.time
        )
        self.budget = quotas["GetExecutionHistory"].refill_per_second  # history calls a second
        # polls chosen when a call is free (as the exporter runs); False: every due poll handed
        # out at once, to wait at the rate limiter (to compare)
        self.choose_at_free_call = True
        self.exporter: Exporter | None = None

    def wall(self) -> float:
        return EPOCH + self.loop.time()

    def run(
        self, seconds: float, scheduler: PollScheduler | None = None,
        on_events: Callable[[Tracked, list[int]], None] | None = None, client: Any = None,
        *, sink: Any = None, store: CursorStore | None = None, registry: CollectorRegistry | None = None,
        on_spans: Callable[[Tracked, list[Any]], None] | None = None, close: bool = True,
        logs_client: Any = None, layout: Layout | None = None,
    ) -> Exporter:  # fmt: skip
        """Runs the exporter for `seconds` of virtual time (as the shard `layout` says). Tests may give their own sink, store
        and registry; `close=False` leaves the loop open for another run (a restart). The
        simulator's CloudWatch Logs are read too (through `logs_client` when given)."""
        registry = registry if registry is not None else CollectorRegistry()
        health = HealthMetrics(registry).target(ACCOUNT, REGION)
        api = AwsStepFunctions(client or DirectClient(self.sim), self.limiter, health)
        exporter = Exporter(
            self.config, api, store or SyncStore(":memory:"), sink or NullSink(), WorkflowMetrics(registry).for_target(ACCOUNT, REGION), health,  # type: ignore[arg-type]
            clock=self.loop.time, wall=self.wall, on_events=on_events, on_spans=on_spans, scheduler=scheduler,
            budget=lambda: self.limiter.rate("GetExecutionHistory"),
            limiter=self.limiter if self.choose_at_free_call else None,
            logs_api=AwsCloudWatchLogs(logs_client or DirectLogsClient(self.sim), self.limiter, health),
            log_calls_spare=lambda: self.limiter.spare("FilterLogEvents"), layout=layout,
        )  # fmt: skip
        self.exporter = exporter  # for callbacks scheduled on the loop, while it runs
        if isinstance(scheduler, OracleScheduler):
            scheduler.exporter = exporter

        async def main() -> None:
            stop = asyncio.Event()
            self.loop.call_later(seconds, stop.set)
            await exporter.run(stop)

        self.loop.run_until_complete(main())
        if close:
            self.loop.close()
            asyncio.set_event_loop(None)
        return exporter


def run(
    size: int,
    scheduler: str,
    hours: float,
    seed: int = 1,
    warmup: float | None = None,
    workload: str = "steady",
) -> Result:
    """One row. `logs`: the same state machines log every event to CloudWatch Logs and are read
    from there (`logs.source: logs`), with CloudWatch's delivery delays (0.2 to 2 s)."""
    logs = scheduler == "logs"
    virtual = VirtualRun({"logs": {"source": "logs"}} if logs else None)
    horizon = hours * 3600
    sim = virtual.sim
    build(sim, size, seed, horizon, logging=logs, workload=workload)
    budget = virtual.budget
    chosen: PollScheduler | None = None
    if scheduler == "round-robin":
        chosen = RoundRobinScheduler(max(1.0, size / budget), virtual.loop.time)
    elif scheduler == "oracle":
        chosen = OracleScheduler(sim, virtual.loop.time)
    lags: list[float] = []
    exported = [0]
    warmup = max(1800.0, 2 * size / budget) if warmup is None else warmup
    if logs:  # an execution first seen in the log is read from its history once: after a loop
        warmup = max(warmup, 4500.0)

    def on_events(tracked: Tracked, times_ns: list[int]) -> None:
        now = virtual.wall()
        exported[0] += len(times_ns)
        lags.extend(now - t / 1e9 for t in times_ns if t / 1e9 - EPOCH >= warmup)

    virtual.run(horizon, chosen, on_events)
    # events that appeared in the measured window but were never exported: lag at least until the end
    exported_after_warmup = len(lags)
    appeared = sum(
        1 for e in sim.executions.values() for offset in e.template.offsets
        if warmup <= e.start + offset - EPOCH <= horizon
    )  # fmt: skip
    unexported = max(0, appeared - exported_after_warmup)
    bucket = virtual.config.api.quota("GetExecutionHistory").bucket
    budget = virtual.budget + bucket / (horizon - warmup)
    result = Result(scheduler, size, lags, sim.calls["GetExecutionHistory"], unexported, budget)
    result.log_calls = sim.calls["FilterLogEvents"]
    result.exported = exported[0]
    return result


def express_workload(sim: Simulator, rate: float, seconds: float, seed: int = 1) -> int:
    """EXPRESS executions started at `rate` a second for `seconds` (how many: returned), each a
    short API-backend workflow (11 events over 1 to 3 s, 5% failing) that logs every event to
    one log group."""
    from simulator.workloads import express_order

    rng = random.Random(seed)
    machine = sim.add_machine(
        "api", waiter_definition(1), "EXPRESS", logging=Logging("/aws/vendedlogs/states/api")
    )
    templates = [express_order(rng) for _ in range(64)]
    count = int(rate * seconds)
    for n in range(count):
        sim.start(machine, templates[n % len(templates)], f"x-{n:07d}", start=EPOCH + n / rate)
    return count


def run_express(rate: float, seconds: float, seed: int = 1, warmup: float = 60.0) -> Result:
    """EXPRESS executions started at `rate` a second for `seconds`, each a short workflow that
    logs every event to one log group; read from there (their only record). Lag is measured for
    events after `warmup`."""
    virtual = VirtualRun()
    sim = virtual.sim
    count = express_workload(sim, rate, seconds, seed)
    lags: list[float] = []
    exported = [0]

    def on_events(tracked: Tracked, times_ns: list[int]) -> None:
        now = virtual.wall()
        exported[0] += len(times_ns)
        lags.extend(now - t / 1e9 for t in times_ns if t / 1e9 - EPOCH >= warmup)

    horizon = seconds + 30
    virtual.run(horizon, None, on_events)
    appeared = sum(
        1 for e in sim.executions.values() for offset in e.template.offsets if warmup <= e.start + offset - EPOCH <= horizon
    )  # fmt: skip
    result = Result("logs", count, lags, sim.calls["GetExecutionHistory"], max(0, appeared - len(lags)), 0.0)
    result.log_calls, result.exported = sim.calls["FilterLogEvents"], exported[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument(
        "--seeds",
        default="1",
        help="workload seeds: one table for each (the state machines' task medians and waits differ)",
    )
    parser.add_argument("--rows", default="exporter,round-robin,oracle,logs")
    parser.add_argument(
        "--express-rate", type=float, default=500.0, help="EXPRESS executions a second (0: none)"
    )
    parser.add_argument("--express-seconds", type=float, default=180.0)
    parser.add_argument("--workloads", default="steady", help=", ".join(WORKLOADS))
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    for workload in workloads:
        if workload not in WORKLOADS:
            parser.error(f"--workloads: {workload!r} is not one of {', '.join(WORKLOADS)}")
    print(
        f"{'executions':>10} {'scheduler':<12} {'events':>8} {'p50 lag s':>10} {'p99 lag s':>10} "
        f"{'history calls':>14} {'log calls':>10} {'calls/1k ev':>11} {'unexported':>10} {'wall s':>7}"
    )
    seeds = [int(seed) for seed in args.seeds.split(",") if seed]
    for seed in seeds:
        if len(seeds) > 1:
            print(f"seed: {seed}", flush=True)
        for workload in workloads:
            if workload != "steady":
                print(f"workload: {workload}", flush=True)
            for size in (int(s) for s in args.sizes.split(",") if s):
                _rows(size, workload, seed, args)
    if args.express_rate:
        started = time.perf_counter()
        result = run_express(args.express_rate, args.express_seconds, seeds[0])
        print(
            f"{'EXPRESS ' + format(args.express_rate, ',.0f') + '/s':>10} {'logs':<12} {len(result.lags):>8,} "
            f"{result.quantile(0.5):>10.1f} {result.quantile(0.99):>10.1f} {result.history_calls:>14,} "
            f"{result.log_calls:>10,} {result.calls_per_1000_events:>11.1f} {result.unexported:>10,} "
            f"{time.perf_counter() - started:>7.1f}",
            flush=True,
        )


def _rows(size: int, workload: str, seed: int, args: argparse.Namespace) -> None:
    """The rows of one size and workload, and how they compare."""
    results = {}
    for scheduler in args.rows.split(","):
        started = time.perf_counter()
        result = run(size, scheduler, args.hours, seed, workload=workload)
        results[scheduler] = result
        print(
            f"{size:>10,} {scheduler:<12} {len(result.lags):>8,} {result.quantile(0.5):>10.1f} "
            f"{result.quantile(0.99):>10.1f} {result.history_calls:>14,} {result.log_calls:>10,} "
            f"{result.calls_per_1000_events:>11.1f} "
            f"{result.unexported:>10,} {time.perf_counter() - started:>7.1f}",
            flush=True,
        )
    p99 = {name: result.quantile(0.99) for name, result in results.items()}
    if workload != "steady":  # the bound is worked out for the steady workload only
        if {"exporter", "round-robin"} <= set(results):
            print(
                f"{'':>10} p99: round-robin/exporter = {p99['round-robin'] / p99['exporter']:.2f}x",
                flush=True,
            )
        return
    bound = math.nan
    if "exporter" in results:
        bound = p99_lower_bound(size, seed, results["exporter"].budget)
        print(f"{size:>10,} {'bound':<12} {'':>8} {'':>10} {bound:>10.1f}", flush=True)
    if {"exporter", "round-robin", "oracle"} <= set(results):
        print(
            f"{'':>10} p99: round-robin/exporter = {p99['round-robin'] / p99['exporter']:.2f}x "
            f"(at most {p99['round-robin'] / bound:.2f}x for any scheduler without foresight), "
            f"exporter/bound = {p99['exporter'] / bound:.2f}x, "
            f"exporter/oracle = {p99['exporter'] / max(p99['oracle'], 1e-3):.0f}x",
            flush=True,
        )
    if {"exporter", "logs"} <= set(results):
        print(
            f"{'':>10} p99: logs {p99['logs']:.1f} s against history {p99['exporter']:.1f} s "
            f"(the history-only bound: {bound:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
