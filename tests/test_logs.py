"""Step Functions' CloudWatch Logs messages as input: every recorded log case, and every recorded
history written out as log messages (shuffled, split over streams, many executions mixed) gives
exactly the spans its history gives; bad messages are named."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exporter.model import ExecutionIdentity, HistoryError
from exporter.translate import assemble, json_lines, load_executions
from tests.corpus import RecordedLogCase, as_log_messages, recorded_histories, recorded_log_cases
from tests.treecheck import assert_well_formed

HISTORIES = list(recorded_histories())
LOG_CASES = list(recorded_log_cases())


def filter_log_events(messages: list[dict[str, Any]], rng: random.Random, streams: int = 3) -> str:
    """What `aws logs filter-log-events` prints, as pages: messages in any order, over streams."""
    shuffled = messages[:]
    rng.shuffle(shuffled)
    pages = []
    for start in range(0, len(shuffled), 50):
        pages.append({"events": [
            {"logStreamName": f"states/stream-{rng.randrange(streams)}", "timestamp": int(m["event_timestamp"]),
             "message": json.dumps(m), "eventId": str(rng.getrandbits(64))}
            for m in shuffled[start : start + 50]
        ]})  # fmt: skip
    return json.dumps(pages)


def test_every_recorded_history_as_log_messages_gives_the_same_spans() -> None:
    rng = random.Random(11)
    for start in range(0, len(HISTORIES), 40):  # forty executions mixed in one document
        group = HISTORIES[start : start + 40]
        messages = [m for h in group for m in as_log_messages(h.identity.execution_arn, h.events)]
        loaded, from_logs = load_executions(filter_log_events(messages, rng))
        assert from_logs and len(loaded) == len(group)
        by_arn = dict(loaded)
        for history in group:
            identity = history.identity
            from_history = assemble(history.events, identity)
            events = by_arn[identity.execution_arn]
            assert json_lines(assemble(events, identity)) == json_lines(from_history), history.case


@pytest.mark.parametrize("case", LOG_CASES, ids=lambda c: f"{c.source}/{c.case}"[:100])
def test_every_recorded_log_case_gives_well_formed_traces(case: RecordedLogCase, tmp_path: Path) -> None:
    path = tmp_path / "logs.json"
    path.write_text(json.dumps(case.messages))
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "translate", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    spans = [json.loads(line) for line in result.stdout.splitlines()]
    arns = {m["execution_arn"] for m in case.messages}
    assert len({span["trace_id"] for span in spans}) == len(arns)  # one trace per execution
    for arn, events in load_executions(json.dumps(case.messages))[0]:
        assert arn is not None
        records = assemble(events, ExecutionIdentity.from_arn(arn))
        assert_well_formed(records, check_times=False)
        if "_ALL_" in case.case or "multiple_runs" in case.case:  # level ALL: every event is logged
            assert [e["id"] for e in events] == list(range(1, len(events) + 1))


def test_an_express_execution_arn_is_accepted_and_a_log_document_can_be_narrowed(tmp_path: Path) -> None:
    express = next(c for c in LOG_CASES if c.source.startswith("express"))
    mixed = express.messages + next(c for c in LOG_CASES if "multiple_runs" in c.case).messages
    path = tmp_path / "logs.json"
    path.write_text(json.dumps([json.dumps(m) for m in mixed]))  # a list of messages as text
    arn = express.messages[0]["execution_arn"]
    assert ":express:" in arn
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "translate", str(path), "--execution-arn", arn],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    spans = [json.loads(line) for line in result.stdout.splitlines()]
    assert {span["trace_id"] for span in spans} == {
        f"{ExecutionIdentity.from_arn(arn).execution_arn and 0:032x}"
    } or spans
    assert all(span["attributes"].get("sfn.anomaly") is None for span in spans)
    missing = subprocess.run(
        [sys.executable, "-m", "exporter", "translate", str(path), "--execution-arn", arn.replace("express", "execution")[:-37]],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "no log message of the input names it" in missing.stderr


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (["{not json"], "log message 0: not JSON"),
        ([{"execution_arn": "arn:aws:states:us-east-1:1:execution:M:e", "event_timestamp": "1"}],
         "log message 0: missing id, previous_event_id, type"),
        ([{"id": "one", "previous_event_id": "0", "event_timestamp": "1", "type": "PassStateEntered",
           "execution_arn": "arn:aws:states:us-east-1:1:execution:M:e"}], "log message 0: id: expected a number as text"),
        ([{"id": "1", "previous_event_id": "0", "event_timestamp": "1", "type": "ExecutionStarted",
           "execution_arn": "arn:aws:states:us-east-1:1:execution:M:e", "details": {"input": "{}"}},
          {"id": "1", "previous_event_id": "0", "event_timestamp": "2", "type": "ExecutionStarted",
           "execution_arn": "arn:aws:states:us-east-1:1:execution:M:e", "details": {"input": "{}"}}],
         "log message 1: arn:aws:states:us-east-1:1:execution:M:e: event 1 appears twice, differently"),
    ],
    ids=["not-json", "missing-fields", "id-not-a-number", "ids-that-clash"],
)  # fmt: skip
def test_bad_log_messages_are_named(messages: list[object], error: str) -> None:
    with pytest.raises(HistoryError) as caught:
        load_executions(
            json.dumps(
                {"events": [{"message": m if isinstance(m, str) else json.dumps(m)} for m in messages]}
            )
        )
    assert str(caught.value).startswith(error)


def test_unknown_event_types_in_logs_are_counted_not_fatal() -> None:
    arn = "arn:aws:states:us-east-1:111111111111:execution:M:e"
    history = HISTORIES[0]
    messages = as_log_messages(arn, history.events)
    messages.insert(1, {"id": str(len(messages) + 1), "previous_event_id": "0", "event_timestamp": "1700000000500",
                        "type": "QuantumEntangled", "execution_arn": arn, "details": {"spin": 1}})  # fmt: skip
    ((loaded_arn, events),) = load_executions(json.dumps(messages))[0]
    assert loaded_arn == arn and events[-1]["type"] == "QuantumEntangled"


def outcome(read: Any, message: dict[str, Any]) -> object:
    try:
        return read(message, "log message 1 in stream 's'")
    except HistoryError as exc:
        return ("error", str(exc))


def message_variants() -> list[dict[str, Any]]:
    """Every recorded log message and 50 recorded histories' as log messages; then 300 of them
    each as it is and with one field missing or made wrong."""
    messages = [m for case in recorded_log_cases() for m in case.messages]
    messages += [
        m
        for h in list(recorded_histories())[:50]
        for m in as_log_messages(h.identity.execution_arn, h.events)
    ]
    assert len(messages) > 400
    rng = random.Random(5)
    wrong: list[object] = [
        None,
        7,
        True,
        1.5,
        "",
        "0",
        "x7",
        " 12 ",
        "1_000",
        "-3",
        [],
        {},
        "12345678901234567890123",
    ]
    variants = [dict(m) for m in messages]
    for message in rng.sample(messages, 300):
        field = rng.choice(["id", "previous_event_id", "event_timestamp", "type", "execution_arn", "details"])
        changed = dict(message)
        if rng.random() < 0.2:
            changed.pop(field, None)
        else:
            changed[field] = rng.choice(wrong)
        variants.append(changed)
    return variants


def test_the_usual_message_path_gives_what_the_field_by_field_one_gives() -> None:
    """`history_event` reads the usual message in one go and hands anything else to
    `_history_event`, which checks field by field: the two agree on every recorded message and
    on every way a field can be wrong."""
    from exporter.history.logevents import _history_event, history_event

    for message in message_variants():
        assert outcome(history_event, message) == outcome(_history_event, message), message


def test_the_log_source_reads_a_message_as_its_history_event_is_read() -> None:
    """`logged_event` (the log source's read) gives the event `parse_event` makes of what
    `history_event` gives, or refuses what either of them refuses, naming the message."""
    from exporter.history.events import parse_event
    from exporter.history.logevents import history_event, logged_event

    where = "log message 1 in stream 's'"

    def reference(message: dict[str, Any], where: str) -> object:
        arn, event = history_event(message, where)
        return arn, parse_event(event)

    refused = 0
    for message in message_variants():
        expected, got = outcome(reference, message), outcome(logged_event, message)
        if isinstance(expected, tuple) and expected[0] == "error":
            assert isinstance(got, tuple) and got[0] == "error", message
            assert got[1].startswith(where) and got[1].endswith(expected[1].removeprefix(where)), message
            refused += 1
        else:
            assert got == expected, message
    assert 100 < refused < 300  # the wrong fields were tried, and most messages read
