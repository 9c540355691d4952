"""The fast GetExecutionHistory parser (`parse_history_body`) gives exactly what botocore's
shape walk gives, on every history of the recorded corpus: the same events, and the same spans
and observations once assembled; and it refuses what botocore refuses, the same way. So does the
FilterLogEvents one (`parse_log_events_body`), on the corpus as log messages and on the recorded
log messages."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from exporter.aws.source import diagnose_history, parse_history_body, parse_log_events_body
from exporter.history.assembler import SpanAssembler
from exporter.history.events import loads, timestamp_ns
from tests.corpus import as_log_messages, recorded_histories, recorded_log_cases


@functools.cache
def output_shape(service: str, operation: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service).operation_model(operation).output_shape


def botocore_parse(
    body: bytes, service: str = "stepfunctions", operation: str = "GetExecutionHistory"
) -> dict[str, Any]:
    import botocore.parsers

    shape = output_shape(service, operation)
    parsed: dict[str, Any] = botocore.parsers.create_parser("json").parse(
        {"body": body, "headers": {}, "status_code": 200}, shape
    )
    parsed.pop("ResponseMetadata", None)
    return parsed


def aws_body(events: list[dict[str, Any]], token: str | None = None) -> bytes:
    """As AWS sends it: epoch seconds to the millisecond, and a member the model does not know."""
    sent = [
        {**e, "timestamp": e["timestamp"] + (e["id"] * 37 % 1000) / 1000, "somethingNew": 1} for e in events
    ]
    return json.dumps({"events": sent, **({"nextToken": token} if token else {})}).encode()


def comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "timestamp": timestamp_ns(e["timestamp"])} for e in events]


def test_every_recorded_history_parses_and_assembles_as_botocore_has_it() -> None:
    histories = list(recorded_histories())
    assert len(histories) > 600
    for history in histories:
        body = aws_body(history.events, token="next-page")
        reference, fast = botocore_parse(body), parse_history_body(body)
        assert fast.keys() == reference.keys() == {"events", "nextToken"}, history.case
        assert fast["nextToken"] == reference["nextToken"]
        assert comparable(fast["events"]) == comparable(reference["events"]), history.case
        assert all("somethingNew" not in e for e in fast["events"])  # dropped, as botocore does
        expected = SpanAssembler(history.identity).feed(reference["events"])
        got = SpanAssembler(history.identity).feed(fast["events"])
        assert got.spans == expected.spans, history.case
        assert got.observations == expected.observations, history.case


def test_a_timestamp_that_is_no_time_is_refused_naming_the_event_as_botocore_refuses_it() -> None:
    body = b'{"events": [{"id": 1, "type": "ExecutionStarted", "timestamp": "garbage"}]}'
    with pytest.raises(ValueError, match=r"^event 1: timestamp 'garbage' is not a time$"):
        parse_history_body(body)
    assert diagnose_history(body) == "event 1: timestamp 'garbage' is not a time"  # what the log says
    with pytest.raises(ValueError):
        botocore_parse(body)
    with pytest.raises(ValueError, match="event at position 0 of the answer is not an object"):
        parse_history_body(b'{"events": [7]}')  # botocore fails on it too (AttributeError)


def test_ids_and_types_botocore_lets_through_are_left_to_the_event_checks() -> None:
    for body in (
        b'{"events": [{"id": "1", "type": "ExecutionStarted", "timestamp": 1.0}]}',
        b'{"events": [{"id": 2, "timestamp": 1.0}]}',
    ):
        assert comparable(parse_history_body(body)["events"]) == comparable(botocore_parse(body)["events"])


def test_a_body_cut_short_holds_nothing_as_with_botocore() -> None:
    body = aws_body([{"id": 1, "type": "ExecutionStarted", "timestamp": 1.0, "previousEventId": 0}])
    cut = body[: len(body) // 2]
    assert parse_history_body(cut) == botocore_parse(cut) == {}  # then: IncompleteResponse, retried


@pytest.mark.parametrize(
    "text",
    [
        '{"events": [{"id": 1, "timestamp": 1.5, "type": "PassStateEntered"}], "nextToken": "t"}',
        '{"a": NaN, "b": Infinity}',  # orjson refuses these; the standard library takes them
        '{"a": "\\ud800"}',  # a lone surrogate
        '{"a": 123456789012345678901234567890}',  # past 64 bits
        '{"a": 18446744073709551615, "b": "12345678901234567890123"}',  # the largest orjson keeps
        '{"a": -9223372036854775808, "b": -9223372036854775809}',  # the smallest, and past it
        "[1,\n18446744073709551616, 2]",  # past 64 bits, after a line break
        " 123456789012345678901234",  # a long integer alone, after white space
        "123456789012345678901234",  # and at the very start
        '{"a": "id: 12345678901234567890123"}',  # long digits in a string: either reader is right
        '{"a": 1, "a": 2}',  # the last of a repeated key
        "[1e400, -0.0, 0.1]",
        '"caf\u00e9 \u2603"',
    ],
)
def test_the_fast_json_decoder_reads_what_the_standard_library_reads(text: str) -> None:
    expected = json.loads(text)
    for data in (text, text.encode()):
        got = loads(data)
        assert json.dumps(got) == json.dumps(expected)  # NaN compares unequal to itself


def test_answers_as_aws_sends_them_are_read_by_orjson_and_long_integers_by_the_standard_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CloudWatch Logs' event ids are 56 digits in a string: an answer holding them is orjson's
    to read (the standard library takes four times as long over a 1 MB answer); a number past 64
    bits anywhere is the standard library's."""
    from exporter.history import events

    read_slowly: list[object] = []

    class Counting:
        @staticmethod
        def loads(data: str | bytes) -> Any:
            read_slowly.append(data)
            return json.loads(data)

    monkeypatch.setattr(events, "json", Counting)
    messages = [
        m
        for h in list(recorded_histories())[:20]
        for m in as_log_messages(h.identity.execution_arn, h.events)
    ]
    body = log_body(messages, "f/31132629323784151764587387538205132201699397759403884544")
    assert b'"eventId": "380000000000000000000' in body
    assert loads(body)["events"][0]["eventId"] == "38000000000000000000000000000000000000000000000000000"
    for message in messages:
        loads(json.dumps(message))
    assert read_slowly == []
    assert type(loads('{"a": 18446744073709551616}')["a"]) is int
    assert type(loads('{"a": -9223372036854775809}')["a"]) is int
    assert type(loads("[0, 123456789012345678901]")[1]) is int
    assert len(read_slowly) == 3


@pytest.mark.parametrize("text", ["", "{", "{'a': 1}", "[1,]", "\xff"])
def test_the_fast_json_decoder_refuses_what_is_not_json_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        loads(text)


def test_the_fast_json_decoder_takes_text_with_a_lone_surrogate_as_the_standard_library_does() -> None:
    text = '{"a": "\ud800"}'  # the character itself, not its escape: no UTF-8 for it
    assert loads(text) == json.loads(text) == {"a": "\ud800"}


# ---------------------------------------------------------------- FilterLogEvents


def botocore_log_parse(body: bytes) -> dict[str, Any]:
    parsed = botocore_parse(body, "logs", "FilterLogEvents")
    parsed.pop("searchedLogStreams", None)  # not read by the exporter; the fast parser leaves it
    return parsed


def log_body(messages: list[dict[str, Any]], token: str | None = None) -> bytes:
    """As CloudWatch Logs sends it, with a member the model does not know and one that is null."""
    events = [
        {"logStreamName": f"states/run/{position % 3:04d}", "timestamp": 1_700_000_000_000 + position,
         "message": json.dumps(message), "ingestionTime": 1_700_000_000_500 + position,
         "eventId": f"{38000000000000000000000000000000000000000000000000000 + position}",
         **({"somethingNew": [1]} if position % 2 else {"logStreamName": None})}
        for position, message in enumerate(messages)
    ]  # fmt: skip
    return json.dumps({"events": events, "searchedLogStreams": [{"logStreamName": "x"}],
                       **({"nextToken": token} if token else {})}).encode()  # fmt: skip


def test_every_recorded_history_as_log_messages_parses_as_botocore_has_it() -> None:
    bodies = [
        log_body(as_log_messages(h.identity.execution_arn, h.events), "more") for h in recorded_histories()
    ]
    bodies += [log_body(case.messages) for case in recorded_log_cases()]
    assert len(bodies) > 600
    for body in bodies:
        reference, fast = botocore_log_parse(body), parse_log_events_body(body)
        assert fast == reference
        assert all("somethingNew" not in e and None not in e.values() for e in fast["events"])


def test_log_answers_that_are_cut_short_or_not_objects_are_as_botocore_has_them() -> None:
    body = log_body([{"id": "1"}])
    cut = body[: len(body) // 2]
    assert parse_log_events_body(cut) == botocore_log_parse(cut) == {}
    assert parse_log_events_body(b"") == botocore_log_parse(b"") == {}
    null = b'{"events": null, "nextToken": "t"}'
    assert parse_log_events_body(null) == botocore_log_parse(null) == {"nextToken": "t"}
    assert parse_history_body(null) == botocore_parse(null) == {"nextToken": "t"}
    with pytest.raises(ValueError, match="log event at position 0 of the answer is not an object"):
        parse_log_events_body(b'{"events": [7]}')
    with pytest.raises(AttributeError):  # botocore fails on it too
        botocore_log_parse(b'{"events": [7]}')
    with pytest.raises(ValueError, match=r"^events is not a list$"):
        parse_log_events_body(b'{"events": 7}')


def test_log_answers_are_read_without_the_long_integer_check_and_as_botocore_has_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A log answer is read by orjson without `loads`' check for long integers (as costly as the
    parse over a megabyte); a kept number orjson made a float (an integer past 64 bits) sends it
    to the exact reading. Either way it is what botocore makes of it."""
    from exporter.history import events

    checked: list[bytes] = []
    check = events._may_hold_long_integer

    def counting(raw: bytes) -> bool:
        checked.append(raw)
        return check(raw)

    monkeypatch.setattr(events, "_may_hold_long_integer", counting)
    usual = log_body(
        [{"id": str(n)} for n in range(5)], "f/31132629323784151764587387538205132201699397759403884544"
    )
    assert parse_log_events_body(usual) == botocore_log_parse(usual)
    assert checked == []
    message = json.dumps({"id": "1"})
    for events_ in (
        [{"timestamp": 18446744073709551616, "message": message, "eventId": "1"}],  # past 64 bits
        [{"timestamp": 1, "ingestionTime": -9223372036854775809, "message": message, "eventId": "1"}],
        [{"timestamp": 1.5, "message": message, "eventId": "1"}],  # a float: kept as one
        [{"timestamp": 1, "message": message, "somethingNew": 123456789012345678901234}],  # dropped
        [{"timestamp": 1, "message": message, "somethingNew": float("nan")}],  # orjson refuses NaN
    ):
        body = json.dumps({"events": events_, "nextToken": "t"}).encode()
        parsed = parse_log_events_body(body)
        assert parsed == botocore_log_parse(body)
        kinds = [{k: type(v) for k, v in e.items()} for e in parsed["events"]]
        assert kinds == [{k: type(v) for k, v in e.items()} for e in botocore_log_parse(body)["events"]]
    assert len(checked) == 4  # by `loads`: the long integers and the float again, NaN (orjson refuses it)


async def test_the_clients_parse_both_answers_on_the_fast_path_and_others_with_botocore() -> None:
    from exporter.aws.source import response_parsers

    parser = response_parsers().create_parser("json")

    async def parse(service: str, operation: str, body: bytes) -> dict[str, Any]:
        response = {"body": body, "headers": {}, "status_code": 200}
        return dict(await parser.parse(response, output_shape(service, operation)))

    history = await parse("stepfunctions", "GetExecutionHistory", aws_body([
        {"id": 1, "type": "ExecutionStarted", "timestamp": 1.0, "previousEventId": 0}]))  # fmt: skip
    assert type(history["events"][0]["timestamp"]) is float  # botocore's walk makes a datetime
    logs = await parse("logs", "FilterLogEvents", log_body([{"id": "1"}]))
    assert "searchedLogStreams" not in logs and len(logs["events"]) == 1  # botocore's walk keeps it
    described = await parse("stepfunctions", "DescribeExecution", b'{"startDate": 1.5, "status": "RUNNING"}')
    assert described["startDate"].timestamp() == 1.5  # botocore's walk: a datetime
