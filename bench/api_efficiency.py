"""API efficiency: calls and bytes per poll that finds new events, by history length.

    python -m bench.api_efficiency [--lengths 10,100,1000,10000,25000] [--polls 20] [--new 5]

One execution's history grows by `--new` events between polls (a burst of 1 to 2 x new, at
random); each poll is an aiobotocore call over HTTP to the simulator (AWS JSON protocol), which
counts calls and response bytes. Pollers:
- `exporter`: this project's tail (newest page first, stops at its cursor, first page sized from
  the previous polls: `exporter.aws.tail.first_page_size`);
- `naive`: reads the whole history forward (pages of 1,000) every poll and keeps what is new;
- `lower bound`: one call per poll, and the bytes of the new events alone.
Before the measured polls each poller has read the history once (not counted)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import aws_step_functions
from exporter.aws.tail import MIN_PAGE, first_page_size, next_peak, read_new_events, read_whole_history
from exporter.emit.health import HealthMetrics
from simulator.stepfunctions import ACCOUNT, REGION, Simulator, SimulatorServer
from simulator.workloads import bulk_template

START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


async def measure(length: int, polls: int, new: int, seed: int) -> list[dict[str, Any]]:
    clock = Clock()
    sim = Simulator(clock=clock, quotas={"GetExecutionHistory": (1e9, 1e9)})
    machine = sim.add_machine("bench", {"StartAt": "Work", "States": {}})
    template = bulk_template(length + (polls + 1) * 2 * new + 1, spacing_s=1.0)
    rows = []
    with SimulatorServer(sim) as server:
        limiter = RateLimiter({"GetExecutionHistory": (1e9, 1e9)})
        async with aws_step_functions(
            "us-east-1", server.endpoint, limiter, HealthMetrics(CollectorRegistry()).target(ACCOUNT, REGION)
        ) as api:
            for poller in ("exporter", "naive", "lower bound"):
                rng = random.Random(seed)
                execution = sim.start(
                    machine, template, f"{poller.replace(' ', '-')}-{length}", start=clock.now
                )
                clock.now += length - 1  # `length` events visible
                cursor = len(await read_whole_history(api, execution.arn, True))
                last_new, peak = new, float(MIN_PAGE)
                calls0, bytes0 = sim.calls["GetExecutionHistory"], sim.bytes["GetExecutionHistory"]
                new_bytes = found = 0
                for _ in range(polls):
                    clock.now += rng.randint(1, 2 * new)
                    if poller == "exporter":
                        events = await read_new_events(
                            api, execution.arn, cursor, first_page_size(last_new, peak, 100), True
                        )
                        peak = next_peak(peak, len(events))
                    elif poller == "naive":
                        events = [
                            e for e in await read_whole_history(api, execution.arn, True) if e["id"] > cursor
                        ]
                    else:
                        count = execution.visible(clock.now) - cursor
                        body = execution.template.events[cursor : cursor + count]
                        new_bytes += len(
                            json.dumps({"events": [{**e, "timestamp": clock.now} for e in body]})
                        )
                        events = body
                    assert events and events[0]["id"] == cursor + 1, (poller, length)
                    cursor = events[-1]["id"]
                    last_new = len(events)
                    found += len(events)
                calls = sim.calls["GetExecutionHistory"] - calls0
                sent = sim.bytes["GetExecutionHistory"] - bytes0
                if poller == "lower bound":
                    calls, sent = polls, new_bytes
                rows.append({"length": length, "poller": poller, "calls_per_poll": calls / polls,
                             "bytes_per_poll": sent / polls, "events_per_poll": found / polls})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", default="10,100,1000,10000,25000")
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--new", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    print(f"{'history':>8} {'poller':<12} {'calls/poll':>10} {'bytes/poll':>11} {'new events/poll':>16}")
    for length in (int(v) for v in args.lengths.split(",")):
        rows = asyncio.run(measure(length, args.polls, args.new, args.seed))
        for row in rows:
            print(f"{row['length']:>8,} {row['poller']:<12} {row['calls_per_poll']:>10.2f} "
                  f"{row['bytes_per_poll']:>11,.0f} {row['events_per_poll']:>16.1f}", flush=True)  # fmt: skip
        by = {row["poller"]: row for row in rows}
        if "exporter" in by and "lower bound" in by:
            ratio = by["exporter"]["bytes_per_poll"] / by["lower bound"]["bytes_per_poll"]
            print(f"{'':>8} bytes/poll: exporter/lower bound = {ratio:.2f}x")


if __name__ == "__main__":
    main()
