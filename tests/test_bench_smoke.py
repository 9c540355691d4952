"""Small runs of the benchmarks, so they never rot; they assert that they work, not speed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.corpus import REPO


def test_assembler_benchmark_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_assembler", "--repeat", "1", "--events", "2000"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["workload", "events"]
    assert lines[1].startswith("one history of 2,000 events") and "2,000" in lines[1]
    assert lines[2].startswith("recorded corpus (691 histories)")
    ratios = [float(line.rsplit(None, 1)[-1].rstrip("x")) for line in lines[1:]]
    assert all(ratio > 0 for ratio in ratios)


def test_freshness_benchmark_runs_all_three_schedulers() -> None:
    from bench.freshness import p99_lower_bound, run

    results = {name: run(40, name, hours=1.0, warmup=900) for name in ("exporter", "round-robin", "oracle")}
    counts = {name: len(result.lags) + result.unexported for name, result in results.items()}
    assert len(set(counts.values())) == 1 and counts["oracle"] > 0  # the same events, whoever polls
    assert results["oracle"].unexported == 0 and results["exporter"].unexported == 0
    assert all(lag >= 0 for result in results.values() for lag in result.lags)
    assert results["oracle"].quantile(0.99) <= results["exporter"].quantile(0.99)
    assert results["oracle"].history_calls < results["exporter"].history_calls
    # no scheduler without foresight beats the bound; the oracle has foresight
    bound = p99_lower_bound(40, 1, results["exporter"].budget)
    assert results["oracle"].quantile(0.99) < bound <= results["exporter"].quantile(0.99)
    assert p99_lower_bound(1000, 1, 20.0) < p99_lower_bound(1000, 1, 10.0)  # more calls, less lag


@pytest.mark.parametrize("workload", ["fanout", "slowdown"])
def test_freshness_workloads_with_bursts_and_slowdowns_run_beside_round_robin(workload: str) -> None:
    from bench.freshness import run

    exporter = run(40, "exporter", hours=1.0, warmup=900, workload=workload)
    round_robin = run(40, "round-robin", hours=1.0, warmup=900, workload=workload)
    assert len(exporter.lags) + exporter.unexported == len(round_robin.lags) + round_robin.unexported > 0
    assert exporter.unexported == 0
    if workload == "fanout":  # the Map bursts: many more events than the steady workload
        assert exporter.exported > 5 * run(40, "exporter", hours=1.0, warmup=900).exported


def test_the_slowdown_workload_triples_the_tasks_that_start_after_its_moment() -> None:
    import random

    from bench.freshness import Shape, _template

    shape = Shape(chain=True, wait_s=600, task_median=100.0)
    steady = _template(random.Random(5), shape, horizon=3000)
    slow = _template(random.Random(5), shape, horizon=3000, workload="slowdown", slow_after=1000)

    def task_gaps(template: object) -> list[tuple[float, float]]:
        offsets, events = template.offsets, template.events  # type: ignore[attr-defined]
        return [(offsets[i - 1], offsets[i] - offsets[i - 1])
                for i, e in enumerate(events) if e["type"] == "TaskSucceeded"]  # fmt: skip

    pairs = list(zip(task_gaps(steady), task_gaps(slow), strict=False))
    assert any(start >= 1000 for (start, _), _ in pairs) and any(start < 1000 for (start, _), _ in pairs)
    for (start, gap), (_, slow_gap) in pairs:
        if start < 1000:
            assert slow_gap == gap
        else:
            break
    later = [(gap, slow_gap) for (_, gap), (slow_start, slow_gap) in pairs if slow_start >= 1000]
    assert later and all(abs(slow_gap - 3 * gap) < 1e-6 for gap, slow_gap in later)


def test_freshness_benchmark_reads_the_same_workload_from_logs() -> None:
    from bench.freshness import run

    history = run(40, "exporter", hours=1.5, warmup=4500)
    logs = run(40, "logs", hours=1.5, warmup=4500)
    assert len(logs.lags) + logs.unexported == len(history.lags) + history.unexported > 0  # the same events
    assert logs.unexported == 0 and all(lag >= 0 for lag in logs.lags)
    assert logs.log_calls > 0 and logs.history_calls <= 40  # each execution's history read once at most
    assert logs.exported == history.exported
    assert logs.calls_per_1000_events < history.calls_per_1000_events


def test_the_bound_counts_the_events_the_workload_makes() -> None:
    import random

    from bench.freshness import CHAIN_LOOP, CHAIN_TASK_END, WAITER_LOOP, WAITER_TASK_END, Shape, _template

    for shape, loop, at_end in (
        (Shape(chain=False, wait_s=600, task_median=100.0), WAITER_LOOP, WAITER_TASK_END),
        (Shape(chain=True, wait_s=600, task_median=100.0), CHAIN_LOOP, CHAIN_TASK_END),
    ):
        template = _template(random.Random(3), shape, horizon=3000)
        types = [event["type"] for event in template.events]
        loops = types.count("TaskSucceeded")
        assert loops >= 3 and len(types) == 2 + loops * loop  # ExecutionStarted, ..., ExecutionSucceeded
        for i, kind in enumerate(types):
            if kind == "TaskSucceeded" and i + at_end < len(types) - 1:
                together = [t for t in template.offsets if 0 <= t - template.offsets[i] < 1.0]
                assert len(together) == at_end


def test_api_efficiency_benchmark_counts_calls_and_bytes() -> None:
    import asyncio
    import os

    from bench.api_efficiency import measure

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    rows = {row["poller"]: row for row in asyncio.run(measure(length=1200, polls=4, new=5, seed=1))}
    assert rows["exporter"]["calls_per_poll"] == 1.0
    assert rows["naive"]["calls_per_poll"] == 2.0  # 1,200+ events: two pages of 1,000
    assert (
        rows["lower bound"]["bytes_per_poll"]
        < rows["exporter"]["bytes_per_poll"]
        < rows["naive"]["bytes_per_poll"]
    )
    assert rows["exporter"]["events_per_poll"] == rows["naive"]["events_per_poll"] > 0


def test_throughput_benchmark_moves_every_event_on_both_paths() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--executions", "4", "--events", "200"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for path, line in (("history", lines[1]), ("logs", lines[4])):
        assert line.startswith(f"{path:<8} end to end, one core (800 events)"), line
        assert float(line.split()[-1].replace(",", "")) > 0
    assert "receiver: spans " in lines[7]
    spans = int(lines[7].rsplit(" ", 1)[-1])
    from exporter.model import ExecutionIdentity
    from exporter.translate import assemble
    from simulator.workloads import bulk_template

    template = bulk_template(200)
    events = [{**event, "timestamp": 0.0} for event in template.events]
    per_execution = len(
        assemble(events, ExecutionIdentity.from_arn("arn:aws:states:us-east-1:1:execution:b:e"))
    )
    assert spans == 2 * 4 * per_execution  # each path's executions, every span once


def test_memory_benchmark_tracks_every_execution() -> None:
    from bench.memory import measure

    result = measure(300, python=True)  # in a test process RSS is noise: count allocations
    assert result["tracked"] == 300 and result["open_spans"] == 600  # each: the root and its Wait
    assert 0 < result["python_per"] < 1_000_000


def test_map_run_benchmark_compares_against_its_baseline() -> None:
    from bench.map_runs import run

    base = run(40, 0, None, minutes=12)
    sampled = run(40, 300, "sample", minutes=12)
    assert base.lags and sampled.lags and base.followed == 0
    assert 10 <= sampled.followed <= 40  # the sample and the failures, of 300 children
    assert all(sampled.busiest[op] <= sampled.allowed[op] for op in sampled.busiest)
    express = run(40, 300, "sample", minutes=12, child_type="express")
    assert 10 <= express.followed <= 40 and express.busiest["FilterLogEvents"] > 0  # read from the log
    assert all(express.busiest[op] <= express.allowed[op] for op in express.busiest)


def test_fleet_benchmark_counts_each_accounts_calls_and_the_cpu_per_event() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.fleet", "--accounts", "1,2", "--executions", "8", "--events", "100",
         "--pressed", "2,40,10"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [(row[0], row[1]) for row in rows] == [
        ("1", "800"),
        ("2", "1,600"),
    ]  # every event of every account
    for row in rows:
        assert 0 < float(row[4]) <= 1.0  # the busiest account's calls within its share
    assert "under budget pressure (2 accounts, 800 events" in result.stdout


def test_restart_benchmark_compares_kept_state_with_replay() -> None:
    import tempfile
    from pathlib import Path

    from bench.restart import measure

    with tempfile.TemporaryDirectory() as workdir:
        rows = measure(30, 1000, Path(workdir) / "checkpoint.sqlite")
    kept, replayed = rows["kept"], rows["replayed"]
    assert kept["caught_up"] == replayed["caught_up"] == 30
    assert kept["calls"] == 30  # one call an execution: what is new
    assert replayed["calls"] == 60  # each history read again from its start: two pages of 1,000
