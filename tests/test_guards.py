"""Tests written against plausible mistakes that no other test noticed (hand-made mutants): each
fails if the guarded line is broken in the way its name says."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import HistoryPage, InvalidToken, Malformed
from exporter.aws.tail import read_new_events, read_whole_history
from exporter.emit.health import HealthMetrics
from exporter.emit.otlp import ExecutionSpans
from exporter.emit.sinks import ExportFailed, SpanSink
from exporter.history.assembler import SpanAssembler
from exporter.history.redact import REDACTED, make_redactor
from exporter.model import ExecutionIdentity, SpanKind, SpanRecord, Status
from exporter.schedule.scheduler import PollScheduler
from simulator.builder import History
from tests.test_units import FakeClock

ARN = "arn:aws:states:eu-west-1:123456789012:execution:Orders:run-1"
IDENTITY = ExecutionIdentity.from_arn(ARN)


# ---------------------------------------------------------------- the OTLP sink


class Answering(SpanExporter):
    """An OTLP exporter whose answers the test chooses: a result, or an exception."""

    def __init__(self, *answers: SpanExportResult | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else SpanExportResult.SUCCESS
        if isinstance(answer, Exception):
            raise answer
        return answer

    def shutdown(self) -> None:
        pass


def readable(n: int) -> ExecutionSpans:
    records = [
        SpanRecord(1, i + 1, None, f"s{i}", SpanKind.STATE, 1, 2, Status.OK, None, None, {}, (), ())
        for i in range(n)
    ]
    return ExecutionSpans.of(records, IDENTITY)


@pytest.mark.parametrize(
    "answer", [SpanExportResult.FAILURE, RuntimeError("collector gone")], ids=["failure", "raises"]
)
@pytest.mark.timeout(5)  # a sink that hangs (a mutant) fails fast
async def test_an_export_that_fails_without_raising_is_a_failure(
    answer: SpanExportResult | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    health = HealthMetrics(registry)
    sink = SpanSink(Answering(answer), health, max_spans=10, linger_s=0)
    sink.start()
    caplog.set_level(logging.ERROR)
    with pytest.raises(ExportFailed) as caught:
        await sink.export(readable(3))
    if isinstance(answer, Exception):  # the exporter's own error, logged with its traceback
        assert str(caught.value) == "collector gone"
        assert [(r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [("OTLP export raised", True)]
    else:
        assert str(caught.value) == "OTLP export of 3 spans failed"
    assert registry.get_sample_value("sfn_exporter_spans_failed_total") == 3
    assert registry.get_sample_value("sfn_exporter_spans_exported_total") == 0
    await sink.export(readable(2))  # the next request goes through
    assert registry.get_sample_value("sfn_exporter_spans_exported_total") == 2
    await sink.close(5)


class Sizes(Answering):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sizes.append(len(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True


@pytest.mark.timeout(5)  # a sink that hangs (a mutant) fails fast
async def test_spans_are_batched_up_to_the_maximum_and_lingered_for() -> None:
    registry = CollectorRegistry()
    exporter = Sizes()
    sink = SpanSink(exporter, HealthMetrics(registry), max_spans=3, linger_s=0.05)
    sink.start()
    await sink.export(readable(7))
    assert exporter.sizes == [3, 3, 1]  # one request at most max_spans
    await asyncio.gather(sink.export(readable(1)), sink.export(readable(1)))
    assert exporter.sizes[3:] == [2]  # two polls within the linger share a request
    assert registry.get_sample_value("sfn_exporter_spans_exported_total") == 9
    await sink.export(readable(0))  # nothing to send: no request
    assert len(exporter.sizes) == 4
    await sink.close(5)
    assert exporter.shut
    with pytest.raises(ExportFailed, match="shutting down"):
        await sink.export(readable(1))


@pytest.mark.timeout(5)  # a sink that hangs (a mutant) fails fast
@pytest.mark.parametrize("takes_records", [True, False])
async def test_an_exporter_that_takes_records_is_given_records_and_any_other_the_sdks_spans(
    takes_records: bool,
) -> None:
    given: list[Sequence[object]] = []

    class Taking(Answering):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            given.append(spans)
            return SpanExportResult.SUCCESS

    exporter = Taking()
    exporter.takes_records = takes_records  # type: ignore[attr-defined]
    sink = SpanSink(exporter, HealthMetrics(CollectorRegistry()), max_spans=10, linger_s=0)
    sink.start()
    batch = readable(3)
    await sink.export(batch)
    await sink.close(5)
    if takes_records:  # the records themselves, no ReadableSpan made
        assert given == [[batch]]
    else:
        assert [[(type(s), s.name, s.context.span_id) for s in spans] for spans in given] == [  # type: ignore[attr-defined]
            [(ReadableSpan, f"s{i}", i + 1) for i in range(3)]
        ]


@pytest.mark.timeout(5)  # a sink that hangs (a mutant) fails fast
async def test_a_sink_without_an_exporter_takes_spans_and_sends_nothing() -> None:
    sink = SpanSink(None, HealthMetrics(CollectorRegistry()))
    sink.start()
    await sink.export(readable(2))
    await sink.close(1)


# ---------------------------------------------------------------- redaction


def test_deep_redaction_reaches_values_inside_arrays() -> None:
    redact = make_redactor(["$..card"])
    assert redact is not None
    text = json.dumps({"items": [{"card": "4111"}, {"nested": [[{"card": "5500"}]]}], "card": "3400"})
    out = json.loads(redact(text))
    assert out == {"items": [{"card": REDACTED}, {"nested": [[{"card": REDACTED}]]}], "card": REDACTED}


def test_an_index_past_the_end_of_a_list_redacts_nothing_and_does_not_raise() -> None:
    redact = make_redactor(["$.items[2]", "$.items[1].card"])
    assert redact is not None
    assert json.loads(redact('{"items": [{"card": 1}, {"card": 2}]}')) == {
        "items": [{"card": 1}, {"card": REDACTED}]
    }


# ---------------------------------------------------------------- timed-out attempts


@pytest.mark.parametrize(
    ("kind", "scheduled", "started", "timed_out", "details"),
    [
        ("task", "TaskScheduled", "TaskStarted", "TaskTimedOut", {"resource": "invoke", "resourceType": "lambda"}),
        ("lambda", "LambdaFunctionScheduled", "LambdaFunctionStarted", "LambdaFunctionTimedOut",
         {"resource": "arn:aws:lambda:eu-west-1:1:function:f"}),
        ("activity", "ActivityScheduled", "ActivityStarted", "ActivityTimedOut",
         {"resource": "arn:aws:states:eu-west-1:1:activity:a"}),
    ],
)  # fmt: skip
def test_a_timed_out_attempt_is_timed_out_not_failed(
    kind: str, scheduled: str, started: str, timed_out: str, details: dict[str, str]
) -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge", input="{}")
    attempt_id = h.add(scheduled, **details)
    h.add(started, **details)
    h.add(timed_out, **details)
    h.add("TaskStateExited", name="Charge", output="{}")
    h.add("ExecutionSucceeded", output="{}")
    assembler = SpanAssembler(IDENTITY)
    out = assembler.feed(h.events)
    attempts = [s for s in out.spans if s.opening_event_id == attempt_id]
    assert len(attempts) == 1
    attempt = attempts[0]
    assert attempt.kind in (SpanKind.TASK, SpanKind.LAMBDA, SpanKind.ACTIVITY)
    assert attempt.status == Status.ERROR and attempt.error == "States.Timeout"
    outcomes = [o.labels[-1] for o in out.observations if o.metric == "sfn_task_attempts_total"]
    assert outcomes == ["timed_out"]


# ---------------------------------------------------------------- the scheduler


def test_a_parked_execution_that_finishes_no_longer_counts_as_waiting() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 1000, clock, budget=lambda: 1.0)
    for key in ("a", "b", "c", "d"):
        scheduler.add(key)
    scheduler.pop_due()
    for key in ("a", "b", "c"):
        scheduler.done(key, found_events=True, not_before=clock.now + 300)  # parked in a Wait
    scheduler.done("d", found_events=False)
    assert scheduler.idle_cap() == 1.0  # only d is active: polled every second
    scheduler.remove("a")  # it finished while parked
    scheduler.remove("b")
    assert scheduler.idle_cap() == 1.0  # still one active (c parked, d idle), not fewer than none
    scheduler.add("e")
    assert scheduler.idle_cap() == 2.0  # d and e share the budget


def test_a_success_resets_the_failure_streak() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 64, clock, jitter=lambda: 1.0)
    scheduler.add("a")
    for _ in range(4):
        scheduler.pop_due()
        scheduler.done("a", found_events=False, failed=True)
        clock.now = scheduler.next_due()  # type: ignore[assignment]
    scheduler.pop_due()
    scheduler.done("a", found_events=True)
    clock.now = scheduler.next_due()  # type: ignore[assignment]
    scheduler.pop_due()
    scheduler.done("a", found_events=False, failed=True)
    assert scheduler.next_due() == clock.now + 2.0  # the first failure's back-off again, not the fifth


# ---------------------------------------------------------------- the rate limiter


def test_a_throttled_operation_does_not_spend_its_remaining_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"Op": (10, 2)}, clock=clock, sleep=clock.sleep)

    async def take(n: int) -> None:
        for _ in range(n):
            await limiter.acquire("Op")

    asyncio.run(take(3))
    assert clock.slept == []  # 7 of the burst left
    limiter.throttled("Op")
    asyncio.run(take(1))
    assert sum(clock.slept) > 0  # AWS said slow down: the next call waits for a token


# ---------------------------------------------------------------- the tail


class Pages:
    """A history served in AWS's reverse paging, with chosen faults."""

    def __init__(self, count: int, expire_after_pages: int = 0) -> None:
        self.events = [
            {"id": n, "type": "PassStateEntered", "timestamp": float(n)} for n in range(1, count + 1)
        ]
        self.expire_after_pages = expire_after_pages
        self.pages = 0
        self.requests: list[tuple[bool, int, str | None, bool]] = []
        self.expire_always = False

    async def history_page(self, arn: str, *, reverse: bool, max_results: int, next_token: str | None,
                           include_data: bool) -> HistoryPage:  # fmt: skip
        self.pages += 1
        self.requests.append((reverse, max_results, next_token, include_data))
        if next_token and self.expire_always:
            raise InvalidToken("GetExecutionHistory", "InvalidToken", "expired")
        if next_token and self.expire_after_pages and self.pages > self.expire_after_pages:
            self.expire_after_pages = 0
            raise InvalidToken("GetExecutionHistory", "InvalidToken", "expired")
        ordered = list(reversed(self.events)) if reverse else self.events
        start = int(next_token or 0)
        page = ordered[start : start + max_results]
        more = start + max_results < len(ordered)
        return HistoryPage(page, str(start + max_results) if more else None)


async def test_an_expired_token_mid_read_does_not_read_events_twice(caplog: pytest.LogCaptureFixture) -> None:
    pages = Pages(35, expire_after_pages=1)
    caplog.set_level(logging.INFO, logger="exporter.aws.tail")
    events = await read_new_events(pages, ARN, after=3, page_size=10, include_data=False)  # type: ignore[arg-type]
    assert [e["id"] for e in events] == list(range(4, 36))
    assert pages.pages == 4 and pages.expire_after_pages == 0  # 35..26, expired; 35..26, 25..1
    told = [(r.getMessage(), getattr(r, "execution_arn", None)) for r in caplog.records]
    assert told == [("history token expired; reading again", ARN)]


async def test_a_read_that_stops_short_of_its_cursor_or_has_a_hole_is_an_error() -> None:
    short = Pages(30)
    short.events = short.events[10:]  # the oldest ten never come
    with pytest.raises(Malformed, match="without reaching event 5"):
        await read_new_events(short, ARN, after=5, page_size=10, include_data=False)  # type: ignore[arg-type]
    holed = Pages(30)
    del holed.events[19]  # event 20
    with pytest.raises(Malformed, match="event 20 is missing"):
        await read_new_events(holed, ARN, after=5, page_size=10, include_data=False)  # type: ignore[arg-type]
    with pytest.raises(Malformed, match="event 20 is missing"):
        await read_whole_history(holed, ARN, include_data=False)  # type: ignore[arg-type]
    assert [e["id"] for e in await read_new_events(Pages(30), ARN, 0, 10, False)] == list(range(1, 31))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("last_new", "peak", "page_size", "first"),
    [
        (0, 10.0, 100, 10),  # nothing known: a few
        (5, 10.0, 100, 10),  # the most a recent poll found
        (5, 7.2, 100, 8),
        (3, 200.0, 1000, 16),  # a burst long past: twice the last, and a few
        (100, 150.0, 100, 100),  # within the page size
        (0, 0.0, 100, 1),
    ],
)
def test_the_first_page_has_room_for_the_most_a_recent_poll_found(
    last_new: int, peak: float, page_size: int, first: int
) -> None:
    from exporter.aws.tail import first_page_size

    assert first_page_size(last_new, peak, page_size) == first


def test_the_most_a_poll_found_fades_slowly() -> None:
    from exporter.aws.tail import next_peak

    peak = next_peak(0.0, 40)
    assert peak == 40
    assert next_peak(peak, 50) == 50  # a bigger burst at once
    for _ in range(139):
        peak = next_peak(peak, 3)
    assert 19.9 < peak < 20.1  # half forgotten after about 140 polls


async def test_a_read_asks_for_what_it_needs() -> None:
    pages = Pages(35)
    await read_new_events(pages, ARN, after=3, page_size=10, include_data=True)  # type: ignore[arg-type]
    assert pages.requests == [(True, 10, None, True), (True, 1000, "10", True)]
    fresh = Pages(5)
    await read_new_events(fresh, ARN, after=0, page_size=10, include_data=False)  # type: ignore[arg-type]
    assert fresh.requests == [(True, 1000, None, False)]  # a first read takes the largest page
    whole = Pages(2500)
    assert len(await read_whole_history(whole, ARN, include_data=True)) == 2500  # type: ignore[arg-type]
    assert whole.requests == [
        (False, 1000, None, True),
        (False, 1000, "1000", True),
        (False, 1000, "2000", True),
    ]


async def test_a_page_that_ends_at_the_cursors_next_event_is_enough() -> None:
    # ids are consecutive: a page of exactly the new events needs no second call to see the cursor
    exact = Pages(35)
    events = await read_new_events(exact, ARN, after=25, page_size=10, include_data=False)  # type: ignore[arg-type]
    assert [e["id"] for e in events] == list(range(26, 36))
    assert exact.requests == [(True, 10, None, False)]
    over = Pages(36)
    assert len(await read_new_events(over, ARN, after=25, page_size=10, include_data=False)) == 11  # type: ignore[arg-type]
    assert len(over.requests) == 2  # one more than the page: read on


async def test_expired_tokens_are_retried_three_times_then_raise() -> None:
    for read in (
        lambda p: read_new_events(p, ARN, after=3, page_size=10, include_data=False),
        lambda p: read_whole_history(p, ARN, include_data=False),
    ):
        pages = Pages(2500)
        pages.expire_always = True
        with pytest.raises(InvalidToken):
            await read(pages)
        assert [token for _, _, token, _ in pages.requests].count(None) == 3


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda events: events.__delitem__(19), "IncompleteHistory", "event 20 is missing (event 19 came next)"),
        (lambda events: events.__delitem__(slice(0, 10)), "IncompleteHistory",
         "the answer ended at event 11 without reaching event 5"),
        (lambda events: events[28].pop("id"), "InvalidEvent",
         "event 29 (position 1 of the answer, PassStateEntered) has no positive integer id"),
        (lambda events: events[29].update(id=0), "InvalidEvent",
         "the event (position 0 of the answer, PassStateEntered) has no positive integer id"),
        (lambda events: events[28].update(id=True), "InvalidEvent",
         "event 29 (position 1 of the answer, PassStateEntered) has no positive integer id"),
        (lambda events: events.__setitem__(29, "garbage"), "InvalidEvent",
         "the event (position 0 of the answer, str) has no positive integer id"),
    ],
    ids=["hole", "short", "no-id", "id-zero", "id-bool", "not-an-object"],
)  # fmt: skip
async def test_what_is_wrong_with_a_history_answer_is_named(make: Any, code: str, message: str) -> None:
    pages = Pages(30)
    make(pages.events)
    with pytest.raises(Malformed) as caught:
        await read_new_events(pages, ARN, after=5, page_size=10, include_data=False)  # type: ignore[arg-type]
    assert (caught.value.operation, caught.value.code) == ("GetExecutionHistory", code)
    assert str(caught.value) == f"GetExecutionHistory: {code}: {ARN}: {message}"


async def test_an_empty_first_answer_is_complete_only_for_a_new_execution() -> None:
    assert await read_new_events(Pages(0), ARN, after=0, page_size=10, include_data=False) == []  # type: ignore[arg-type]
    with pytest.raises(Malformed, match="the answer ended at event None without reaching event 4"):
        await read_new_events(Pages(0), ARN, after=4, page_size=10, include_data=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the assembler


def test_a_single_missing_event_id_is_an_anomaly() -> None:
    h = History()
    h.start()
    h.state("Pass", "P")
    h.state("Pass", "Q")
    h.add("ExecutionSucceeded")
    for event in h.events[3:]:  # no event lost, but id 4 never appears: 1, 2, 3, 5, 6, 7
        event["id"] += 1
        event["previousEventId"] += 1
    out = SpanAssembler(IDENTITY).feed(h.events)
    anomalies = [o.labels for o in out.observations if o.metric == "sfn_history_anomalies_total"]
    assert anomalies == [("Orders", "missing_event_ids")]


# ---------------------------------------------------------------- Prometheus conventions


def test_a_forgotten_state_machine_leaves_no_series_and_counters_have_no_created_twin() -> None:
    from prometheus_client import generate_latest

    from exporter.emit.metrics import WorkflowMetrics

    registry = CollectorRegistry()
    HealthMetrics(registry)
    metrics = WorkflowMetrics(registry)
    for name in ("Orders", "Refunds"):
        h = History()
        h.start()
        h.state("Pass", "P")
        h.add("ExecutionSucceeded")
        metrics.apply(
            SpanAssembler(ExecutionIdentity.from_arn(ARN.replace("Orders", name))).feed(h.events).observations
        )
        metrics.set_running(name, 0)
    metrics.forget("Orders")
    text = generate_latest(registry).decode()
    assert 'state_machine="Refunds"' in text and 'state_machine="Orders"' not in text
    assert "_created" not in text
    assert "process_cpu_seconds_total" in text and "python_info" in text
    assert 'python_gc_collections_total{generation="0"}' in text
    assert 'revision="' in text and 'python_version="' in text


def test_every_event_type_is_routed_to_its_handler() -> None:
    """The routing table, asked afresh (it is remembered per type once worked out)."""
    from exporter.history.assembler import _route

    expected = {
        "ExecutionSucceeded": ("_execution_ended", ()),
        "TaskStateEntered": ("_state_entered", ("Task",)),
        "MapStateExited": ("_state_exited", ("Map",)),
        "ParallelStateAborted": ("_state_aborted", ("Parallel",)),
        "TaskScheduled": ("_attempt_started", (SpanKind.TASK,)),
        "LambdaFunctionStarted": ("_attempt_progress", (SpanKind.LAMBDA,)),
        "ActivityTimedOut": ("_attempt_closed", (SpanKind.ACTIVITY, "timed_out")),
        "TaskSubmitFailed": ("_attempt_closed", (SpanKind.TASK, "failed")),
        "TaskStateTimedOut": ("_known_event", ()),
        "QuantumEntangled": ("_unknown_event", ()),
    }
    for event_type, (handler, args) in expected.items():
        method, bound = _route(event_type)
        assert (method.__name__, bound) == (handler, args), event_type


async def test_describe_execution_asks_for_metadata_only() -> None:
    """The execution's input and output never leave AWS for the exporter."""
    from exporter.aws.ratelimit import RateLimiter
    from exporter.aws.source import AwsStepFunctions

    class Recording:
        def __init__(self) -> None:
            self.calls: list[dict[str, object]] = []

        async def describe_execution(self, **params: object) -> dict[str, object]:
            self.calls.append(params)
            return {"executionArn": ARN, "stateMachineArn": "x", "status": "RUNNING", "startDate": 0}

    client = Recording()
    api = AwsStepFunctions(
        client,
        RateLimiter({"DescribeExecution": (10, 10)}),
        HealthMetrics(CollectorRegistry()).target("1", "r"),
    )
    await api.describe_execution(ARN)
    assert client.calls == [{"executionArn": ARN, "includedData": "METADATA_ONLY"}]


# ---------------------------------------------------------------- the checkpoint


def test_tombstones_are_kept_for_the_retention_period_then_forgotten(tmp_path: Any) -> None:
    from exporter.checkpoint import CheckpointError, Cursor, CursorStore

    clock = FakeClock(1000.0)
    store = CursorStore(str(tmp_path / "c.sqlite"), clock=clock)
    store.save_now("running", 7, False, 1)
    store.save_now("gone", 4, False)
    store.save_now("done", 9, True)
    store.bury("gone")
    clock.now += 10
    assert store.prune(5) == 2  # the tombstone and the finished one, not the running one
    assert store.load() == {"running": Cursor(7, False, 1)}
    store.save_now("again", 3, False)
    store.bury("again")
    store.save_now("again", 5, False)  # listed again and read on: no longer a tombstone
    clock.now += 10
    assert store.prune(5) == 0 and store.get("again") == Cursor(5, False, 0)
    store.set_watermark("machine", 12.5)
    assert store.watermark("machine") == 12.5 and store.watermark("other") is None
    store.delete("again")
    assert store.get("again") is None
    store.close()
    with pytest.raises(
        CheckpointError, match=r"^checkpoint '.*c\.sqlite': Cannot operate on a closed database"
    ):
        store.save_now("late", 1, False)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\x00garbage" * 600), "file is not a database"),
        (lambda p: sqlite3.connect(p).executescript("CREATE TABLE orders (id INTEGER, total REAL);").close(),
         "not a checkpoint of this exporter (tables: orders(id, total))"),
        (lambda p: sqlite3.connect(p).executescript("CREATE TABLE t (a); PRAGMA user_version = 7;").close(),
         "written by a newer version of this exporter (schema 7, this one reads 3)"),
        (lambda p: sqlite3.connect(p).executescript(
            "CREATE TABLE executions (arn TEXT PRIMARY KEY, cursor INTEGER NOT NULL, finished INTEGER NOT NULL,"
            " redrives INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL);").close(), None),
    ],
    ids=["directory", "garbage", "foreign", "newer", "version-1-without-watermarks"],
)  # fmt: skip
def test_a_checkpoint_is_refused_with_exactly_what_is_wrong(
    tmp_path: Any, make: Any, reason: str | None
) -> None:
    from exporter.checkpoint import CheckpointError, CursorStore

    path = tmp_path / "checkpoint.sqlite"
    make(path)
    if reason is None:  # a version-1 file lacking a table is not ours either
        reason = "not a checkpoint of this exporter (tables: executions(arn, cursor, finished, redrives, updated_at))"
    with pytest.raises(CheckpointError) as caught:
        CursorStore(str(path))
    assert str(caught.value) == f"checkpoint.path '{path}': cannot be used: {reason}"


def test_a_new_checkpoint_is_version_3_in_wal_mode_and_records_when_it_was_opened(tmp_path: Any) -> None:
    from exporter.checkpoint import CursorStore

    path = tmp_path / "checkpoint.sqlite"
    CursorStore(str(path), clock=lambda: 1234.5).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key = 'opened_at'").fetchone()[0] == "1234.5"
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"executions", "watermarks", "meta"}
    db.close()


@pytest.mark.timeout(5)  # a sink that hangs (a mutant) fails fast
async def test_closing_a_sink_whose_backend_hangs_gives_up_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    release = threading.Event()

    class Hanging(Answering):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait(5)
            return SpanExportResult.SUCCESS

    sink = SpanSink(Hanging(), HealthMetrics(CollectorRegistry()), max_spans=10, linger_s=0)
    sink.start()
    waiting = asyncio.ensure_future(sink.export(readable(2)))
    await asyncio.sleep(0.05)
    caplog.set_level(logging.WARNING)
    await sink.close(0.2)
    assert not release.is_set()  # close came back while the backend still hung
    release.set()
    assert [r.getMessage() for r in caplog.records] == [
        "spans still queued after 0s of shutdown were not sent"
    ]
    waiting.cancel()


@pytest.mark.timeout(5)  # a sink that hangs (a mutant) fails fast
async def test_closing_a_sink_whose_exporter_will_not_shut_down_gives_up_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading
    import time

    release = threading.Event()
    seen: dict[str, object] = {}

    class Stuck(Answering):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            seen["export thread"] = threading.current_thread().name
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            thread = threading.current_thread()
            seen["shutdown thread"], seen["daemon"] = thread.name, thread.daemon
            release.wait(5)

    sink = SpanSink(Stuck(), HealthMetrics(CollectorRegistry()), max_spans=10, linger_s=0)
    sink.start()
    await sink.export(readable(1))
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    await sink.close(1)
    assert time.monotonic() - started < 3  # not the 5 s the exporter's shutdown hangs for
    release.set()
    assert [r.getMessage() for r in caplog.records] == [
        "the OTLP exporter did not shut down within 1s; exiting without it"
    ]
    # exports run in the sink's one worker thread; the shutdown in a daemon thread of its own,
    # so that a hung one cannot hold the process's exit
    assert str(seen["export thread"]).startswith("otlp-export")
    assert seen["shutdown thread"] == "otlp-shutdown" and seen["daemon"] is True


@pytest.mark.timeout(5)  # a sink that hangs (a mutant) fails fast
async def test_a_sink_whose_exporter_shuts_down_at_once_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = Sizes()
    sink = SpanSink(exporter, HealthMetrics(CollectorRegistry()), max_spans=10, linger_s=0)
    sink.start()
    await sink.export(readable(2))
    caplog.set_level(logging.WARNING)
    await sink.close(5)
    assert exporter.shut and caplog.text == ""


async def test_an_async_checkpoint_write_is_on_disk_when_it_returns(tmp_path: Any) -> None:
    from exporter.checkpoint import Cursor, CursorStore

    store = CursorStore(str(tmp_path / "c.sqlite"))
    await store.save("arn:aws:states:us-east-1:1:execution:m:a", 7, True, 2)
    store.close()
    again = CursorStore(str(tmp_path / "c.sqlite"))
    assert again.get("arn:aws:states:us-east-1:1:execution:m:a") == Cursor(7, True, 2)
    assert again.load() == {"arn:aws:states:us-east-1:1:execution:m:a": Cursor(7, True, 2)}
    again.close()


def test_checkpoint_paths_that_cannot_be_used_are_named_with_the_reason(tmp_path: Any) -> None:
    from exporter.checkpoint import CheckpointError, CursorStore

    with pytest.raises(CheckpointError) as empty:
        CursorStore("")
    assert str(empty.value) == "checkpoint.path: must not be empty"
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    under_a_file = blocker / "cp.sqlite"
    with pytest.raises(CheckpointError) as caught:
        CursorStore(str(under_a_file))
    assert (
        str(caught.value) == f"checkpoint.path '{under_a_file}': cannot be used: File exists"
    )  # its strerror
    nested = tmp_path / "a" / "b" / "c" / "cp.sqlite"  # missing directories are made
    store = CursorStore(str(nested))
    assert store._execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # a file: write-ahead log
    store.close()


def test_a_foreign_database_with_many_tables_is_named_in_200_characters(tmp_path: Any) -> None:
    from exporter.checkpoint import CheckpointError, CursorStore

    path = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(path)
    for n in range(12):
        db.execute(f"CREATE TABLE table_number_{n:02d} (first_column, second_column)")
    db.commit()
    db.close()
    with pytest.raises(CheckpointError) as caught:
        CursorStore(str(path))
    listed = ", ".join(f"table_number_{n:02d}(first_column, second_column)" for n in range(12))
    assert str(caught.value) == (
        f"checkpoint.path '{path}': cannot be used: not a checkpoint of this exporter (tables: {listed[:200]})"
    )
