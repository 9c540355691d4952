"""Many accounts in one process: each account's API budget, and the CPU per 1,000 events.

    python -m bench.fleet [--accounts 1,4,8] [--executions 40] [--events 500]

The simulator runs as a process (pinned to the second CPU) with the same scenario in each
account (the first reached with the ambient credentials, the others by AssumeRole), and counts
every call per account; the exporter runs here, pinned to the first CPU, with one target per
account and the default `api.quota_share` (0.5). Each row: the busiest account's calls per
second of each operation against what its share allows (the refill rate, plus the burst spread
over the run: at most 1.00; a last row whose many short histories want more calls than that
shows the share holding), and the exporter's CPU seconds per 1,000 events against the
single-account run of the same command (the baseline: the targets' parts must not cost more per
event as they multiply). The garbage collector is tuned as `sfn-exporter run` tunes it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import _start, _stop, pin_to_first_cpu, run_until_handled
from exporter.app import tune_garbage_collector
from exporter.config import Config

ROLE = "arn:aws:iam::{account}:role/sfn-exporter"


def accounts(n: int) -> list[str]:
    return ["123456789012"] + [f"{100000000000 + index}" for index in range(1, n)]


async def _run(n: int, sim_port: int, otlp_port: int, total: int, workdir: str) -> tuple[float, float]:
    """Wall and CPU seconds of the exporter until every event of every account was handed on."""
    endpoint = f"http://127.0.0.1:{sim_port}"
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SFN": endpoint, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": endpoint,
        "AWS_ENDPOINT_URL_STS": endpoint,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    })  # fmt: skip
    targets: list[dict[str, Any]] = [{"regions": ["us-east-1"]}]
    targets += [{"role_arn": ROLE.format(account=a), "regions": ["us-east-1"]} for a in accounts(n)[1:]]
    config = Config.model_validate({
        "targets": targets,
        "discovery": {"lookback_seconds": 3600},  # the default intervals: discovery costs per target, not per event
        "polling": {"concurrency": 8, "min_interval_seconds": 0.2},
        "checkpoint": {"path": f"{workdir}/checkpoint.sqlite"},
        "otlp": {"batch_max_spans": 1024, "batch_linger_seconds": 0.05},
        "web": {"listen_address": "127.0.0.1:0"},
    })  # fmt: skip
    return await run_until_handled(config, total)


def _stats(sim_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/_sim/stats", timeout=10) as response:
        return dict(json.loads(response.read()))


def measure(n: int, executions: int, events: int, other: str, otlp_port: int) -> dict[str, Any]:
    config = Config()
    executions = executions // 4 * 4  # the simulator starts executions // 4 on each of 4 state machines
    sim, sim_port = _start(
        "simulator", "--accounts", str(n), "--executions", str(executions), "--events", str(events),
        "--machines", "4", "--cpu", other,
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as workdir:
            took, cpu = asyncio.run(_run(n, sim_port, otlp_port, n * executions * events, workdir))
        stats = _stats(sim_port)
    finally:
        _stop(sim)
    worst, where = 0.0, ""
    for target, calls in stats["targets"].items():
        for operation, count in calls.items():
            quota = config.quota(operation)
            allowed = quota.refill_per_second + quota.bucket / took
            if count / took / allowed > worst:
                worst, where = count / took / allowed, f"{operation} of {target.split('/')[0]}"
    per_account = {t: sum(c.values()) / took for t, c in stats["targets"].items()}
    return {"n": n, "events": n * executions * events, "took": took, "cpu_per_1000": cpu / (n * executions * events) * 1000,
            "worst": worst, "where": where, "calls_per_s": max(per_account.values())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--accounts", default="1,4,8", help="the account counts to run, the first is the baseline"
    )
    parser.add_argument("--executions", type=int, default=40, help="per account")
    parser.add_argument("--events", type=int, default=500, help="per execution")
    parser.add_argument(
        "--pressed",
        default="4,500,10",
        help="ACCOUNTS,EXECUTIONS,EVENTS of a last row whose executions want more calls than the "
        "share allows (many short histories); empty: none",
    )
    args = parser.parse_args()
    tune_garbage_collector()  # as `sfn-exporter run` does
    other = pin_to_first_cpu()
    otlp, otlp_port = _start("tests.otlp_receiver", other)
    try:
        rows = [
            measure(int(n), args.executions, args.events, other, otlp_port) for n in args.accounts.split(",")
        ]
        pressed = None
        if args.pressed:
            n, executions, events = (int(part) for part in args.pressed.split(","))
            pressed = measure(n, executions, events, other, otlp_port)
    finally:
        _stop(otlp)
    base = rows[0]["cpu_per_1000"]
    print(f"{'accounts':>8} {'events':>9} {'seconds':>8} {'busiest account calls/s':>24} "
          f"{'of its share (max 1.00)':>24} {'CPU ms / 1,000 events':>22} {'vs ' + str(rows[0]['n']) + ' account':>12}")  # fmt: skip
    for row in rows:
        print(f"{row['n']:>8} {row['events']:>9,} {row['took']:>8.1f} {row['calls_per_s']:>24.1f} "
              f"{row['worst']:>17.2f} ({row['where']}) {row['cpu_per_1000'] * 1000:>14.1f} "
              f"{row['cpu_per_1000'] / base:>11.2f}x")  # fmt: skip
    if pressed is not None:
        print(f"\nunder budget pressure ({pressed['n']} accounts, {pressed['events']:,} events in many short "
              f"histories): busiest account {pressed['calls_per_s']:.1f} calls/s, {pressed['worst']:.2f} of its "
              f"share at most ({pressed['where']}), {pressed['took']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
