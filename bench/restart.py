"""Restart: from a restart to the first new export, and the calls spent until every tracked
execution caught up, with the assembler state kept beside each cursor and without it.

    python -m bench.restart [--executions 10000] [--events 1000]

Each execution runs `--events` events, then waits in a Wait state. The real exporter (on a
virtual clock, against the in-process simulator, at the default quotas) reads them all and is
stopped; then a second process starts on the same checkpoint just after every Wait ended. Rows,
in the same command: `kept` (the checkpoint holds each execution's assembler state at its
cursor: the history is read on from there) and `replayed` (the same checkpoint with the states
removed, as an earlier version wrote it: each history is read again from its start). Printed:
simulated seconds from the restart to the first new export and until every execution exported
its new events, GetExecutionHistory calls until then, and the restarted process's CPU seconds."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from bench.freshness import EPOCH, NullSink, SyncStore
from bench.virtual_time import VirtualTimeLoop, run_until
from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import AwsStepFunctions
from exporter.config import DEFAULT_QUOTAS, Config
from exporter.daemon import Exporter, Tracked
from exporter.emit.health import HealthMetrics
from exporter.emit.metrics import WorkflowMetrics
from simulator.builder import History
from simulator.stepfunctions import ACCOUNT, REGION, DirectClient, Simulator, Template
from tests.workloads import waiter_definition

WAIT_END = 3600.0  # seconds after the start at which every Wait ends (the restart comes after)


def long_runner(events: int) -> Template:
    """`events` events of Pass states in the first minute, then a Wait until WAIT_END."""
    h = History()
    h.add("ExecutionStarted", prev=0, input="{}")
    offsets = [0.0]
    while len(h.events) < events - 1:
        h.add("PassStateEntered", name="Step", input="{}")
        h.add("PassStateExited", name="Step", output="{}")
        offsets += [offsets[-1] + 0.01, offsets[-1] + 0.02]
    h.add("WaitStateEntered", name="Sleep", input="{}")
    h.add("WaitStateExited", name="Sleep", output="{}")
    h.add("ExecutionSucceeded", output="{}")
    offsets += [offsets[-1] + 0.01, WAIT_END, WAIT_END + 0.01]
    return Template("long", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])


def _process(sim: Simulator, store: SyncStore, loop: VirtualTimeLoop, on_events: Any = None) -> Exporter:
    config = Config.model_validate({"checkpoint": {"path": ":memory:"}, "polling": {"concurrency": 32},
                                    "discovery": {"lookback_seconds": 7200}})  # fmt: skip
    limits = {op: (config.quota(op).bucket, config.quota(op).refill_per_second) for op in DEFAULT_QUOTAS}
    limiter = RateLimiter(limits, clock=loop.time)
    health = HealthMetrics(CollectorRegistry()).target(ACCOUNT, REGION)
    return Exporter(
        config, AwsStepFunctions(DirectClient(sim), limiter, health), store, NullSink(),  # type: ignore[arg-type]
        WorkflowMetrics(CollectorRegistry()).for_target(ACCOUNT, REGION), health,
        clock=loop.time, wall=lambda: EPOCH + loop.time(), on_events=on_events,
        budget=lambda: limiter.rate("GetExecutionHistory"),
            limiter=limiter,
    )  # fmt: skip


def measure(executions: int, events: int, checkpoint: Path) -> dict[str, dict[str, float]]:
    """Both rows: the first process once, then each restart from a copy of its checkpoint."""
    loop = VirtualTimeLoop()
    asyncio.set_event_loop(loop)
    sim = Simulator(clock=_clock_of(loop), quotas={op: (1e9, 1e9) for op in DEFAULT_QUOTAS})
    template = long_runner(events)
    machine = sim.add_machine("long", waiter_definition(3600))
    for n in range(executions):
        sim.start(machine, template, f"e-{n:05d}", start=EPOCH)
    first = _process(sim, SyncStore(str(checkpoint)), loop)
    last = len(template.events) - 2  # every event before the Wait's end

    def read() -> bool:
        return len(first.tracked) == executions and all(
            t.assembler is not None and t.assembler.last_event_id >= last and t.pending is None
            for t in first.tracked.values()
        )

    run_until(loop, first, read, WAIT_END - 60)
    assert read(), "the first process did not read every history before the restart"
    first.store.close()
    restart_at = WAIT_END + 1  # every Wait has just ended: each execution has new events
    rows = {}
    for row in ("kept", "replayed"):
        copy = checkpoint.with_name(f"{row}.sqlite")
        copy.write_bytes(checkpoint.read_bytes())
        if row == "replayed":
            with sqlite3.connect(copy) as db:
                db.execute("UPDATE executions SET state = NULL")
        # each row restarts at the same moment of the workload, on a clock of its own
        loop.close()
        loop = VirtualTimeLoop(start=restart_at)
        asyncio.set_event_loop(loop)
        sim.clock = _clock_of(loop)
        rows[row] = _restart(sim, SyncStore(str(copy)), loop, executions)
    loop.close()
    asyncio.set_event_loop(None)
    return rows


def _clock_of(loop: VirtualTimeLoop) -> Any:
    return lambda: EPOCH + loop.time()


def _restart(sim: Simulator, store: SyncStore, loop: VirtualTimeLoop, executions: int) -> dict[str, float]:
    """A process started on `store`: until every execution exported its events after the Wait."""
    started = loop.time()
    calls = sim.calls["GetExecutionHistory"]
    caught_up: set[str] = set()
    first_export: list[float] = []

    def on_events(tracked: Tracked, times_ns: list[int]) -> None:
        if any(t / 1e9 - EPOCH >= WAIT_END for t in times_ns):
            first_export.append(loop.time())
            caught_up.add(tracked.arn)

    second = _process(sim, store, loop, on_events)
    cpu = time.process_time()
    run_until(loop, second, lambda: len(caught_up) == executions, started + 50_000)
    store.close()
    return {
        "first_export_s": (first_export[0] if first_export else float("nan")) - started,
        "caught_up_s": loop.time() - started, "caught_up": len(caught_up),
        "calls": sim.calls["GetExecutionHistory"] - calls, "cpu_s": time.process_time() - cpu,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        rows = measure(args.executions, args.events, Path(workdir) / "checkpoint.sqlite")
    print(
        f"{'executions':>10} {'events':>6} {'row':<9} {'first new export s':>18} {'all caught up s':>15} "
        f"{'history calls':>13} {'calls/execution':>15} {'CPU s':>7}"
    )
    for name, row in rows.items():
        print(
            f"{args.executions:>10,} {args.events:>6,} {name:<9} {row['first_export_s']:>18.1f} "
            f"{row['caught_up_s']:>15.1f} {row['calls']:>13,} {row['calls'] / args.executions:>15.2f} "
            f"{row['cpu_s']:>7.1f}"
        )
    kept, replayed = rows["kept"], rows["replayed"]
    print(
        f"kept/replayed: caught up in {kept['caught_up_s'] / replayed['caught_up_s']:.2f}x the time, "
        f"{kept['calls'] / replayed['calls']:.2f}x the calls, {kept['cpu_s'] / replayed['cpu_s']:.2f}x the CPU"
    )


if __name__ == "__main__":
    main()
