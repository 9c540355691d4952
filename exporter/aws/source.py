"""The one module that talks to AWS: Step Functions through aiobotocore, behind a narrow interface.

Responses become the project's own types at once; errors become the exceptions below, so the
rest of the exporter never sees botocore."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple, Protocol

from exporter.aws.ratelimit import RateLimiter
from exporter.emit.health import TargetHealth
from exporter.history.events import loads, loads_unchecked
from exporter.model import MAP_RUN_STATUSES, MapRunDescription

log = logging.getLogger(__name__)


class SourceError(Exception):
    """An API call that did not succeed; `operation` and `code` say which and why."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.operation = operation
        self.code = code


class Throttled(SourceError):
    """ThrottlingException: retry after slowing down."""


class Transient(SourceError):
    """A 5xx answer, a reset or a timeout: retry with backoff."""


class NotFound(SourceError):
    """ExecutionDoesNotExist, StateMachineDoesNotExist: stop tracking it."""


class InvalidToken(SourceError):
    """A pagination token AWS no longer accepts: start that read again."""


class Denied(SourceError):
    """AccessDenied, bad credentials, an invalid ARN or another client error: this one
    resource (or all, if the credentials are wrong) cannot be read; retrying soon won't help."""


class NotSupported(SourceError):
    """The operation does not apply to this resource (an EXPRESS state machine's history)."""


class Malformed(SourceError):
    """An answer that lacks what its operation must return, or that cannot be read: a body cut
    short, an unparsable field, an event without an id, a history read that stopped short of its
    cursor. Retried with back-off; never taken as an empty success."""


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """A state machine's `loggingConfiguration`: what it writes to CloudWatch Logs, and where."""

    level: str  # ALL, ERROR, FATAL (OFF is no LoggingConfig)
    include_data: bool
    log_group_arns: tuple[str, ...]  # without the trailing ":*"

    @staticmethod
    def parse(value: object) -> LoggingConfig | None:
        """From DescribeStateMachine's answer; None when the state machine does not log."""
        if not isinstance(value, dict) or value.get("level") in (None, "OFF"):
            return None
        groups = []
        for destination in value.get("destinations") or ():
            arn = ((destination or {}).get("cloudWatchLogsLogGroup") or {}).get("logGroupArn")
            if isinstance(arn, str) and arn.startswith("arn:") and ":log-group:" in arn:
                groups.append(arn.removesuffix(":*"))
        if not groups:
            return None
        return LoggingConfig(str(value["level"]), bool(value.get("includeExecutionData")), tuple(groups))


@dataclass(frozen=True, slots=True)
class StateMachine:
    arn: str
    name: str
    type: str  # STANDARD or EXPRESS
    definition: dict[str, Any] | None = None
    tracing: bool = False
    logging: LoggingConfig | None = None


@dataclass(frozen=True, slots=True)
class ExecutionSummary:
    arn: str
    state_machine_arn: str
    name: str
    status: str
    start_date: dt.datetime
    stop_date: dt.datetime | None = None
    redrive_count: int = 0


@dataclass(frozen=True, slots=True)
class HistoryPage:
    events: list[dict[str, Any]]
    next_token: str | None


class LogRecord(NamedTuple):
    """One CloudWatch Logs event as `FilterLogEvents` gives it (a tuple: thousands an answer)."""

    event_id: str
    timestamp_ms: int
    stream: str
    message: str


class StepFunctionsApi(Protocol):
    """What the exporter needs from Step Functions."""

    async def list_state_machines(
        self, next_token: str | None = None
    ) -> tuple[list[StateMachine], str | None]: ...

    async def describe_state_machine(self, arn: str) -> StateMachine: ...

    async def list_tags(self, arn: str) -> dict[str, str]: ...

    async def list_executions(
        self,
        state_machine_arn: str,
        status: str | None = None,
        max_results: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[ExecutionSummary], str | None]: ...

    async def describe_execution(self, arn: str) -> dict[str, Any]: ...

    async def list_map_run_executions(
        self,
        map_run_arn: str,
        status: str | None = None,
        max_results: int = 1000,
        next_token: str | None = None,
    ) -> tuple[list[ExecutionSummary], str | None]: ...

    async def describe_map_run(self, arn: str) -> MapRunDescription: ...

    async def history_page(
        self, arn: str, *, reverse: bool, max_results: int, next_token: str | None, include_data: bool
    ) -> HistoryPage: ...


class CloudWatchLogsApi(Protocol):
    """What the exporter needs from CloudWatch Logs."""

    async def filter_log_events(
        self, group_arn: str, start_ms: int, end_ms: int, next_token: str | None = None,
        pattern: str | None = None,
    ) -> tuple[list[LogRecord], str | None]: ...  # fmt: skip


_NOT_FOUND = {
    "ExecutionDoesNotExist",
    "StateMachineDoesNotExist",
    "ResourceNotFound",
    "ResourceNotFoundException",
}
_THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}


# The raw body of the last GetExecutionHistory answer in this task, kept (by reference) by a
# botocore hook so that an answer botocore cannot parse can be diagnosed: which event, what.
_history_body: ContextVar[bytes | None] = ContextVar("history_body", default=None)


def _keep_body(response_dict: dict[str, Any], **_: Any) -> None:
    _history_body.set(response_dict.get("body"))


def diagnose_history(body: bytes | None) -> str | None:
    """What is wrong with a GetExecutionHistory answer that could not be parsed: the first event
    whose id, type or timestamp is not what the API model says, by id or position."""
    try:
        events = json.loads(body or b"")["events"]
    except (ValueError, KeyError, TypeError):
        return None
    return _event_problem(events if isinstance(events, list) else [])


def _event_problem(events: list[Any]) -> str | None:
    for position, event in enumerate(events):
        if not isinstance(event, dict):
            return f"event at position {position} of the answer is not an object"
        event_id = event.get("id")
        where = f"event {event_id}" if isinstance(event_id, int) else f"event at position {position}"
        if not isinstance(event_id, int) or isinstance(event_id, bool):
            return f"{where} of the answer has no integer id"
        stamp = event.get("timestamp")
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            return f"{where}: timestamp {str(stamp)[:40]!r} is not a time"
        if not isinstance(event.get("type"), str):
            return f"{where} has no type"
    return None


@cache
def _event_members(service: str, operation: str) -> frozenset[str]:
    """The members the service model knows of the items of an answer's `events`."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    events = model.operation_model(operation).output_shape.members["events"]
    return frozenset(events.member.members)


def _answer(body: bytes, read: Callable[[bytes], Any] = loads) -> tuple[dict[str, Any], list[Any] | None]:
    """An answer's JSON object and its `events` (None: none), as botocore reads them (a body that
    is not JSON holds nothing: then IncompleteResponse). ValueError names what is wrong."""
    try:
        data = read(body or b"{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    events = data.get("events")
    if events is not None and not isinstance(events, list):
        raise ValueError("events is not a list")
    return data, events


def _parsed(data: dict[str, Any], events: list[dict[str, Any]] | None) -> dict[str, Any]:
    parsed: dict[str, Any] = {} if events is None else {"events": events}
    token = data.get("nextToken")
    if isinstance(token, str):
        parsed["nextToken"] = token
    return parsed


def parse_history_body(body: bytes) -> dict[str, Any]:
    """A GetExecutionHistory answer's body as botocore's shape walk would give it, at a fraction
    of the cost: `loads` (orjson), timestamps checked to be numbers (they stay epoch seconds, which
    `timestamp_ns` reads exactly as botocore's datetimes), members the model does not know
    dropped. ValueError names what is wrong."""
    data, events = _answer(body)
    if events is None:
        return _parsed(data, None)
    for position, event in enumerate(events):  # what botocore's walk refuses; ids and types
        if not isinstance(event, dict):  # are left to exporter.history.events, as before
            raise ValueError(f"event at position {position} of the answer is not an object")
        stamp = event.get("timestamp")
        if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int | float)):
            raise ValueError(
                _event_problem(events)
                or f"event at position {position}: timestamp {str(stamp)[:40]!r} is not a time"
            )
    known = _event_members("stepfunctions", "GetExecutionHistory")
    return _parsed(
        data, [e if known.issuperset(e) else {k: v for k, v in e.items() if k in known} for e in events]
    )


def parse_log_events_body(body: bytes) -> dict[str, Any]:
    """A FilterLogEvents answer's body as botocore's shape walk would give it (its events and
    nextToken; `searchedLogStreams`, which the exporter does not read, is left out): orjson,
    members the model does not know and members that are null dropped. ValueError names what
    is wrong.

    The numbers kept are each event's `timestamp` and `ingestionTime`: when orjson read one as a
    float (it may be an integer past 64 bits, which botocore's reading keeps exact), the answer is
    read again by `loads`. Reading with `loads` first would check the whole megabyte for long
    integers, and find the event ids' 56 digits in every answer."""
    parsed = _log_events(*_answer(body, loads_unchecked), quick=True)
    if parsed is None:
        parsed = _log_events(*_answer(body), quick=False)
        assert parsed is not None  # (a reading that is not quick is taken as it is)
    return parsed


def _log_events(data: dict[str, Any], events: list[Any] | None, quick: bool) -> dict[str, Any] | None:
    """`parse_log_events_body` of a reading; None when the reading is `quick` and a number kept
    is a float."""
    if events is None:
        return _parsed(data, None)
    known = _event_members("logs", "FilterLogEvents")
    kept = []
    for position, event in enumerate(events):
        if not isinstance(event, dict):  # botocore's walk fails on it too
            raise ValueError(f"log event at position {position} of the answer is not an object")
        if quick and (type(event.get("timestamp")) is float or type(event.get("ingestionTime")) is float):
            return None
        if known.issuperset(event) and None not in event.values():
            kept.append(event)
        else:
            kept.append({k: v for k, v in event.items() if k in known and v is not None})
    return _parsed(data, kept)


@cache
def fast_parsers() -> dict[str, Callable[[bytes], dict[str, Any]]]:
    """The answers parsed by this module rather than by botocore's shape walk, by the name of
    their output shape in the service models."""
    import botocore.session

    session = botocore.session.get_session()

    def shape(service: str, operation: str) -> str:
        return str(session.get_service_model(service).operation_model(operation).output_shape.name)

    return {
        shape("stepfunctions", "GetExecutionHistory"): parse_history_body,
        shape("logs", "FilterLogEvents"): parse_log_events_body,
    }


def response_parsers() -> Any:
    """aiobotocore's response parsers, but for GetExecutionHistory answers `parse_history_body`
    and for FilterLogEvents ones `parse_log_events_body` (botocore's shape walk and datetime
    conversion were about 40% of the exporter's CPU on the history path, 20% on the log path); the
    other operations, and every error answer, are parsed by botocore as before."""
    from aiobotocore.parsers import AioJSONParser, AioResponseParserFactory

    class FastJSONParser(AioJSONParser):  # type: ignore[misc]
        async def _do_parse(self, response: dict[str, Any], shape: Any) -> Any:
            fast = fast_parsers().get(shape.name) if shape is not None else None
            if fast is not None:
                parsed = fast(response["body"])
                self._inject_response_metadata(parsed, response["headers"])
                return parsed
            return await super()._do_parse(response, shape)

    class Parsers(AioResponseParserFactory):  # type: ignore[misc]
        def create_parser(self, protocol_name: str) -> Any:
            if protocol_name == "json":
                return FastJSONParser(**self._defaults)
            return super().create_parser(protocol_name)

    return Parsers()


def _classify(operation: str, exc: Exception) -> SourceError:
    from botocore.exceptions import ClientError

    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _THROTTLED or status == 429:
            return Throttled(operation, code, message)
        if code in _NOT_FOUND:
            return NotFound(operation, code, message)
        if code == "InvalidToken":
            return InvalidToken(operation, code, message)
        if code == "StateMachineTypeNotSupported":
            return NotSupported(operation, code, message)
        if status >= 500 or code in {"InternalFailure", "ServiceUnavailable", "InternalServerError"}:
            return Transient(operation, code, message)
        return Denied(operation, code, message)
    if isinstance(exc, ValueError):  # botocore could not parse the answer (a garbage timestamp)
        detail = diagnose_history(_history_body.get()) if operation == "GetExecutionHistory" else None
        return Malformed(operation, "UnparsableResponse", detail or str(exc)[:300] or type(exc).__name__)
    return Transient(operation, type(exc).__name__, str(exc) or type(exc).__name__)


@cache
def required_members(operation: str, service: str = "stepfunctions") -> tuple[str, ...]:
    """What AWS's API model says an answer to `operation` always holds (botocore's copy of it)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).output_shape
    return tuple(shape.required_members) if shape is not None else ()


def _check_complete(operation: str, response: dict[str, Any], service: str = "stepfunctions") -> None:
    missing = [member for member in required_members(operation, service) if member not in response]
    if missing:
        # botocore turns a 200 answer whose body is not JSON (cut short) into {"message": body}
        raise Malformed(operation, "IncompleteResponse", f"the answer lacks {', '.join(missing)}")


def _is_network(exc: Exception) -> bool:
    """No answer from AWS at all: connection refused or reset, DNS, timeouts."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    return isinstance(exc, HTTPClientError | BotoConnectionError | OSError | TimeoutError)


_OUTCOME = {Throttled: "throttled", Transient: "server_error", NotFound: "client_error",
            InvalidToken: "client_error", Denied: "client_error", NotSupported: "client_error",
            Malformed: "invalid_response"}  # fmt: skip


class _AwsService:
    """Calls of one AWS service over an aiobotocore client, paced by a RateLimiter, counted in
    TargetHealth, their errors turned into SourceErrors."""

    service = ""

    def __init__(self, client: Any, limiter: RateLimiter, health: TargetHealth) -> None:
        self._client = client
        self._limiter = limiter
        self._health = health

    async def _call(self, operation: str, method: str, **params: Any) -> dict[str, Any]:
        await self._limiter.acquire(operation)
        _history_body.set(None)
        try:
            response: dict[str, Any] = await getattr(self._client, method)(**params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = _classify(operation, exc)
            outcome = "network_error" if _is_network(exc) else _OUTCOME[type(error)]
            self._health.api_calls.labels(operation, outcome).inc()
            if isinstance(error, Throttled):
                self._health.api_throttles.labels(operation).inc()
                self._limiter.throttled(operation)
                self._health.api_rate.labels(operation).set(self._limiter.rate(operation))
            raise error from exc
        try:
            _check_complete(operation, response, self.service)
        except Malformed:
            self._health.api_calls.labels(operation, "invalid_response").inc()
            raise
        self._health.api_calls.labels(operation, "success").inc()
        self._health.api_succeeded(time.time())
        return response


class AwsStepFunctions(_AwsService):
    """StepFunctionsApi over an aiobotocore client."""

    service = "stepfunctions"

    async def list_state_machines(
        self, next_token: str | None = None
    ) -> tuple[list[StateMachine], str | None]:
        params: dict[str, Any] = {"maxResults": 1000}
        if next_token:
            params["nextToken"] = next_token
        response = await self._call("ListStateMachines", "list_state_machines", **params)
        with _items("ListStateMachines"):
            machines = [
                StateMachine(
                    arn=item["stateMachineArn"], name=item["name"], type=item.get("type", "STANDARD")
                )
                for item in response["stateMachines"]
            ]
        return machines, response.get("nextToken")

    async def describe_state_machine(self, arn: str) -> StateMachine:
        response = await self._call("DescribeStateMachine", "describe_state_machine", stateMachineArn=arn)
        try:
            definition = json.loads(response.get("definition") or "{}")
        except ValueError:
            definition = None
        if not isinstance(definition, dict):
            definition = None
        tracing = bool((response.get("tracingConfiguration") or {}).get("enabled"))
        return StateMachine(
            arn=response["stateMachineArn"], name=response["name"], type=response.get("type", "STANDARD"),
            definition=definition, tracing=tracing, logging=LoggingConfig.parse(response.get("loggingConfiguration")),
        )  # fmt: skip

    async def list_tags(self, arn: str) -> dict[str, str]:
        response = await self._call("ListTagsForResource", "list_tags_for_resource", resourceArn=arn)
        return {tag["key"]: tag["value"] for tag in response.get("tags", [])}

    async def list_executions(
        self,
        state_machine_arn: str,
        status: str | None = None,
        max_results: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[ExecutionSummary], str | None]:
        return await self._list_executions(
            {"stateMachineArn": state_machine_arn}, status, max_results, next_token, state_machine_arn
        )

    async def list_map_run_executions(
        self,
        map_run_arn: str,
        status: str | None = None,
        max_results: int = 1000,
        next_token: str | None = None,
    ) -> tuple[list[ExecutionSummary], str | None]:
        """A map run's child executions, newest first (they are listed under it, not under any
        state machine)."""
        return await self._list_executions({"mapRunArn": map_run_arn}, status, max_results, next_token, "")

    async def _list_executions(
        self, under: dict[str, Any], status: str | None, max_results: int, next_token: str | None,
        state_machine_arn: str,
    ) -> tuple[list[ExecutionSummary], str | None]:  # fmt: skip
        params: dict[str, Any] = {**under, "maxResults": max_results}
        if status:
            params["statusFilter"] = status
        if next_token:
            params["nextToken"] = next_token
        response = await self._call("ListExecutions", "list_executions", **params)
        with _items("ListExecutions"):
            executions = self._summaries(response["executions"], state_machine_arn)
        return executions, response.get("nextToken")

    async def describe_map_run(self, arn: str) -> MapRunDescription:
        response = await self._call("DescribeMapRun", "describe_map_run", mapRunArn=arn)
        with _items("DescribeMapRun"):
            counts = {
                key: {status: int(response[key].get(status) or 0) for status in MAP_RUN_STATUSES}
                for key in ("executionCounts", "itemCounts")
            }
            return MapRunDescription(
                arn=response["mapRunArn"], status=response["status"], executions=counts["executionCounts"],
                items=counts["itemCounts"], max_concurrency=int(response.get("maxConcurrency") or 0),
                tolerated_failure_percentage=float(response.get("toleratedFailurePercentage") or 0),
                tolerated_failure_count=int(response.get("toleratedFailureCount") or 0),
                start_date=_epoch(response.get("startDate")),
            )  # fmt: skip

    @staticmethod
    def _summaries(items: list[dict[str, Any]], state_machine_arn: str) -> list[ExecutionSummary]:
        return [
            ExecutionSummary(
                arn=item["executionArn"],
                state_machine_arn=item.get("stateMachineArn", state_machine_arn),
                name=item["name"],
                status=item["status"],
                start_date=item["startDate"],
                stop_date=item.get("stopDate"),
                redrive_count=int(item.get("redriveCount") or 0),
            )
            for item in items
        ]

    async def describe_execution(self, arn: str) -> dict[str, Any]:
        # Metadata only: the exporter reads the trace header, never the execution's input or output.
        return await self._call(
            "DescribeExecution", "describe_execution", executionArn=arn, includedData="METADATA_ONLY"
        )

    async def history_page(
        self, arn: str, *, reverse: bool, max_results: int, next_token: str | None, include_data: bool
    ) -> HistoryPage:
        params: dict[str, Any] = {
            "executionArn": arn, "reverseOrder": reverse, "maxResults": max_results,
            "includeExecutionData": include_data,
        }  # fmt: skip
        if next_token:
            params["nextToken"] = next_token
        response = await self._call("GetExecutionHistory", "get_execution_history", **params)
        events = response["events"]
        if not isinstance(events, list):
            raise Malformed("GetExecutionHistory", "IncompleteResponse", "events is not a list")
        length = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("content-length")
        if length and str(length).isdigit():
            self._health.history_bytes.inc(int(length))
        return HistoryPage(events, response.get("nextToken"))


class AwsCloudWatchLogs(_AwsService):
    """CloudWatchLogsApi over an aiobotocore client."""

    service = "logs"

    async def filter_log_events(
        self, group_arn: str, start_ms: int, end_ms: int, next_token: str | None = None,
        pattern: str | None = None,
    ) -> tuple[list[LogRecord], str | None]:  # fmt: skip
        """The events of a group with timestamps in [start_ms, end_ms] (and matching the filter
        `pattern`, if given), a page of them."""
        # By name: the group is in the account whose credentials read it (an ARN as
        # logGroupIdentifier is for reading across accounts, which the exporter does not do).
        name = group_arn.split(":log-group:", 1)[-1].removesuffix(":*")
        params: dict[str, Any] = {
            "logGroupName": name,
            "startTime": max(0, start_ms),
            "endTime": max(0, end_ms),
        }
        if next_token:
            params["nextToken"] = next_token
        if pattern:
            params["filterPattern"] = pattern
        response = await self._call("FilterLogEvents", "filter_log_events", **params)
        with _items("FilterLogEvents"):
            records = [
                LogRecord(
                    str(item["eventId"]),
                    int(item["timestamp"]),
                    str(item.get("logStreamName", "")),
                    str(item["message"]),
                )
                for item in response.get("events") or ()
            ]
        return records, response.get("nextToken")


def _epoch(value: object) -> float:
    """A timestamp botocore parsed (a datetime) as epoch seconds; 0 when absent."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


@contextmanager
def _items(operation: str) -> Iterator[None]:
    """A listed item without the fields the API model requires of it is a malformed answer."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as exc:
        raise Malformed(operation, "IncompleteResponse", f"an item lacks or mistypes {exc}") from None


def client_config(connect_timeout: float, read_timeout: float, max_connections: int) -> Any:
    """aiobotocore's client settings: botocore's own retries off (the exporter paces, counts and
    retries calls itself), the given timeouts and connection pool."""
    from aiobotocore.config import AioConfig

    return AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=connect_timeout, read_timeout=read_timeout, max_pool_connections=max_connections,
    )  # fmt: skip


@asynccontextmanager
async def aws_step_functions(
    region: str | None, endpoint_url: str | None, limiter: RateLimiter, health: TargetHealth,
    *, connect_timeout: float = 5, read_timeout: float = 20, max_connections: int = 32, session: Any = None,
) -> AsyncIterator[AwsStepFunctions]:  # fmt: skip
    """An AwsStepFunctions with its own aiobotocore client. The standard AWS variables apply
    (credentials chain, AWS_REGION, AWS_ENDPOINT_URL_SFN, AWS_ENDPOINT_URL). botocore's own
    retries are off: the exporter paces, counts and retries calls itself."""
    from aiobotocore.session import get_session

    config = client_config(connect_timeout, read_timeout, max_connections)
    session = session or get_session()
    session.register_component("response_parser_factory", response_parsers())
    async with session.create_client(
        "stepfunctions", region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        client.meta.events.register("before-parse.sfn.GetExecutionHistory", _keep_body)
        yield AwsStepFunctions(client, limiter, health)


@asynccontextmanager
async def aws_cloudwatch_logs(
    region: str | None, endpoint_url: str | None, limiter: RateLimiter, health: TargetHealth,
    *, connect_timeout: float = 5, read_timeout: float = 20, session: Any = None,
) -> AsyncIterator[AwsCloudWatchLogs]:  # fmt: skip
    """An AwsCloudWatchLogs with its own aiobotocore client (AWS_ENDPOINT_URL_CLOUDWATCH_LOGS or
    AWS_ENDPOINT_URL apply, or `endpoint_url`)."""
    from aiobotocore.session import get_session

    config = client_config(connect_timeout, read_timeout, max_connections=8)
    async with (session or get_session()).create_client(
        "logs", region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        yield AwsCloudWatchLogs(client, limiter, health)


async def caller_account(session: Any, region: str, config: Any, endpoint_url: str | None) -> str:
    """The account of the session's credentials (sts:GetCallerIdentity, which needs no permission)."""
    async with session.create_client(
        "sts", region_name=region, config=config, endpoint_url=endpoint_url
    ) as sts:
        identity = await sts.get_caller_identity()
    return str(identity["Account"])
