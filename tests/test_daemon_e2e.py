"""The exporter end to end with real components: moto's Step Functions (AWS paging in front),
a gRPC OTLP receiver, a Prometheus server scraping /metrics, the exporter as a process."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from exporter.demo.samples import SAMPLES
from tests.harness import ExporterProcess, Workload, fast_config, wait_until
from tests.moto_server import MotoServer
from tests.otlp_receiver import GrpcOtlpServer, ReceivedSpan
from tests.prometheus import PrometheusServer

TERMINAL = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED",
            "ExecutionTimedOut": "TIMED_OUT", "ExecutionAborted": "ABORTED"}  # fmt: skip


def span_key(span: ReceivedSpan) -> tuple[object, ...]:
    return (span.span_id, span.parent_span_id, span.name, span.start_ns, span.end_ns, span.status_code)


def expected_key(record: object) -> tuple[object, ...]:
    from exporter.model import SpanRecord, Status

    assert isinstance(record, SpanRecord)
    code = {Status.UNSET: 0, Status.OK: 1, Status.ERROR: 2}[record.status]
    parent = None if record.parent_span_id is None else f"{record.parent_span_id:016x}"
    return (f"{record.span_id:016x}", parent, record.name, record.start_ns, record.end_ns, code)


def test_executions_become_traces_and_metrics(tmp_path: Path) -> None:
    names = [sample.name for sample in SAMPLES]
    assert len(names) >= 5
    with MotoServer() as moto, GrpcOtlpServer() as otlp:
        workload = Workload(moto.endpoint)
        workload.deploy()
        for name in (
            "long-wait",
            "long-wait",
            "map-concurrency",
            "parallel-fanout",
            "always-fails",
            "retry-then-catch",
        ):
            workload.start(name)  # some still running when the exporter starts, some already done
        exporter = ExporterProcess(tmp_path, fast_config(tmp_path), moto.endpoint, otlp.endpoint).start()
        try:
            with PrometheusServer(tmp_path / "prometheus", [exporter.listen]) as prometheus:
                for index in range(16):
                    workload.start(names[index % len(names)])
                    time.sleep(0.2)
                assert len(workload.executions) >= 20
                wait_until(workload.all_finished, 90, "every execution to finish")
                histories = {arn: workload.history(arn) for arn in workload.executions}
                expected = {arn: workload.expected_spans(arn) for arn in workload.executions}
                wanted = {f"{span.span_id:016x}" for spans in expected.values() for span in spans}

                def all_received() -> bool:
                    return wanted <= {span.span_id for span in otlp.receiver.snapshot()}

                wait_until(all_received, 60, "every span at the OTLP receiver")
                received = otlp.receiver.snapshot()
                # Every span exactly as translate gives it from the final history: ids, parents, times, status.
                for arn, spans in expected.items():
                    trace = f"{spans[0].trace_id:032x}"
                    got = {span_key(s) for s in received if s.trace_id == trace}
                    assert got == {expected_key(s) for s in spans}, arn
                assert len(received) == len(wanted), "a span was sent twice without a restart"
                root = next(s for s in received if s.parent_span_id is None)
                assert root.resource["service.name"] == "step-functions"
                assert root.resource["cloud.region"] == "us-east-1"

                # The counters in Prometheus equal the events in the histories.
                exported_at = time.time()
                wait_until(
                    lambda: prometheus.scraped_after(exported_at + 0.2), 30, "a scrape after the export"
                )
                events = [
                    (arn.split(":")[6], event) for arn, history in histories.items() for event in history
                ]
                started = Counter(machine for machine, e in events if e["type"] == "ExecutionStarted")
                finished = Counter(
                    (machine, TERMINAL[e["type"]]) for machine, e in events if e["type"] in TERMINAL
                )
                entered = Counter(
                    (machine, e["stateEnteredEventDetails"]["name"], e["type"].removesuffix("StateEntered"))
                    for machine, e in events
                    if e["type"].endswith("StateEntered")
                )
                assert prometheus.vector("sfn_executions_started_total", "state_machine") == {
                    (k,): v for k, v in started.items()
                }
                assert prometheus.vector("sfn_executions_finished_total", "state_machine", "status") == dict(
                    finished
                )
                assert prometheus.vector(
                    "sfn_states_entered_total", "state_machine", "state", "state_type"
                ) == dict(entered)
                assert prometheus.vector("sfn_exporter_tracked_executions") == {(): 0.0}
                assert prometheus.vector('sum(sfn_exporter_api_calls_total{outcome="success"})')[()] > 0
                status, _ = exporter.get("/readyz")
                assert status == 200
        finally:
            exporter.signal(signal.SIGTERM)
            code = exporter.wait(30)
        assert code == 0, exporter.log()[-3000:]
        assert '"message": "stopped"' in exporter.log()
