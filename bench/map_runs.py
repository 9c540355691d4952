"""A Distributed Map run of 10,000 concurrent children beside 1,000 ordinary executions: do the
children starve the rest, and do the calls stay within the quota share?

The real exporter runs against the in-process simulator on a virtual clock (as
`bench.freshness`), twice in one command: the ordinary workload of `bench.freshness` alone (the
baseline), then the same workload with a map run whose 10,000 children all start at once and
run one to ten minutes (EXPRESS ones: one to four and a half, the 5-minute limit with a retried
task, logging to their parent's log group), 5% of
them failing, under each `map_runs.follow` and child type asked for. Printed:
the ordinary executions' p50 and p99 lag and its ratio to the baseline's, the calls a second of
each operation at their busiest minute against what the quota share allows in a minute (its
refill, and one full bucket), and how many children were followed.

    python -m bench.map_runs                          # 1,000 executions, 10,000 children
    python -m bench.map_runs --follow sample,failed,all
    python -m bench.map_runs --follow sample,all --child-type express
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from bench.freshness import EPOCH, VirtualRun, build
from exporter.daemon import Tracked
from simulator.logs import Delivery, Logging
from simulator.workloads import distributed_map, waiter_definition

OPERATIONS = ("GetExecutionHistory", "ListExecutions", "DescribeMapRun", "FilterLogEvents")


@dataclass
class Row:
    label: str
    lags: list[float]
    busiest: dict[str, float] = field(default_factory=dict)  # calls a second in the busiest minute
    allowed: dict[str, float] = field(default_factory=dict)  # what the share allows in a minute, a second
    followed: int = 0
    children: int = 0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(
    size: int, children: int, follow: str | None, minutes: float, seed: int = 1, child_type: str = "standard"
) -> Row:
    """One row: `size` ordinary executions, and a map run of `children` (of `child_type`) unless
    `follow` is None."""
    settings = {"map_runs": {"follow": follow}} if follow else {}
    virtual = VirtualRun(settings)
    sim = virtual.sim
    horizon = minutes * 60
    build(sim, size, seed, horizon + 3600)
    warmup = max(600.0, 2 * size / virtual.budget)
    if follow is not None:
        express = child_type == "express"
        logging = Logging("/aws/vendedlogs/states/batch") if express else None
        sim.logs.delivery = Delivery(delay_s=(0.2, 2.0), streams=8)
        machine = sim.add_machine("batch", waiter_definition(1), logging=logging)
        spec = distributed_map(random.Random(seed), children, fail_rate=0.05, max_concurrency=children,
                               seconds=(60.0, 200.0 if express else 600.0))  # fmt: skip
        sim.start_map_run(machine, spec, "nightly", start=EPOCH + warmup, child_type=child_type.upper())
    ordinary = {e.arn for e in sim.executions.values() if e.machine.name.startswith("machine-")}
    lags: list[float] = []

    def on_events(tracked: Tracked, times_ns: list[int]) -> None:
        if tracked.arn in ordinary:
            now = virtual.wall()
            lags.extend(now - t / 1e9 for t in times_ns if t / 1e9 - EPOCH >= warmup)

    counts: list[Counter[str]] = []

    def sample() -> None:
        counts.append(Counter(sim.calls))
        if virtual.loop.time() < horizon:
            virtual.loop.call_later(60, sample)

    virtual.loop.call_later(warmup, sample)
    registry = CollectorRegistry()
    virtual.run(horizon, None, on_events, registry=registry)
    label = "no map run" if follow is None else f"{follow} ({child_type})"
    row = Row(label, lags, children=children if follow else 0)
    for op in OPERATIONS:
        per_minute = [(b[op] - a[op]) / 60 for a, b in itertools.pairwise(counts)]
        row.busiest[op] = max(per_minute, default=0.0)
        quota = virtual.config.quota(op)
        row.allowed[op] = quota.refill_per_second + quota.bucket / 60  # the refill, and a full bucket
    row.followed = int(
        registry.get_sample_value("sfn_exporter_map_run_children_total", {"handling": "followed"}) or 0
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--children", type=int, default=10000)
    parser.add_argument("--follow", default="sample")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument(
        "--child-type", default="standard", help="standard, express, or both (comma-separated)"
    )
    args = parser.parse_args()
    ops = " ".join(f"{op + ' /s (allowed)':>34}" for op in OPERATIONS)
    print(
        f"{'row':<20} {'p50 lag s':>9} {'p99 lag s':>9} {'p99/base':>8} {'followed':>9} {ops} {'wall s':>7}"
    )
    base: Row | None = None
    rows = [(follow, kind) for kind in args.child_type.split(",") for follow in args.follow.split(",")]
    for follow, kind in [(None, "standard"), *rows]:
        started = time.perf_counter()
        row = run(args.executions, args.children, follow, args.minutes, child_type=kind)
        base = base or row
        calls = " ".join(f"{f'{row.busiest[op]:.2f} ({row.allowed[op]:.1f})':>34}" for op in OPERATIONS)
        print(
            f"{row.label:<20} {row.quantile(0.5):>9.1f} {row.quantile(0.99):>9.1f} "
            f"{row.quantile(0.99) / base.quantile(0.99):>7.2f}x {row.followed:>9,} {calls} "
            f"{time.perf_counter() - started:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
