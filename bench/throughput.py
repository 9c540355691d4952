"""Throughput: events per second through the exporter on one core, end to end.

    python -m bench.throughput [--executions 100] [--events 1000] [--profile]

The simulator (AWS JSON protocol over HTTP) and a gRPC OTLP receiver run as processes pinned to
the second CPU; the exporter runs here, pinned to the first: discovery, aiobotocore calls,
botocore parsing, the assembler, OTLP conversion and export (the receiver acknowledges every
span). Timed from the exporter's start until every event has been handed to the sinks. Then
the parse cost alone: botocore parsing the same GetExecutionHistory responses, in this process.
`--profile` adds a second, profiled run and prints where its time went."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
REPO = Path(__file__).resolve().parent.parent

from exporter.app import Hooks, run_exporter  # noqa: E402
from exporter.config import Config  # noqa: E402


def _start(module: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready "):
        raise RuntimeError(f"{module} did not start: {line!r}")
    return process, int(line.split()[1])


def _stop(process: subprocess.Popen[str]) -> str:
    out, _ = process.communicate("", timeout=30)
    return out


async def _exporter_run(sim_port: int, otlp_port: int, total: int, workdir: str) -> float:
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SFN": f"http://127.0.0.1:{sim_port}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    })  # fmt: skip
    config = Config.model_validate({
        "discovery": {"executions_interval_seconds": 1, "lookback_seconds": 3600},
        "polling": {"concurrency": 16, "min_interval_seconds": 0.2},
        "api": {"quota_share": 1.0},
        "checkpoint": {"path": f"{workdir}/checkpoint.sqlite"},
        "otlp": {"batch_max_spans": 1024, "batch_linger_seconds": 0.05},
        "web": {"listen_address": "127.0.0.1:0"},
    })  # fmt: skip
    hooks = Hooks(handle_signals=False)
    started = time.perf_counter()
    task = asyncio.create_task(run_exporter(config, hooks))
    while (hooks.registry.get_sample_value("sfn_exporter_events_processed_total") or 0) < total:
        if task.done():
            task.result()
            raise RuntimeError("the exporter stopped early")
        await asyncio.sleep(0.02)
    took = time.perf_counter() - started
    hooks.stop.set()
    await task
    return took


def _parse_cost(sim_port: int, arn: str, repeat: int) -> tuple[float, int, int]:
    """Seconds botocore takes to parse one GetExecutionHistory answer (up to 1,000 events), its
    size, and how many events it holds."""
    import botocore.parsers
    import botocore.session

    request = urllib.request.Request(
        f"http://127.0.0.1:{sim_port}/", data=json.dumps({"executionArn": arn, "maxResults": 1000}).encode(),
        headers={"X-Amz-Target": "AWSStepFunctions.GetExecutionHistory", "Content-Type": "application/x-amz-json-1.0"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    shape = (
        botocore.session.get_session()
        .get_service_model("stepfunctions")
        .operation_model("GetExecutionHistory")
        .output_shape
    )
    parser = botocore.parsers.create_parser("json")
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        parsed: Any = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
        best = min(best, time.perf_counter() - started)
    return best, len(body), len(parsed["events"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        other = str(max(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))))
    else:
        other = "0"
    total = args.executions * args.events
    sim, sim_port = _start(
        "simulator",
        "--executions",
        str(args.executions),
        "--events",
        str(args.events),
        "--cpu",
        other,
    )
    otlp, otlp_port = _start("tests.otlp_receiver", other)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            took = asyncio.run(_exporter_run(sim_port, otlp_port, total, workdir))
        parse_s, size, parsed_events = _parse_cost(
            sim_port, "arn:aws:states:us-east-1:123456789012:execution:bulk-0:e-00000", 20
        )
        profile = None
        if args.profile:
            with tempfile.TemporaryDirectory() as workdir:
                profiler = cProfile.Profile()
                # the same work again, under the profiler, after a fresh start of the simulator
                _stop(sim)
                sim, sim_port = _start(
                    "simulator",
                    "--executions",
                    str(args.executions),
                    "--events",
                    str(args.events),
                    "--cpu",
                    other,
                )
                profiler.enable()
                asyncio.run(_exporter_run(sim_port, otlp_port, total, workdir))
                profiler.disable()
                profile = pstats.Stats(profiler)
    finally:
        _stop(sim)
        received = _stop(otlp)
    parse_eps = parsed_events / parse_s
    print(f"{'measure':<44} {'events/s':>10}")
    print(f"{'end to end, one core (' + format(total, ',') + ' events)':<44} {total / took:>10,.0f}")
    print(f"{'botocore parsing alone (the same answers)':<44} {parse_eps:>10,.0f}")
    print(
        f"end to end costs {parse_eps / (total / took):.2f}x the parse alone; answers of {size / 1000:,.0f} kB; receiver: {received.strip()}"
    )
    if profile is not None:
        print("\nwhere the time goes (profiled run, by own time):")
        profile.sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
