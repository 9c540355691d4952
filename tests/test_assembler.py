"""The assembler on hand-written histories: one behaviour per test."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.history.assembler import _CLOSED_TIPS_KEPT, _TIPS_KEPT, AssemblerOptions, SpanAssembler
from exporter.history.ids import span_id_for, trace_id_for
from exporter.model import ExecutionIdentity, HistoryError, Observation, SpanKind, SpanRecord, Status
from simulator.builder import BASE_TIME_S, History
from tests.treecheck import assert_well_formed

ARN = "arn:aws:states:eu-west-1:123456789012:execution:Orders:run-1"
IDENTITY = ExecutionIdentity.from_arn(ARN)


def assemble(
    history: History, identity: ExecutionIdentity = IDENTITY, **options: object
) -> tuple[list[SpanRecord], list[Observation]]:
    assembler = SpanAssembler(identity, AssemblerOptions(**options))  # type: ignore[arg-type]
    out = assembler.feed(history.events)
    spans = out.spans + assembler.open_spans()
    assert_well_formed(spans)
    return spans, out.observations


def by_name(spans: list[SpanRecord], name: str) -> list[SpanRecord]:
    return [s for s in spans if s.name == name]


def one(spans: list[SpanRecord], name: str) -> SpanRecord:
    found = by_name(spans, name)
    assert len(found) == 1, f"{name}: {len(found)} spans"
    return found[0]


def counts(observations: list[Observation], metric: str) -> Counter[tuple[str, ...]]:
    total: Counter[tuple[str, ...]] = Counter()
    for o in observations:
        if o.metric == metric:
            total[o.labels] += int(o.value)
    return total


def ns(seconds_after_base: float) -> int:
    return round((BASE_TIME_S + seconds_after_base) * 1e9)


def test_identity_from_arn() -> None:
    assert IDENTITY.state_machine_arn == "arn:aws:states:eu-west-1:123456789012:stateMachine:Orders"
    assert (IDENTITY.region, IDENTITY.account, IDENTITY.execution_name) == (
        "eu-west-1",
        "123456789012",
        "run-1",
    )
    with pytest.raises(ValueError, match="execution ARN 'nope': expected arn:PARTITION:states"):
        ExecutionIdentity.from_arn("nope")


def test_task_state_with_one_attempt() -> None:
    h = History()
    h.start()
    h.state("Pass", "Prepare")
    entered = h.add("TaskStateEntered", name="Charge", input="{}")
    scheduled = h.add(
        "TaskScheduled", resource="invoke", resourceType="lambda", region="eu-west-1", parameters="{}"
    )
    h.add("TaskStarted", resource="invoke", resourceType="lambda")
    h.add("TaskSucceeded", resource="invoke", resourceType="lambda", output="{}")
    h.add("TaskStateExited", name="Charge", output="{}")
    h.add("ExecutionSucceeded", output="{}")
    spans, observations = assemble(h)

    root = one(spans, "Orders")
    assert root.kind == SpanKind.EXECUTION and root.parent_span_id is None
    assert root.trace_id == trace_id_for(ARN)
    assert root.span_id == span_id_for(ARN, 1, "execution")
    assert (root.start_ns, root.end_ns, root.status) == (ns(0), ns(8), Status.UNSET)
    assert root.attributes["aws.step_functions.state_machine.arn"] == IDENTITY.state_machine_arn
    charge = one(spans, "Charge")
    assert (charge.kind, charge.state_type, charge.parent_span_id) == (SpanKind.STATE, "Task", root.span_id)
    assert charge.span_id == span_id_for(ARN, entered)
    attempt = one(spans, "lambda:invoke")
    assert attempt.kind == SpanKind.TASK and attempt.parent_span_id == charge.span_id
    assert attempt.span_id == span_id_for(ARN, scheduled)
    assert [e.name for e in attempt.events] == ["started"]
    assert attempt.attributes["sfn.attempt"] == 1
    assert one(spans, "Prepare").parent_span_id == root.span_id
    assert counts(observations, "sfn_executions_finished_total") == {("Orders", "SUCCEEDED"): 1}
    assert counts(observations, "sfn_states_entered_total") == {
        ("Orders", "Prepare", "Pass"): 1,
        ("Orders", "Charge", "Task"): 1,
    }
    assert counts(observations, "sfn_task_attempts_total") == {("Orders", "Charge", "task", "succeeded"): 1}
    durations = [o.value for o in observations if o.metric == "sfn_execution_duration_seconds"]
    assert durations == [8.0]


def test_retries_are_sibling_attempts_with_their_errors() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    for _ in range(2):
        h.add("LambdaFunctionScheduled", resource="arn:aws:lambda:eu-west-1:1:function:charge")
        h.add("LambdaFunctionStarted")
        h.add("LambdaFunctionFailed", error="Lambda.ServiceException", cause="boom")
    h.add("LambdaFunctionScheduled", resource="arn:aws:lambda:eu-west-1:1:function:charge")
    h.add("LambdaFunctionStarted")
    h.add("LambdaFunctionSucceeded", output="{}")
    h.add("TaskStateExited", name="Charge")
    h.add("ExecutionSucceeded")
    spans, observations = assemble(h)

    charge = one(spans, "Charge")
    attempts = sorted(by_name(spans, "lambda charge"), key=lambda s: s.start_ns)
    assert [a.kind for a in attempts] == [SpanKind.LAMBDA] * 3
    assert {a.parent_span_id for a in attempts} == {charge.span_id}
    assert [a.status for a in attempts] == [Status.ERROR, Status.ERROR, Status.UNSET]
    assert [a.error for a in attempts] == ["Lambda.ServiceException", "Lambda.ServiceException", None]
    assert [a.attributes["sfn.attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0].end_ns is not None and attempts[0].end_ns < attempts[1].start_ns
    assert charge.status == Status.UNSET
    assert counts(observations, "sfn_task_retries_total") == {("Orders", "Charge"): 2}
    assert counts(observations, "sfn_task_failures_total") == {
        ("Orders", "Charge", "lambda", "Lambda.ServiceException"): 2
    }


def test_a_caught_failure_marks_the_state_and_the_execution_goes_on() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    h.add("TaskScheduled", resource="putItem", resourceType="dynamodb")
    h.add(
        "TaskFailed",
        resource="putItem",
        resourceType="dynamodb",
        error="DynamoDB.ConditionalCheckFailedException",
        cause="no",
    )
    h.add("TaskStateExited", name="Charge")
    h.state("Pass", "Refund")
    h.add("ExecutionSucceeded")
    spans, observations = assemble(h)

    charge = one(spans, "Charge")
    assert charge.status == Status.UNSET  # handled: not an error (OpenTelemetry's rule) ...
    assert (charge.error, charge.cause) == ("DynamoDB.ConditionalCheckFailedException", "no")
    assert charge.attributes["sfn.outcome"] == "caught"  # ... but said
    exception = [e for e in charge.events if e.name == "exception"]
    assert [dict(e.attributes) for e in exception] == [
        {"exception.type": "DynamoDB.ConditionalCheckFailedException", "exception.message": "no"}
    ]
    assert one(spans, "Refund").status == Status.UNSET
    assert one(spans, "Orders").status == Status.UNSET
    legacy, _ = assemble(h, legacy_status=True)
    assert (one(legacy, "Charge").status, one(legacy, "Orders").status) == (Status.ERROR, Status.OK)
    assert counts(observations, "sfn_states_finished_total")[("Orders", "Charge", "Task", "caught")] == 1


def test_an_uncaught_failure_closes_open_spans_at_the_failure() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    h.add("TaskScheduled", resource="invoke", resourceType="lambda")
    h.add("TaskFailed", resource="invoke", resourceType="lambda", error="Boom", cause="bad card")
    failed = h.add("ExecutionFailed", error="Boom", cause="bad card")
    spans, observations = assemble(h)

    root, charge = one(spans, "Orders"), one(spans, "Charge")
    assert (root.status, root.error, root.cause) == (Status.ERROR, "Boom", "bad card")
    assert (charge.status, charge.error, charge.end_ns) == (Status.ERROR, "Boom", ns(failed - 1))
    assert charge.attributes["sfn.outcome"] == "failed"
    assert counts(observations, "sfn_executions_finished_total") == {("Orders", "FAILED"): 1}


def test_a_timeout_closes_a_waiting_state_as_timed_out() -> None:
    h = History()
    h.start()
    h.add("WaitStateEntered", name="Sleep")
    h.add("ExecutionTimedOut")
    spans, observations = assemble(h)
    sleep = one(spans, "Sleep")
    assert (sleep.status, sleep.error, sleep.attributes["sfn.outcome"]) == (
        Status.ERROR,
        "States.Timeout",
        "timed_out",
    )
    assert one(spans, "Orders").error == "States.Timeout"
    assert counts(observations, "sfn_executions_finished_total") == {("Orders", "TIMED_OUT"): 1}


def test_an_abort_closes_an_activity_attempt() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Approve")
    h.add("ActivityScheduled", resource="arn:aws:states:eu-west-1:1:activity:approve")
    h.add("ActivityStarted", workerName="worker-7")
    h.add("ExecutionAborted")
    spans, _ = assemble(h)
    attempt = one(spans, "activity approve")
    assert attempt.kind == SpanKind.ACTIVITY
    assert (
        attempt.attributes["aws.step_functions.activity.arn"] == "arn:aws:states:eu-west-1:1:activity:approve"
    )
    assert attempt.events[0].attributes["sfn.activity.worker_name"] == "worker-7"
    assert (attempt.status, attempt.attributes["sfn.outcome"]) == (Status.ERROR, "aborted")


def parallel_history() -> History:
    """Two branches whose events interleave; each branch's chain is its own."""
    h = History()
    h.start()
    h.add("ParallelStateEntered", name="Fan")
    started = h.add("ParallelStateStarted")
    a1 = h.add("TaskStateEntered", prev=started, name="A1")
    b1 = h.add("PassStateEntered", prev=started, name="B1")
    a_sched = h.add("TaskScheduled", prev=a1, resource="invoke", resourceType="lambda")
    b1x = h.add("PassStateExited", prev=b1, name="B1")
    b2 = h.add("PassStateEntered", prev=b1x, name="B2")
    b2x = h.add("PassStateExited", prev=b2, name="B2")
    a_done = h.add("TaskSucceeded", prev=a_sched, resource="invoke", resourceType="lambda")
    ax = h.add("TaskStateExited", prev=a_done, name="A1")
    h.add("ParallelStateSucceeded", prev=ax)
    h.add("ParallelStateExited", name="Fan")
    h.add("ExecutionSucceeded")
    assert b2x < a_done
    return h


def test_parallel_gives_a_span_per_branch() -> None:
    spans, _ = assemble(parallel_history())
    fan = one(spans, "Fan")
    branches = sorted(by_name(spans, "Fan branch"), key=lambda s: s.attributes["sfn.branch.index"])
    assert len(branches) == 2 and {b.parent_span_id for b in branches} == {fan.span_id}
    a_branch, b_branch = branches
    assert one(spans, "A1").parent_span_id == a_branch.span_id
    assert one(spans, "B1").parent_span_id == b_branch.span_id
    assert one(spans, "B2").parent_span_id == b_branch.span_id
    # a branch ends with its last state, not with the Parallel state
    assert b_branch.end_ns == one(spans, "B2").end_ns
    assert a_branch.end_ns == one(spans, "A1").end_ns
    assert all(b.status == Status.UNSET for b in branches)


def map_history(aws_shape: bool) -> History:
    """A Map with two concurrent iterations. AWS points an iteration's start at the previous
    iteration's last event; the local emulator points it at MapStateStarted."""
    h = History()
    h.start()
    h.add("MapStateEntered", name="Each")
    started = h.add("MapStateStarted", length=2)
    i0 = h.add("MapIterationStarted", prev=started, name="Each", index=0)
    w0 = h.add("WaitStateEntered", prev=i0, name="Work")
    i1 = h.add("MapIterationStarted", prev=w0 if aws_shape else started, name="Each", index=1)
    w1 = h.add("WaitStateEntered", prev=i1, name="Work")
    w0x = h.add("WaitStateExited", prev=w0, name="Work")
    h.add("MapIterationSucceeded", prev=w0x, name="Each", index=0)
    w1x = h.add("WaitStateExited", prev=w1, name="Work")
    h.add("MapIterationFailed", prev=w1x, name="Each", index=1)
    h.add("MapStateFailed")
    h.add("MapStateExited", name="Each")
    h.add("ExecutionSucceeded")
    return h


@pytest.mark.parametrize("aws_shape", [True, False], ids=["aws", "emulator"])
def test_map_gives_a_span_per_iteration_in_both_shapes(aws_shape: bool) -> None:
    spans, observations = assemble(map_history(aws_shape))
    each = one(spans, "Each")
    iterations = {s.attributes["sfn.map.index"]: s for s in by_name(spans, "Each iteration")}
    assert set(iterations) == {0, 1}
    assert {s.parent_span_id for s in iterations.values()} == {each.span_id}
    works = sorted(by_name(spans, "Work"), key=lambda s: s.start_ns)
    assert [w.parent_span_id for w in works] == [iterations[0].span_id, iterations[1].span_id]
    assert (iterations[0].status, iterations[1].status) == (Status.UNSET, Status.ERROR)
    assert each.attributes["sfn.map.length"] == 2
    assert each.attributes["sfn.outcome"] == "caught"
    assert counts(observations, "sfn_map_iterations_total") == {
        ("Orders", "Each", "succeeded"): 1,
        ("Orders", "Each", "failed"): 1,
    }


def test_both_map_shapes_give_the_same_tree() -> None:
    def shape(spans: list[SpanRecord]) -> set[tuple[str, str | None, int, int | None]]:
        names = {s.span_id: s.name for s in spans}
        return {(s.name, names.get(s.parent_span_id or 0), s.start_ns, s.end_ns) for s in spans}

    assert shape(assemble(map_history(True))[0]) == shape(assemble(map_history(False))[0])


def test_map_inside_parallel_inside_map() -> None:
    h = History()
    h.start()
    h.add("MapStateEntered", name="Outer")
    outer_started = h.add("MapStateStarted", length=2)
    tips = []
    iteration_starts = []
    for index in range(2):
        it = h.add("MapIterationStarted", prev=outer_started, name="Outer", index=index)
        iteration_starts.append(it)
        h.add("ParallelStateEntered", prev=it, name="Split")
        tips.append(h.add("ParallelStateStarted"))
    for index in range(2):
        inner = h.add("MapStateEntered", prev=tips[index], name="Inner")
        inner_started = h.add("MapStateStarted", prev=inner, length=1)
        ii = h.add("MapIterationStarted", prev=inner_started, name="Inner", index=0)
        _, px = h.state("Pass", "Leaf", prev=ii)
        ix = h.add("MapIterationSucceeded", prev=px, name="Inner", index=0)
        h.add("MapStateSucceeded", prev=ix)
        tips[index] = h.add("MapStateExited", name="Inner")
    for index in range(2):
        ps = h.add("ParallelStateSucceeded", prev=tips[index])
        px = h.add("ParallelStateExited", prev=ps, name="Split")
        tips[index] = h.add("MapIterationSucceeded", prev=px, name="Outer", index=index)
    h.add("MapStateSucceeded")
    h.add("MapStateExited", name="Outer")
    h.add("ExecutionSucceeded")
    spans, _ = assemble(h)
    parent = {s.span_id: s for s in spans}
    for leaf in by_name(spans, "Leaf"):
        path = []
        span: SpanRecord | None = leaf
        while span is not None:
            path.append(span.name)
            span = parent.get(span.parent_span_id or 0)
        assert path == [
            "Leaf",
            "Inner iteration",
            "Inner",
            "Split branch",
            "Split",
            "Outer iteration",
            "Outer",
            "Orders",
        ]
    outer_iterations = {s.span_id for s in by_name(spans, "Outer iteration")}
    assert len(outer_iterations) == 2
    # each outer iteration holds exactly one Split, one Inner and one Leaf
    splits = by_name(spans, "Split")
    assert {s.parent_span_id for s in splits} == outer_iterations
    assert all(s.status == Status.UNSET for s in spans)


def test_distributed_map_run_span() -> None:
    h = History()
    h.start()
    h.add("MapStateEntered", name="Batch")
    h.add("MapStateStarted", length=0)
    run = h.add("MapRunStarted", mapRunArn="arn:aws:states:eu-west-1:1:mapRun:Orders/Batch:abc")
    h.add("MapRunFailed", error="States.ItemReaderFailed", cause="bad csv")
    h.add("MapStateFailed")
    h.add("ExecutionFailed", error="States.ItemReaderFailed", cause="bad csv")
    spans, _ = assemble(h)
    map_run = one(spans, "Batch map run")
    assert map_run.kind == SpanKind.MAP_RUN and map_run.span_id == span_id_for(ARN, run)
    assert map_run.parent_span_id == one(spans, "Batch").span_id
    assert (map_run.status, map_run.error) == (Status.ERROR, "States.ItemReaderFailed")
    assert map_run.attributes["sfn.map_run.arn"].endswith(":abc")
    assert one(spans, "Batch").error == "States.ItemReaderFailed"


def test_a_map_run_that_succeeds_leaves_its_state_without_error() -> None:
    h = History()
    h.start()
    h.add("MapStateEntered", name="Batch")
    h.add("MapRunStarted", mapRunArn="arn:aws:states:eu-west-1:1:mapRun:Orders/Batch:ok")
    h.add("MapRunSucceeded")
    h.add("MapStateSucceeded")
    h.add("MapStateExited", name="Batch")
    h.add("ExecutionSucceeded")
    spans, _ = assemble(h)
    assert one(spans, "Batch map run").status == Status.UNSET
    batch = one(spans, "Batch")
    assert (batch.status, batch.error, batch.attributes["sfn.outcome"]) == (Status.UNSET, None, "succeeded")


def test_an_aborted_state_keeps_the_error_its_failed_iteration_left() -> None:
    h = History()
    h.start()
    h.add("MapStateEntered", name="Fan")
    h.add("MapStateStarted", length=1)
    h.add("MapIterationStarted", name="Fan", index=0)
    h.add("PassStateEntered", name="Item")
    h.add("PassStateExited", name="Item")
    h.add("MapIterationFailed", name="Fan", index=0, error="Item.Broken", cause="item 0 is broken")
    h.add("MapStateAborted")
    h.add("ExecutionFailed", error="Item.Broken")
    spans, _ = assemble(h)
    fan = one(spans, "Fan")
    assert fan.attributes["sfn.outcome"] == "aborted" and fan.status == Status.ERROR
    assert (fan.error, fan.cause) == ("Item.Broken", "item 0 is broken")


def test_an_evaluation_failure_after_the_end_is_counted_and_plain_events_accumulate() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="T")
    h.add("TaskStateTimedOut", name="T")  # two plain events on one span: both kept
    h.add("TaskStateTimedOut", name="T")
    h.add("TaskStateExited", name="T")
    h.add("ExecutionSucceeded")
    h.add("EvaluationFailed", state="T", error="States.Runtime")
    assembler = SpanAssembler(IDENTITY)
    out = assembler.feed(h.events)
    task = one(out.spans, "T")
    assert [e.name for e in task.events] == ["TaskStateTimedOut", "TaskStateTimedOut"]
    assert counts(out.observations, "sfn_history_anomalies_total") == {("Orders", "event_after_end"): 1}


def test_evaluation_failed_is_a_span_event_and_the_state_error() -> None:
    h = History()
    h.start()
    h.add("PassStateEntered", prev=0, name="Shape")
    h.add(
        "EvaluationFailed",
        prev=0,
        error="States.QueryEvaluationError",
        cause="bad",
        location="Output",
        state="Shape",
    )
    h.add("ExecutionFailed", error="States.QueryEvaluationError", cause="bad")
    spans, observations = assemble(h)
    shape = one(spans, "Shape")
    assert [e.name for e in shape.events] == ["EvaluationFailed"]
    assert shape.events[0].attributes["sfn.location"] == "Output"
    assert (shape.status, shape.error) == (Status.ERROR, "States.QueryEvaluationError")
    assert not counts(observations, "sfn_unknown_events_total")


def test_unknown_event_types_become_span_events_and_are_counted() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="T")
    h.add("QuantumEntangled", spin=1, flavour="up", name="Q", parameters='{"password": "hunter2"}')
    h.add("TaskStateExited", name="T")
    h.add("ExecutionSucceeded")
    spans, observations = assemble(h)
    event = one(spans, "T").events[0]
    # its type, id, numbers and known plain fields; any other text may be execution data
    assert event.name == "QuantumEntangled"
    assert event.attributes == {"sfn.event.id": 3, "sfn.spin": 1, "sfn.name": "Q"}
    assert counts(observations, "sfn_unknown_events_total") == {("Orders", "QuantumEntangled"): 1}


def test_redrive_reopens_the_execution_under_a_new_span() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    h.add("TaskScheduled", resource="invoke", resourceType="lambda")
    h.add("TaskFailed", resource="invoke", resourceType="lambda", error="Boom")
    h.add("ExecutionFailed", error="Boom")
    assembler = SpanAssembler(IDENTITY)
    first = assembler.feed(h.events)
    assert assembler.finished
    redriven = h.add("ExecutionRedriven", redriveCount=1)
    h.add("TaskStateEntered", name="Charge")
    h.add("TaskScheduled", resource="invoke", resourceType="lambda")
    h.add("TaskSucceeded", resource="invoke", resourceType="lambda")
    h.add("TaskStateExited", name="Charge")
    h.add("ExecutionSucceeded")
    second = assembler.feed(h.events[5:])
    assert assembler.finished
    spans = first.spans + second.spans
    assert_well_formed(spans)
    root = one(spans, "Orders")
    redrive = one(spans, "Orders redrive")
    assert redrive.kind == SpanKind.EXECUTION and redrive.parent_span_id == root.span_id
    assert redrive.span_id == span_id_for(ARN, redriven)
    assert redrive.attributes["sfn.execution.redrive_count"] == 1
    assert redrive.status == Status.UNSET and root.status == Status.ERROR
    charges = sorted(by_name(spans, "Charge"), key=lambda s: s.start_ns)
    assert [c.parent_span_id for c in charges] == [root.span_id, redrive.span_id]
    finished = counts(first.observations + second.observations, "sfn_executions_finished_total")
    assert finished == {("Orders", "FAILED"): 1, ("Orders", "SUCCEEDED"): 1}
    assert [(link.span_id, dict(link.attributes)) for link in redrive.links] == [
        (root.span_id, {"sfn.link": "redrive_of"})
    ]
    assert assembler.redrive_count == 1


def test_a_second_redrive_counts_two_and_a_redrive_while_running_aborts_the_run() -> None:
    h = History()
    h.start()
    h.add("ExecutionFailed", error="Boom")
    h.add("ExecutionRedriven", redriveCount=1)
    h.add("ExecutionRedriven", redriveCount=True)  # while the first redrive runs; a bad count
    h.add("ExecutionSucceeded")
    assembler = SpanAssembler(IDENTITY)
    out = assembler.feed(h.events)
    assert assembler.redrive_count == 2
    redrives = sorted(by_name(out.spans, "Orders redrive"), key=lambda s: s.start_ns)
    assert [r.attributes["sfn.outcome"] for r in redrives] == ["aborted", "succeeded"]
    assert redrives[0].status == Status.ERROR
    assert "sfn.execution.redrive_count" not in redrives[1].attributes  # True is not a count
    assert counts(out.observations, "sfn_executions_redriven_total") == {("Orders",): 2}


def test_abandon_closes_what_is_open_at_the_newest_event_and_names_the_anomaly_once() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    h.add("TaskScheduled", resource="invoke", resourceType="lambda")
    h.add("TaskFailed", resource="invoke", resourceType="lambda", error="Boom")  # a retry follows
    h.add("TaskStateTimedOut", name="Charge")  # a plain event the state already carries
    h.add("TaskScheduled", resource="invoke", resourceType="lambda")
    assembler = SpanAssembler(IDENTITY)
    first = assembler.feed(h.events)
    out = assembler.abandon()
    assert assembler.finished
    newest = round(h.events[-1]["timestamp"] * 1e6) * 1000
    closed = {span.name: span for span in out.spans}
    assert set(closed) == {"Orders", "Charge", "lambda:invoke"}
    for span in closed.values():
        assert span.end_ns == newest and span.attributes["sfn.outcome"] == "incomplete"
        assert span.status == Status.UNSET
        marks = [e for e in span.events if e.name == "sfn.anomaly"]
        assert [(m.time_ns, dict(m.attributes)) for m in marks] == [
            (newest, {"sfn.anomaly": "incomplete_log", "sfn.event.id": 6})
        ]
    assert [e.name for e in closed["Charge"].events] == ["TaskStateTimedOut", "sfn.anomaly"]
    assert counts(out.observations, "sfn_history_anomalies_total") == {("Orders", "incomplete_log"): 1}
    assert counts(out.observations, "sfn_executions_finished_total") == {("Orders", "UNKNOWN"): 1}
    assert not first.spans or all(s.name == "lambda:invoke" for s in first.spans)  # the failed attempt
    assert assembler.abandon().spans == []  # nothing open: nothing happens
    assert SpanAssembler(IDENTITY).abandon().spans == []  # nothing read yet


def test_abandoning_a_partial_record_counts_no_anomaly() -> None:
    h = History()
    h.start()
    h.add("TaskStateEntered", name="Charge")
    assembler = SpanAssembler(IDENTITY, AssemblerOptions(partial=True))
    assembler.feed(h.events[1:])  # the start is not in an ERROR-level log
    out = assembler.abandon()
    assert not any(e.name == "sfn.anomaly" for s in out.spans for e in s.events)
    assert counts(out.observations, "sfn_history_anomalies_total") == {}
    assert counts(out.observations, "sfn_executions_finished_total") == {("Orders", "UNKNOWN"): 1}
    assert counts(out.observations, "sfn_execution_duration_seconds") == {}


def test_an_xray_trace_header_joins_that_trace() -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    h = History()
    h.start()
    h.state("Pass", "P")
    h.add("ExecutionSucceeded")
    spans, _ = assemble(h, ExecutionIdentity.from_arn(ARN, trace_header=header))
    assert {s.trace_id for s in spans} == {0x5759E988BD862E3FE1BE46A994272793}
    assert one(spans, "Orders").parent_span_id == 0x53995C3F42CD8AD8


def test_open_spans_while_the_execution_runs() -> None:
    h = History()
    h.start()
    h.add("WaitStateEntered", name="Sleep")
    assembler = SpanAssembler(IDENTITY)
    out = assembler.feed(h.events)
    assert out.spans == []
    open_spans = assembler.open_spans()
    assert [(s.name, s.end_ns, s.status) for s in open_spans] == [
        ("Orders", None, Status.UNSET),
        ("Sleep", None, Status.UNSET),
    ]
    assert not assembler.finished


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda e: e.pop("id"),
            "event at position 1 (PassStateEntered): id: expected a positive integer, got None",
        ),
        (
            lambda e: e.update(id="2"),
            "event at position 1 (PassStateEntered): id: expected a positive integer, got '2'",
        ),
        (lambda e: e.update(type=7), "event 2: type: expected a non-empty string, got 7"),
        (lambda e: e.pop("timestamp"), "event 2 (PassStateEntered): timestamp: missing"),
        (
            lambda e: e.update(timestamp="yesterday"),
            "event 2 (PassStateEntered): timestamp: 'yesterday' is not an ISO 8601 timestamp",
        ),
        (
            lambda e: e.update(timestamp=[1]),
            "event 2 (PassStateEntered): timestamp: expected a datetime, an ISO 8601 string or epoch seconds, got list",
        ),
        (
            lambda e: e.update(previousEventId=-1),
            "event 2 (PassStateEntered): previousEventId: expected an integer >= 0, got -1",
        ),
        (
            lambda e: e.update(stateEnteredEventDetails=[]),
            "event 2 (PassStateEntered): stateEnteredEventDetails: expected an object, got list",
        ),
    ],
)
def test_malformed_events_are_named_in_the_error(mutate: object, message: str) -> None:
    h = History()
    h.start()
    h.state("Pass", "P")
    mutate(h.events[1])  # type: ignore[operator]
    with pytest.raises(HistoryError) as caught:
        SpanAssembler(IDENTITY).feed(h.events)
    assert str(caught.value) == message


def test_a_rejected_batch_is_not_consumed() -> None:
    h = History()
    h.start()
    h.state("Pass", "P")
    h.add("ExecutionSucceeded")
    assembler = SpanAssembler(IDENTITY)
    assembler.feed(h.events[:1])
    with pytest.raises(HistoryError, match=r"^event 1 \(ExecutionStarted\): id is not after event 1"):
        assembler.feed(h.events[:2])  # event 1 again: a duplicate
    with pytest.raises(HistoryError, match=r"^event 2 \(PassStateEntered\): id is not after event 3"):
        assembler.feed([h.events[2], h.events[1]])  # out of order
    assert assembler.last_event_id == 1
    out = assembler.feed(h.events[1:])
    assert [s.name for s in out.spans] == ["P", "Orders"]


def test_the_first_non_object_event_is_named() -> None:
    with pytest.raises(HistoryError, match=r"^event at position 0: expected an object, got str$"):
        SpanAssembler(IDENTITY).feed(["nope"])


ODD_SEQUENCES: list[tuple[list[tuple[str, dict[str, object]]], str]] = [
    ([("PassStateExited", {"name": "Ghost"})], "exit_without_entry"),
    ([("MapIterationSucceeded", {"name": "Nope", "index": 3})], "iteration_end_without_start"),
    ([("TaskSucceeded", {})], "attempt_without_task_state"),
    ([("ExecutionSucceeded", {}), ("PassStateEntered", {"name": "Late"})], "event_after_end"),
    ([("ExecutionStarted", {"input": "{}"})], "duplicate_execution_started"),
    ([("ExecutionRedriven", {"redriveCount": 1})], "redrive_while_running"),
    ([("TaskStateAborted", {})], "abort_without_entry"),
    ([("ParallelStateStarted", {})], "parallel_without_state"),
    ([("ParallelStateSucceeded", {})], "parallel_without_state"),
    ([("MapStateStarted", {"length": 2})], "map_without_state"),
    ([("MapRunStarted", {"mapRunArn": "arn:aws:states:eu-west-1:1:mapRun:Orders/M:x"})], "map_without_state"),
    ([("MapIterationStarted", {"name": "M", "index": 0})], "iteration_without_map"),
    ([("MapRunSucceeded", {})], "map_run_end_without_start"),
    ([("TaskStateEntered", {"name": "T"}), ("TaskScheduled", {"resource": "a", "resourceType": "lambda"}),
      ("TaskScheduled", {"resource": "b", "resourceType": "lambda"})], "attempt_overlaps_previous"),
    ([("TaskStateEntered", {"name": "T"}), ("TaskStarted", {"resource": "a", "resourceType": "lambda"})],
     "attempt_event_without_schedule"),
    ([("MapStateEntered", {"name": "M"}), ("MapStateStarted", {"length": 1}),
      ("MapIterationStarted", {"name": "M", "index": 0}), ("MapIterationStarted", {"name": "M", "index": 0})],
     "iteration_restarted"),
]  # fmt: skip


@pytest.mark.parametrize(("events", "anomaly"), ODD_SEQUENCES)
def test_odd_sequences_are_best_effort_and_counted(
    events: list[tuple[str, dict[str, object]]], anomaly: str
) -> None:
    h = History()
    h.start()
    for event_type, details in events:
        h.add(event_type, **details)
    assembler = SpanAssembler(IDENTITY)
    out = assembler.feed(h.events)
    spans = out.spans + assembler.open_spans()
    assert_well_formed(spans)
    assert counts(out.observations, "sfn_history_anomalies_total") == {("Orders", anomaly): 1}
    if anomaly != "event_after_end":  # nothing is open any more to carry the span event
        assert any(e.attributes.get("sfn.anomaly") == anomaly for s in spans for e in s.events)


DETAILS = {"exit_without_entry": "Ghost", "iteration_end_without_start": "3", "abort_without_entry": "Task",
           "iteration_restarted": "0"}  # fmt: skip


# the cases whose last event is the odd one and has an open span to carry the mark
@pytest.mark.parametrize(
    ("events", "anomaly"),
    [
        case for case in ODD_SEQUENCES
        if case[1] not in {"event_after_end", "duplicate_execution_started", "attempt_overlaps_previous",
                           "attempt_event_without_schedule"}
    ],
)  # fmt: skip
def test_an_anomaly_is_a_span_event_naming_its_event_and_what_was_odd(
    events: list[tuple[str, dict[str, object]]], anomaly: str
) -> None:
    h = History()
    h.start()
    for event_type, details in events:
        h.add(event_type, **details)
    assembler = SpanAssembler(IDENTITY)
    out = assembler.feed(h.events)
    marks = [
        e for s in out.spans + assembler.open_spans() for e in s.events if e.attributes.get("sfn.anomaly")
    ]
    assert len(marks) == 1
    mark, odd = marks[0], h.events[-1]
    assert mark.name == "sfn.anomaly"
    assert mark.attributes["sfn.event.id"] == odd["id"] and mark.attributes["sfn.event.type"] == odd["type"]
    assert mark.attributes.get("sfn.anomaly.detail") == DETAILS.get(anomaly)
    assert mark.time_ns == round(odd["timestamp"] * 1e6) * 1000


def test_a_gap_and_a_bad_predecessor_are_named_on_the_span_they_land_in() -> None:
    h = History()
    h.start()
    h.state("Pass", "A")
    h.state("Pass", "B")
    h.add("PassStateEntered", name="C", prev=9)  # its predecessor is after it
    h.add("ExecutionSucceeded", output="{}")
    events = h.events[:1] + h.events[3:]  # A's two events lost
    out = SpanAssembler(IDENTITY).feed(events)
    root = next(s for s in out.spans if s.kind == SpanKind.EXECUTION)
    marks = {e.attributes["sfn.anomaly"]: e.attributes for e in root.events}
    assert marks["missing_event_ids"]["sfn.anomaly.detail"] == "ids 2..3"
    assert marks["missing_event_ids"]["sfn.event.id"] == 4
    assert marks["bad_previous_event_id"]["sfn.anomaly.detail"] == "9"
    assert counts(out.observations, "sfn_history_anomalies_total") == {
        ("Orders", "missing_event_ids"): 1, ("Orders", "bad_previous_event_id"): 1,
    }  # fmt: skip


def test_a_history_without_execution_started_still_has_a_root() -> None:
    h = History()
    h.start()
    h.state("Pass", "P")
    assembler = SpanAssembler(IDENTITY)
    out = assembler.feed(h.events[1:])
    spans = out.spans + assembler.open_spans()
    assert_well_formed(spans)
    assert counts(out.observations, "sfn_history_anomalies_total") == {
        ("Orders", "missing_execution_started"): 1
    }


def test_a_gap_in_ids_is_accepted_and_reported() -> None:
    h = History()
    h.start()
    h.state("Pass", "P")
    h.add("ExecutionSucceeded")
    del h.events[1:3]
    _, observations = assemble(h)
    assert counts(observations, "sfn_history_anomalies_total") == {("Orders", "missing_event_ids"): 1}


def test_twenty_five_thousand_events_keep_memory_bounded_by_open_spans() -> None:
    h = History(step_s=0.001)
    h.start()
    while len(h.events) < 24_999:
        h.add("TaskStateEntered", name="Poll")
        h.add("TaskScheduled", resource="invoke", resourceType="lambda")
        h.add("TaskSucceeded", resource="invoke", resourceType="lambda")
        h.add("TaskStateExited", name="Poll")
        h.state("Choice", "Done?")
    h.events = h.events[:24_999]
    h.add("ExecutionFailed", error="States.Runtime", cause="history limit")
    assembler = SpanAssembler(IDENTITY)
    biggest_owner_map = 0
    spans = 0
    for start in range(0, 25_000, 500):
        spans += len(assembler.feed(h.events[start : start + 500]).spans)
        biggest_owner_map = max(biggest_owner_map, len(assembler._owner))
        assert assembler.open_span_count <= 3
    assert assembler.finished and assembler.last_event_id == 25_000
    opening = [e for e in h.events if e["type"].endswith(("StateEntered", "Scheduled"))]
    assert spans == 1 + len(opening) > 12_000
    # the newest events of closed spans, swept in batches, and a few per open span
    assert biggest_owner_map <= 2 * _CLOSED_TIPS_KEPT + 3 * _TIPS_KEPT


def test_big_payloads_are_left_out_by_default_and_truncated_when_captured() -> None:
    big = '{"blob": "' + "é" * 128 * 1024 + '"}'  # 256 KB of UTF-8
    h = History()
    h.add("ExecutionStarted", prev=0, input=big)
    h.add("PassStateEntered", name="P", input=big)
    h.add("PassStateExited", name="P", output=big)
    h.add("ExecutionSucceeded", output=big)
    spans, _ = assemble(h)
    assert not any(key.endswith(("input", "output")) for s in spans for key in s.attributes)
    spans, _ = assemble(h, include_data=True, max_data_bytes=1000)
    p = one(spans, "P")
    assert len(p.attributes["sfn.state.input"].encode()) <= 1000  # type: ignore[union-attr]
    assert p.attributes["sfn.state.input.truncated"] is True
    assert p.attributes["sfn.state.input"].startswith('{"blob": "éé')  # type: ignore[union-attr]
    assert len(one(spans, "Orders").attributes["sfn.execution.output"].encode()) <= 1000  # type: ignore[union-attr]
