"""The number of shards changes mid-run (two processes, then three): state machines move to a
shard that has no cursor for their running executions, and the hand-over rule
(exporter.shards) holds: nothing is exported or counted twice, what ends after the move is
exported by the new owner, and executions started after it arrive whole."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

from exporter.history.assembler import SpanAssembler
from exporter.history.catalogue import BY_NAME
from exporter.model import ExecutionIdentity
from exporter.shards import owner
from simulator.stepfunctions import SimExecution, Simulator, SimulatorServer
from simulator.workloads import waiter, waiter_definition
from tests.harness import ExporterProcess, fast_config, wait_until
from tests.otlp_receiver import GrpcOtlpServer
from tests.truth import span_ids

OPS = (
    "GetExecutionHistory",
    "ListExecutions",
    "DescribeExecution",
    "ListStateMachines",
    "DescribeStateMachine",
)
MACHINES = 8
COUNTERS = ("sfn_executions_started_total", "sfn_executions_finished_total", "sfn_states_entered_total",
            "sfn_states_finished_total", "sfn_task_attempts_total")  # fmt: skip
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def truth(executions: list[SimExecution]) -> Samples:
    counted: Samples = defaultdict(float)
    for execution in executions:
        identity = ExecutionIdentity.from_arn(execution.arn)
        for observation in SpanAssembler(identity).feed(execution.history()).observations:
            if observation.metric in COUNTERS:
                labels = zip(BY_NAME[observation.metric].labels, observation.labels, strict=True)
                key = tuple(sorted([("account", identity.account), ("region", identity.region), *labels]))
                counted[(observation.metric, key)] += observation.value
    return counted


def counters(process: ExporterProcess) -> Samples:
    return {key: value for key, value in process.samples().items() if key[0] in COUNTERS and value}


def test_changing_the_number_of_shards_counts_nothing_twice(tmp_path: Path) -> None:
    sim = Simulator(quotas={op: (1e6, 1e6) for op in OPS})
    rng = random.Random(11)
    machines = [sim.add_machine(f"m{n}", waiter_definition(2)) for n in range(MACHINES)]
    moved = [m for m in machines if {owner(m.arn, 2), owner(m.arn, 3)} != {owner(m.arn, 2)}]
    assert moved, "no state machine moves from 2 shards to 3: choose other names"

    def start(tag: str, after_s: float) -> list[SimExecution]:
        return [
            sim.start(machine, waiter(rng, loops=6, wait_s=2, task_s=(0.2, 0.6)), f"{tag}-{n}", start=time.time() + after_s)
            for machine in machines
            for n in range(2)
        ]  # fmt: skip

    with SimulatorServer(sim) as server, GrpcOtlpServer() as otlp:
        configs = []
        for shard in range(3):
            (tmp_path / f"shard-{shard}").mkdir()
            config = fast_config(tmp_path / f"shard-{shard}", api={"quotas": {op: {"bucket": 1000, "refill_per_second": 1000} for op in OPS}})  # fmt: skip
            configs.append(config)

        def shards(total: int) -> list[ExporterProcess]:
            processes = []
            for shard in range(total):
                configs[shard]["sharding"] = {"shard": shard, "total_shards": total}
                process = ExporterProcess(tmp_path, configs[shard], server.endpoint, otlp.endpoint)
                process.env["AWS_ENDPOINT_URL_STS"] = server.endpoint
                processes.append(process.start())
            return processes

        first = shards(2)  # a fleet of two, started fresh (what runs before its start is taken over)
        wait_until(lambda: all(p.get("/readyz")[0] == 200 for p in first), 30, "the first shards to be ready")
        before_move = start("early", 0.5)  # each runs about 18 s: across the move
        wait_until(lambda: len(otlp.receiver.snapshot()) > 50, 30, "the first spans")
        time.sleep(3)
        counted_first = [counters(p) for p in first]
        for process in first:
            process.signal(signal.SIGTERM)
        for process in first:
            assert process.wait(30) == 0
        second = shards(3)
        try:
            after_move = start("late", 0.5)
            wait_until(lambda: all(e.status(time.time()) != "RUNNING" for e in before_move + after_move), 60,
                       "every execution to end")  # fmt: skip
            received = lambda: {s.span_id for s in otlp.receiver.snapshot()}  # noqa: E731
            late = {f"{i:016x}" for i in span_ids(after_move)}
            wait_until(lambda: late <= received(), 60, "every span of the executions started after the move")
            # what closed after the move of a moved execution arrives: its root span at least
            roots = {f"{i:016x}" for i in span_ids([e for e in before_move if e.machine in moved])}
            wait_until(lambda: len(roots & received()) > 0, 30, "the moved executions' later spans")
            time.sleep(3)  # a last pass of every shard
            counted_second = [counters(p) for p in second]
        finally:
            for process in second:
                process.signal(signal.SIGTERM)
            for process in second:
                process.wait(30)
    sent = Counter(s.span_id for s in otlp.receiver.snapshot())
    assert not [span for span, times in sent.items() if times > 1]  # no span from two shards, or twice
    assert_counted_once(counted_first + counted_second, truth(before_move + after_move))
    logs = "".join(p.log() for p in second)
    assert "taken over from another shard" in logs


def assert_counted_once(parts: list[Samples], every: Samples) -> None:
    total: Samples = defaultdict(float)
    for part in parts:
        for key, value in part.items():
            total[key] += value
    over = {key: (value, every.get(key, 0.0)) for key, value in total.items() if value > every.get(key, 0.0)}
    assert not over, over  # nothing counted twice
    # Every execution's start was counted once (the early ones before the move, by their first
    # owner), and its end once (after the move, by whoever owned it then): exactly the truth.
    for key, value in every.items():
        if key[0] in ("sfn_executions_started_total", "sfn_executions_finished_total"):
            assert total.get(key) == value, key
