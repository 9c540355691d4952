"""`python -m simulator`: a bulk scenario over HTTP, for benchmarks that run the exporter as a
process of its own."""

from __future__ import annotations

import time

from exporter.config import DEFAULT_QUOTAS
from simulator.logs import Delivery, Logging
from simulator.stepfunctions import Simulator, SimulatorServer
from simulator.workloads import bulk_template

LOG_GROUP = "/aws/vendedlogs/states/bulk"


def main() -> None:
    """Serve a bulk scenario until standard input closes: `--executions` finished executions of
    `--events` events each, spread over `--machines` state machines; with `--logs`, EXPRESS
    ones whose every event is in one log group, delivered at once."""
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="accounts, each with the whole scenario; the second on are reached by AssumeRole of "
        "arn:aws:iam::ACCOUNT:role/sfn-exporter (ACCOUNT: 100000000001, ...)",
    )
    parser.add_argument(
        "--quota-share", type=float, default=0.0, help="AWS's quotas times this (0: no limit), per account"
    )
    parser.add_argument(
        "--logs", action="store_true", help="EXPRESS state machines, read from their log group"
    )
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    template = bulk_template(args.events)
    start = time.time() - 60
    kind, logging = ("EXPRESS", Logging(LOG_GROUP)) if args.logs else ("STANDARD", None)
    quotas = {op: (1e9, 1e9) for op in DEFAULT_QUOTAS}
    if args.quota_share:
        quotas = {op: (b * args.quota_share, r * args.quota_share) for op, (b, r) in DEFAULT_QUOTAS.items()}
    sims = []
    for index in range(args.accounts):
        account = "123456789012" if index == 0 else f"{100000000000 + index}"
        sim = Simulator(quotas=quotas, account=account)
        sim.logs.delivery = Delivery(delay_s=(0.0, 0.0), streams=4)
        for m in range(args.machines):
            machine = sim.add_machine(f"bulk-{m}", {"StartAt": "Work", "States": {}}, kind, logging=logging)
            for n in range(args.executions // args.machines):
                sim.start(machine, template, f"e-{n:05d}", start=start)
        sims.append(sim)
    roles = {f"arn:aws:iam::{sim.account}:role/sfn-exporter" for sim in sims[1:]}
    server = SimulatorServer(sims[0], args.port, others=sims[1:], roles=roles).start()
    print(f"ready {server.port}", flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
