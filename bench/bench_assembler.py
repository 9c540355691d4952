"""Times the assembler against `json.loads` of the same bytes, in the same run.

    python -m bench.bench_assembler [--repeat N]

Prints events per second for both and the ratio (assembler time / parse time). The assembler's
time covers validating every event and building every span and observation; the parse is what
any consumer of the API's JSON pays anyway."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.assembler import SpanAssembler  # noqa: E402
from exporter.model import ExecutionIdentity  # noqa: E402
from tests.builder import History  # noqa: E402
from tests.corpus import recorded_histories  # noqa: E402

ARN = "arn:aws:states:us-east-1:123456789012:execution:Bench:long"


def long_history(events: int = 25_000) -> list[dict[str, Any]]:
    """A loop of Task (with Lambda attempts, every third one retried) and Choice states, as
    AWS would return it, cut at `events` with the last event an ExecutionFailed."""
    h = History(step_s=0.01)
    h.start()
    loop = 0
    while len(h.events) < events:
        loop += 1
        h.add("TaskStateEntered", name="Poll", input='{"cursor": %d}' % loop)
        for attempt in range(2 if loop % 3 == 0 else 1):
            h.add("TaskScheduled", resource="invoke", resourceType="lambda", region="us-east-1",
                  parameters='{"FunctionName": "poll", "Payload": {"n": %d}}' % loop, timeoutInSeconds=60)  # fmt: skip
            h.add("TaskStarted", resource="invoke", resourceType="lambda")
            if attempt == 0 and loop % 3 == 0:
                h.add("TaskFailed", resource="invoke", resourceType="lambda", error="Lambda.TooManyRequestsException", cause="rate")
            else:
                h.add("TaskSucceeded", resource="invoke", resourceType="lambda", output='{"more": true}')
        h.add("TaskStateExited", name="Poll", output='{"more": true}')
        h.state("Choice", "More?")
    del h.events[events - 1 :]
    h.add("ExecutionFailed", error="States.Runtime", cause="history limit")
    return h.events


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(label: str, documents: list[tuple[ExecutionIdentity, bytes]], repeat: int) -> dict[str, Any]:
    parsed = [(identity, json.loads(raw)) for identity, raw in documents]
    events = sum(len(doc) for _, doc in parsed)
    parse_s = best_of(repeat, lambda: [json.loads(raw) for _, raw in documents])

    def assemble_all() -> None:
        for identity, doc in parsed:
            SpanAssembler(identity).feed(doc)

    assemble_s = best_of(repeat, assemble_all)
    return {
        "workload": label,
        "events": events,
        "bytes": sum(len(raw) for _, raw in documents),
        "parse_eps": events / parse_s,
        "assemble_eps": events / assemble_s,
        "ratio": assemble_s / parse_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--events", type=int, default=25_000)
    args = parser.parse_args()
    long = [(ExecutionIdentity.from_arn(ARN), json.dumps(long_history(args.events)).encode())]
    corpus = [(h.identity, json.dumps(h.events).encode()) for h in recorded_histories()]
    rows = [
        measure(f"one history of {args.events:,} events", long, args.repeat),
        measure(f"recorded corpus ({len(corpus)} histories)", corpus, args.repeat),
    ]
    print(f"{'workload':<36} {'events':>8} {'MB':>6} {'json.loads ev/s':>16} {'assembler ev/s':>15} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['workload']:<36} {row['events']:>8,} {row['bytes'] / 1e6:>6.1f} {row['parse_eps']:>16,.0f} "
            f"{row['assemble_eps']:>15,.0f} {row['ratio']:>5.2f}x"
        )


if __name__ == "__main__":
    main()
