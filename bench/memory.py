"""Memory: resident memory per tracked execution, with 10,000 tracked; and what the log source
holds at 500 EXPRESS executions a second.

    python -m bench.memory [--executions 10000] [--express-rate 500]

The simulator is built first (10,000 running executions, each a few events in and then in a
one-hour Wait); the resident set size of this process is read; then the real exporter runs on a
virtual clock until it tracks every execution and has read each history (assembler state, open
spans, scheduler slot, checkpoint row). The checkpoint is a file, as deployed (SQLite holds a
bounded page cache of it, not every row: each running execution's row holds its assembler
state, about 0.6 kB, which an in-memory database would count here). The growth of the resident
set, divided by the count, is the cost of one tracked execution; tracemalloc's count of Python
allocations is shown too.

The log source's row runs the EXPRESS workload of `bench.freshness --express-rate` (each execution
11 events over 1 to 3 s, read from its log group) and, 30 simulated seconds in, counts the EXPRESS
executions under way, the events their re-ordering windows hold, and the Python allocations
still live from the last ten seconds, the simulator's and this benchmark's left out (traced four
frames deep): per execution under way. The resident set cannot be used there: the simulator's
log messages grow beside it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from bench.freshness import EPOCH, NullSink, SyncStore
from bench.virtual_time import VirtualTimeLoop, run_until
from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import AwsStepFunctions
from exporter.config import DEFAULT_QUOTAS, Config
from exporter.daemon import Exporter
from exporter.emit.health import HealthMetrics
from exporter.emit.metrics import WorkflowMetrics
from simulator.builder import History
from simulator.stepfunctions import ACCOUNT, REGION, DirectClient, Simulator, Template
from tests.workloads import LAMBDA, waiter_definition


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sleeper() -> Template:
    h = History()
    h.add("ExecutionStarted", prev=0, input='{"order": 1}')
    h.add("PassStateEntered", name="Prepare", input="{}")
    h.add("PassStateExited", name="Prepare", output="{}")
    h.add("TaskStateEntered", name="Fetch", input="{}")
    h.add("TaskScheduled", **LAMBDA)
    h.add("TaskStarted", **LAMBDA)
    h.add("TaskSucceeded", output='{"ok": true}', **LAMBDA)
    h.add("TaskStateExited", name="Fetch", output="{}")
    h.add("WaitStateEntered", name="Sleep", input="{}")
    h.add("WaitStateExited", name="Sleep", output="{}")
    h.add("ExecutionSucceeded", output="{}")
    offsets = [float(i) for i in range(9)] + [3600.0, 3601.0]
    return Template("sleeper", offsets, [{k: v for k, v in e.items() if k != "timestamp"} for e in h.events])


def measure(executions: int, python: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:  # a checkpoint file, as deployed
        return _measure(executions, python, str(Path(directory) / "checkpoint.db"))


def _measure(executions: int, python: bool, checkpoint: str) -> dict[str, float]:
    loop = VirtualTimeLoop()
    asyncio.set_event_loop(loop)

    def wall() -> float:
        return EPOCH + loop.time()

    sim = Simulator(clock=wall, quotas={op: (1e9, 1e9) for op in DEFAULT_QUOTAS})
    template = sleeper()
    machine = sim.add_machine("sleepers", waiter_definition(3600))
    for n in range(executions):
        sim.start(machine, template, f"e-{n:05d}", start=EPOCH - 60)
    template.body(0, True)  # the simulator's encoded events, built before the baseline
    template.body(0, False)
    config = Config.model_validate({"checkpoint": {"path": ":memory:"}, "api": {"quota_share": 1.0},
                                    "polling": {"concurrency": 32}})  # fmt: skip
    limiter = RateLimiter({op: (1e9, 1e9) for op in DEFAULT_QUOTAS}, clock=loop.time)
    registry = CollectorRegistry()
    health = HealthMetrics(registry).target(ACCOUNT, REGION)
    gc.collect()
    if python:  # tracemalloc's own bookkeeping inflates the resident set: a separate run
        tracemalloc.start()
    before_rss, (before_py, _) = rss_bytes(), tracemalloc.get_traced_memory()
    exporter = Exporter(
        config, AwsStepFunctions(DirectClient(sim), limiter, health), SyncStore(checkpoint), NullSink(),  # type: ignore[arg-type]
        WorkflowMetrics(registry).for_target(ACCOUNT, REGION), health, clock=loop.time, wall=wall,
    )  # fmt: skip

    def read() -> bool:
        return len(exporter.tracked) == executions and all(
            t.assembler is not None and t.assembler.last_event_id == 9 for t in exporter.tracked.values()
        )

    run_until(loop, exporter, read)
    gc.collect()
    after_rss, (after_py, _) = rss_bytes(), tracemalloc.get_traced_memory()
    tracked = len(exporter.tracked)
    open_spans = sum(t.assembler.open_span_count for t in exporter.tracked.values() if t.assembler)
    tracemalloc.stop()
    loop.close()
    asyncio.set_event_loop(None)
    return {"tracked": tracked, "open_spans": open_spans, "rss_per": (after_rss - before_rss) / tracked,
            "python_per": (after_py - before_py) / tracked}  # fmt: skip


def measure_express(rate: float, at: float = 30.0) -> dict[str, float]:
    from bench.freshness import VirtualRun, express_workload

    virtual = VirtualRun()
    express_workload(virtual.sim, rate, at + 10)
    root = Path(__file__).resolve().parent.parent
    seen: dict[str, float] = {}

    def take() -> None:
        gc.collect()
        exporter = virtual.exporter
        assert exporter is not None
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, f"{root}/simulator/*", all_frames=True),
             tracemalloc.Filter(False, f"{root}/bench/*", all_frames=True),
             tracemalloc.Filter(False, tracemalloc.__file__)]
        )  # fmt: skip
        windows = [t.reorder for t in exporter.tracked.values() if t.reorder is not None]
        seen.update(
            under_way=len(windows), held=sum(len(w.held) for w in windows),
            exporter_bytes=sum(stat.size for stat in snapshot.statistics("filename")),
        )  # fmt: skip
        tracemalloc.stop()

    # traced from ten seconds before (an execution is under way for 1 to 3 s, and its messages
    # are read 2 to 4 s after they were written): what is held then was allocated since
    virtual.loop.call_later(at - 10, tracemalloc.start, 4)
    virtual.loop.call_later(at, take)
    virtual.run(at + 1)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--express-rate", type=float, default=500.0, help="0: no log source row")
    args = parser.parse_args()
    result = measure(args.executions, python=False)
    result["python_per"] = measure(args.executions, python=True)["python_per"]
    print(
        f"{'tracked':>8} {'open spans':>10} {'RSS per execution':>18} {'Python allocations per execution':>33}"
    )
    print(f"{result['tracked']:>8,.0f} {result['open_spans']:>10,.0f} {result['rss_per'] / 1024:>15.1f} KB "
          f"{result['python_per'] / 1024:>30.1f} KB")  # fmt: skip
    if args.express_rate:
        express = measure_express(args.express_rate)
        under_way = max(1.0, express["under_way"])
        print(f"\nlog source at {args.express_rate:,.0f} EXPRESS executions a second, 30 s in:")
        print(
            f"{'under way':>10} {'events held':>12} {'exporter allocations':>21} {'per execution under way':>24}"
        )
        print(f"{express['under_way']:>10,.0f} {express['held']:>12,.0f} "
              f"{express['exporter_bytes'] / 2**20:>18.1f} MB {express['exporter_bytes'] / under_way / 1024:>21.1f} KB")  # fmt: skip


if __name__ == "__main__":
    main()
