"""Crash and shutdown: SIGKILL mid-run loses no span and double-counts no event; SIGTERM flushes."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

from exporter.demo.samples import SAMPLES
from tests.harness import ExporterProcess, Workload, fast_config, wait_until
from tests.moto_server import MotoServer
from tests.otlp_receiver import GrpcOtlpServer
from tests.truth import TARGET

COUNTERS = (
    "sfn_executions_started_total", "sfn_executions_finished_total", "sfn_states_entered_total",
    "sfn_states_finished_total", "sfn_task_attempts_total", "sfn_map_iterations_total",
)  # fmt: skip


class Scraper(threading.Thread):
    """Keeps the last /metrics it could read, until the process is gone."""

    def __init__(self, exporter: ExporterProcess) -> None:
        super().__init__(daemon=True)
        self.exporter = exporter
        self.last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(OSError):
                self.last = self.exporter.samples()
            time.sleep(0.05)


def counters(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {key: value for key, value in samples.items() if key[0] in COUNTERS}


def test_sigkill_and_restart_lose_no_span_and_count_no_event_twice(tmp_path: Path) -> None:
    names = [sample.name for sample in SAMPLES]
    with MotoServer() as moto, GrpcOtlpServer() as otlp:
        workload = Workload(moto.endpoint)
        workload.deploy()
        config = fast_config(tmp_path)
        first = ExporterProcess(tmp_path, config, moto.endpoint, otlp.endpoint).start()
        scraper = Scraper(first)
        scraper.start()
        for index in range(14):
            workload.start(names[index % len(names)])
            time.sleep(0.15)
        for _ in range(3):
            workload.start("long-wait")  # mid-flight at the kill: the restart must resume them
        time.sleep(1.5)
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        scraper.halt.set()
        scraper.join()
        before_kill = counters(scraper.last)
        assert before_kill, "never scraped the first process"

        second = ExporterProcess(tmp_path, config, moto.endpoint, otlp.endpoint).start()
        try:
            for index in range(6):
                workload.start(names[index % len(names)])
            wait_until(workload.all_finished, 90, "every execution to finish")
            expected = {arn: workload.expected_spans(arn) for arn in workload.executions}
            wanted = {f"{span.span_id:016x}" for spans in expected.values() for span in spans}
            wait_until(
                lambda: wanted <= {s.span_id for s in otlp.receiver.snapshot()},
                60,
                "every span at the receiver",
            )
            # every span arrived; a resent one is the same span (same id, same content)
            by_id = defaultdict(set)
            for span in otlp.receiver.snapshot():
                by_id[span.span_id].add(
                    (span.parent_span_id, span.name, span.start_ns, span.end_ns, span.status_code)
                )
            assert all(len(versions) == 1 for versions in by_id.values())

            time.sleep(1.0)  # the last counters are applied right after the last export
            after_restart = counters(second.samples())
        finally:
            second.signal(signal.SIGTERM)
            assert second.wait(30) == 0
        assert "resumed after event" in second.log(), "no execution was resumed mid-flight"

        # What the histories hold, counted by a fresh exporter over the final histories.
        truth: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        for arn in workload.executions:
            from exporter.history.assembler import SpanAssembler
            from exporter.history.catalogue import BY_NAME
            from exporter.model import ExecutionIdentity

            for observation in (
                SpanAssembler(ExecutionIdentity.from_arn(arn)).feed(workload.history(arn)).observations
            ):
                if observation.metric in COUNTERS:
                    labels = tuple(
                        sorted(
                            [
                                *TARGET.items(),
                                *zip(BY_NAME[observation.metric].labels, observation.labels, strict=True),
                            ]
                        )
                    )
                    truth[(observation.metric, labels)] += observation.value
        for key in set(before_kill) | set(after_restart):
            counted = before_kill.get(key, 0.0) + after_restart.get(key, 0.0)
            assert counted <= truth.get(key, 0.0), f"{key}: counted {counted}, true {truth.get(key, 0.0)}"
        # and the second process did count what came after the kill
        started_after = sum(
            v for (name, _), v in after_restart.items() if name == "sfn_executions_started_total"
        )
        assert started_after >= 6


def test_sigterm_flushes_spans_and_checkpoint_then_exits_zero(tmp_path: Path) -> None:
    with MotoServer() as moto, GrpcOtlpServer() as otlp:
        workload = Workload(moto.endpoint)
        workload.deploy(["always-fails", "parallel-fanout"])
        for _ in range(3):
            workload.start("always-fails")
            workload.start("parallel-fanout")
        wait_until(workload.all_finished, 30, "the executions to finish")
        config = fast_config(tmp_path, otlp={"batch_linger_seconds": 1.0})  # spans wait in the batch
        exporter = ExporterProcess(tmp_path, config, moto.endpoint, otlp.endpoint).start()
        wanted = {f"{s.span_id:016x}" for arn in workload.executions for s in workload.expected_spans(arn)}
        wait_until(lambda: "sfn_exporter_checkpoint_writes_total" in exporter.get("/metrics")[1] and
                   exporter.samples().get(("sfn_exporter_api_calls_total", tuple(sorted({**TARGET, "operation": "GetExecutionHistory", "outcome": "success"}.items()))), 0) >= 6,
                   30, "the histories to be read")  # fmt: skip
        exporter.signal(signal.SIGTERM)
        assert exporter.wait(30) == 0
        assert "did not finish within" not in exporter.log()  # nothing cut off by the grace period
        assert wanted <= {s.span_id for s in otlp.receiver.snapshot()}
        from exporter.checkpoint import CursorStore

        store = CursorStore(config["checkpoint"]["path"])
        cursors = store.load()
        store.close()
        assert all(cursors[arn].finished for arn in workload.executions)
