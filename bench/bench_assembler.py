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

from exporter.history.assembler import SpanAssembler
from exporter.model import ExecutionIdentity
from simulator.builder import History
from tests.corpus import recorded_histories

ARN = "arn:aws:states:us-east-1:123456789012:execution:Bench:long"


def _templates() -> dict[str, dict[str, Any]]:
    """Real event details from the recorded AWS corpus, one per event type (the first seen),
    so the long history carries AWS's own payload shapes and sizes."""
    first: dict[str, dict[str, Any]] = {}
    lambda_first: dict[str, dict[str, Any]] = {}
    for history in recorded_histories():
        for event in history.events:
            if not event["type"].startswith(("Choice", "Task")):
                continue
            details = {k: v for k, v in event.items() if k.endswith("EventDetails")}
            first.setdefault(event["type"], details)
            if '"resourceType": "lambda"' in json.dumps(details):
                lambda_first.setdefault(event["type"], details)
    return first | lambda_first


def long_history(events: int = 25_000) -> list[dict[str, Any]]:
    """A loop of a Lambda Task (every third attempt fails and is retried) and a Choice, built
    from real AWS event details, cut at `events` with the last event an ExecutionFailed."""
    templates = _templates()
    h = History(step_s=0.01)
    h.start()

    def add(event_type: str) -> None:
        (key, details), *_ = templates[event_type].items()
        h.add(event_type)
        h.events[-1][key] = details

    loop = 0
    while len(h.events) < events:
        loop += 1
        add("TaskStateEntered")
        for attempt in range(2 if loop % 3 == 0 else 1):
            add("TaskScheduled")
            add("TaskStarted")
            add("TaskFailed" if attempt == 0 and loop % 3 == 0 else "TaskSucceeded")
        add("TaskStateExited")
        add("ChoiceStateEntered")
        add("ChoiceStateExited")
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--events", type=int, default=25_000)
    args = parser.parse_args()
    long = [(ExecutionIdentity.from_arn(ARN), json.dumps(long_history(args.events)).encode())]
    assert len(json.loads(long[0][1])) == args.events
    corpus = [(h.identity, json.dumps(h.events).encode()) for h in recorded_histories()]
    rows = [
        measure(f"one history of {args.events:,} events", long, args.repeat),
        measure(f"recorded corpus ({len(corpus)} histories)", corpus, args.repeat),
    ]
    print(
        f"{'workload':<36} {'events':>8} {'MB':>6} {'json.loads ev/s':>16} {'assembler ev/s':>15} {'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row['workload']:<36} {row['events']:>8,} {row['bytes'] / 1e6:>6.1f} {row['parse_eps']:>16,.0f} "
            f"{row['assemble_eps']:>15,.0f} {row['ratio']:>5.2f}x"
        )


if __name__ == "__main__":
    main()
