"""Throughput: events per second through the exporter on one core, end to end.

    python -m bench.throughput [--executions 100] [--events 1000] [--source history|logs|both] [--profile]
                               [--gc-default]

The simulator (AWS JSON protocol over HTTP) and a gRPC OTLP receiver run as processes pinned to
the second CPU; the exporter runs here, pinned to the first: discovery, aiobotocore calls,
botocore parsing, the assembler, OTLP conversion and export (the receiver acknowledges every
span). Timed from the exporter's start until every event has been handed to the sinks. Then
the parse cost alone: botocore parsing the same GetExecutionHistory responses, in this process.
The log path (`--source logs`): the same executions as EXPRESS ones whose every event is in one
log group, read with FilterLogEvents, each message turned into its history event.
`--profile` adds a second, profiled run and prints where its time went. The garbage collector is
tuned as `sfn-exporter run` tunes it; `--gc-default` leaves Python's default thresholds."""

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

from exporter.app import Hooks, run_exporter, tune_garbage_collector  # noqa: E402
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
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": f"http://127.0.0.1:{sim_port}",
        "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{sim_port}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    })  # fmt: skip
    config = Config.model_validate({
        "discovery": {"executions_interval_seconds": 1, "lookback_seconds": 3600},
        "polling": {"concurrency": 16, "min_interval_seconds": 0.2},
        "api": {"quota_share": 1.0, "quotas": {"FilterLogEvents": {"bucket": 1000, "refill_per_second": 1000}}},
        "checkpoint": {"path": f"{workdir}/checkpoint.sqlite"},
        "otlp": {"batch_max_spans": 1024, "batch_linger_seconds": 0.05},
        "web": {"listen_address": "127.0.0.1:0"},
        "logs": {"interval_seconds": 0.2, "quota_share": 1.0},
    })  # fmt: skip
    took, _ = await run_until_handled(config, total)
    return took


async def run_until_handled(config: Config, total: int) -> tuple[float, float]:
    """Runs the exporter until `total` events were handed to the sinks, then stops it: the wall
    and CPU seconds (of this process) that took."""
    hooks = Hooks(handle_signals=False)
    started, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(run_exporter(config, hooks))
    while _handled(hooks) < total:
        if task.done():
            task.result()
            raise RuntimeError("the exporter stopped early")
        await asyncio.sleep(0.02)
    took, used = time.perf_counter() - started, time.process_time() - cpu
    hooks.stop.set()
    await task
    return took, used


def _handled(hooks: Hooks) -> float:
    """Events handed to the sinks so far: the one counter collected (collecting the whole
    registry, process metrics and all, fifty times a second cost the run 2% of its time)."""
    if hooks.exporter is None:
        return 0.0
    samples = (sample for metric in hooks.exporter.health.events.collect() for sample in metric.samples)
    return float(next(sample.value for sample in samples if sample.name.endswith("_total")))


def pin_to_first_cpu() -> str:
    """Pin this process to its first CPU; the CPU for the helper processes (the last one)."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        return str(max(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))))
    return "0"


def _answer(sim_port: int, target: str, params: dict[str, Any]) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{sim_port}/", data=json.dumps(params).encode(),
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def _parse_cost(sim_port: int, source: str, repeat: int) -> tuple[float, int, int]:
    """Seconds botocore takes to parse one answer (a GetExecutionHistory page of up to 1,000
    events; for logs a FilterLogEvents page, and each message's JSON), its size, and how many
    events it holds."""
    import botocore.parsers
    import botocore.session

    if source == "logs":
        body = _answer(
            sim_port, "Logs_20140328.FilterLogEvents", {"logGroupName": "/aws/vendedlogs/states/bulk"}
        )
        service, operation, key = "logs", "FilterLogEvents", "events"
    else:
        arn = "arn:aws:states:us-east-1:123456789012:execution:bulk-0:e-00000"
        body = _answer(
            sim_port, "AWSStepFunctions.GetExecutionHistory", {"executionArn": arn, "maxResults": 1000}
        )
        service, operation, key = "stepfunctions", "GetExecutionHistory", "events"
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).output_shape
    parser = botocore.parsers.create_parser("json")
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        parsed: Any = parser.parse({"body": body, "headers": {}, "status_code": 200}, shape)
        if source == "logs":
            for item in parsed[key]:
                json.loads(item["message"])
        best = min(best, time.perf_counter() - started)
    return best, len(body), len(parsed[key])


def _measure(source: str, args: argparse.Namespace, other: str, otlp_port: int) -> dict[str, Any]:
    machines = 4  # the simulator starts executions // machines on each: the total is what exists
    total = args.executions // machines * machines * args.events
    flags = ["--executions", str(args.executions), "--events", str(args.events), "--machines", str(machines),
             "--cpu", other]  # fmt: skip
    flags += ["--logs"] if source == "logs" else []
    sim, sim_port = _start("simulator", *flags)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            took = asyncio.run(_exporter_run(sim_port, otlp_port, total, workdir))
        parse_s, size, parsed_events = _parse_cost(sim_port, source, 20)
        profile = None
        if args.profile:
            # the same work again, under the profiler, after a fresh start of the simulator
            _stop(sim)
            sim, sim_port = _start("simulator", *flags)
            with tempfile.TemporaryDirectory() as workdir:
                profiler = cProfile.Profile()
                profiler.enable()
                asyncio.run(_exporter_run(sim_port, otlp_port, total, workdir))
                profiler.disable()
                profile = pstats.Stats(profiler)
    finally:
        _stop(sim)
    return {"total": total, "eps": total / took, "parse_eps": parsed_events / parse_s, "size": size,
            "profile": profile}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--source", choices=("history", "logs", "both"), default="both")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--gc-default", action="store_true", help="leave Python's GC thresholds as they are")
    args = parser.parse_args()
    if not args.gc_default:
        tune_garbage_collector()
    other = pin_to_first_cpu()
    sources = ("history", "logs") if args.source == "both" else (args.source,)
    otlp, otlp_port = _start("tests.otlp_receiver", other)
    try:
        results = {source: _measure(source, args, other, otlp_port) for source in sources}
    finally:
        received = _stop(otlp)
    baseline = {"history": "botocore parsing alone (the same answers)",
                "logs": "botocore parsing + json.loads of the messages"}  # fmt: skip
    print(f"{'path':<8} {'measure':<48} {'events/s':>10}")
    for source, result in results.items():
        print(
            f"{source:<8} {'end to end, one core (' + format(result['total'], ',') + ' events)':<48} {result['eps']:>10,.0f}"
        )
        print(f"{source:<8} {baseline[source]:<48} {result['parse_eps']:>10,.0f}")
        print(
            f"{source:<8} end to end costs {result['parse_eps'] / result['eps']:.2f}x the parse alone; "
            f"answers of {result['size'] / 1000:,.0f} kB"
        )
    print(f"receiver: {received.strip()}")
    for source, result in results.items():
        if result["profile"] is not None:
            print(f"\nwhere the time goes, {source} path (profiled run, by own time):")
            result["profile"].sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
