"""A Step Functions simulator for load, fault and freshness tests and benchmarks.

It speaks the AWS JSON 1.0 protocol (`X-Amz-Target: AWSStepFunctions.*`) over HTTP, so the
exporter's unchanged aiobotocore client talks to it through `AWS_ENDPOINT_URL_SFN`; and it also
offers the same operations in-process (`DirectClient`, shaped like a botocore client) for
benchmarks that run on a virtual clock. Executions replay templates (event lists with time
offsets): their histories grow as the clock passes each event's offset, and each event's
timestamp is the moment it appeared, which is the ground truth for lag. Every operation has a
token bucket with AWS's bucket and refill values, answering ThrottlingException like AWS; calls,
bytes and throttles are counted per operation; faults can be injected.

    python -m simulator --port 8765 --executions 100 --events 1000   # as a process
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import datetime as dt
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.config import DEFAULT_QUOTAS
from simulator.logs import Delivery, Logging, Logs
from simulator.serving import ThreadedServer

if TYPE_CHECKING:
    from aiohttp import web

    from simulator.workloads import DistributedMap

ACCOUNT = "123456789012"
REGION = "us-east-1"
TERMINAL = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED",
            "ExecutionTimedOut": "TIMED_OUT", "ExecutionAborted": "ABORTED"}  # fmt: skip
TOKEN_TTL_S = 24 * 3600
_DATA_KEYS = ("input", "inputDetails", "output", "outputDetails")


class SimError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


@dataclass
class Template:
    """An execution's future: its events (AWS-shaped, ids in order, no timestamps) and the
    seconds after the start at which each one appears."""

    name: str
    offsets: list[float]
    events: list[dict[str, Any]]
    _bodies: list[str] = field(default_factory=list, repr=False)
    _bodies_no_data: list[str] = field(default_factory=list, repr=False)

    def body(self, index: int, include_data: bool) -> str:
        """The event's JSON without its timestamp, as `"id":…` members to splice into an object."""
        if not self._bodies:
            for event in self.events:
                self._bodies.append(json.dumps(event)[1:-1])
                stripped = {
                    k: ({dk: dv for dk, dv in v.items() if dk not in _DATA_KEYS} if k.endswith("EventDetails") else v)
                    for k, v in event.items()
                }  # fmt: skip
                self._bodies_no_data.append(json.dumps(stripped)[1:-1])
        return (self._bodies if include_data else self._bodies_no_data)[index]


@dataclass
class SimMachine:
    arn: str
    name: str
    type: str
    definition: dict[str, Any]
    created: float
    tags: dict[str, str] = field(default_factory=dict)
    logging: Logging | None = None
    tracing: bool = False  # X-Ray on: its executions answer DescribeExecution with a traceHeader


@dataclass(eq=False)
class SimExecution:
    arn: str
    machine: SimMachine
    name: str
    start: float
    template: Template
    deleted: bool = False

    def visible(self, now: float) -> int:
        return bisect.bisect_right(self.template.offsets, now - self.start)

    def history(self) -> list[dict[str, Any]]:
        """The whole history as it will be once every event has appeared."""
        return [
            {**event, "timestamp": self.appear_time(i + 1)} for i, event in enumerate(self.template.events)
        ]

    def appear_time(self, event_id: int) -> float:
        """The event's timestamp: when it appears, to the millisecond (as AWS gives it)."""
        return round(self.start + self.template.offsets[event_id - 1], 3)

    def status(self, now: float) -> str:
        """RUNNING unless the newest visible event is terminal (a redrive makes it RUNNING again)."""
        visible = self.visible(now)
        if visible == 0:
            return "RUNNING"
        return TERMINAL.get(self.template.events[visible - 1]["type"], "RUNNING")

    def stop_time(self, now: float) -> float:
        return self.start + self.template.offsets[self.visible(now) - 1]


@dataclass(eq=False)
class SimMapRun:
    """A Distributed Map's map run: started by its parent's MapRunStarted event, its children
    listed under it (not under any state machine), done with the parent's MapRun end event."""

    arn: str
    parent: SimExecution
    children: list[SimExecution]
    spec: DistributedMap
    stopped: float = 0.0  # when the parent's MapRun end event appeared (once it has)

    def started(self, now: float) -> bool:
        return self.parent.visible(now) >= self._event("MapRunStarted")

    def _event(self, prefix: str) -> int:
        """The id of the parent's first event whose type starts with `prefix`."""
        return next(i + 1 for i, e in enumerate(self.parent.template.events) if e["type"].startswith(prefix))

    def status(self, now: float) -> str:
        visible = self.parent.visible(now)
        for i, event in enumerate(self.parent.template.events[:visible]):
            if event["type"] in ("MapRunSucceeded", "MapRunFailed", "MapRunAborted"):
                self.stopped = self.parent.appear_time(i + 1)
                return str(event["type"]).removeprefix("MapRun").upper()
        return "RUNNING"

    def counts(self, now: float) -> dict[str, int]:
        """Children by status, as `DescribeMapRun`'s executionCounts (one item a child)."""
        counts = dict.fromkeys(("pending", "running", "succeeded", "failed", "timedOut", "aborted"), 0)
        key = {"RUNNING": "running", "SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "timedOut",
               "ABORTED": "aborted"}  # fmt: skip
        for child in self.children:
            counts["pending" if child.start > now else key[child.status(now)]] += 1
        counts.update(total=len(self.children), resultsWritten=0, failuresNotRedrivable=0, pendingRedrive=0)
        return counts


@dataclass
class Bucket:
    capacity: float
    refill: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.refill)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Faults:
    """What to break. Rates are probabilities per call; `only` limits them to some operations."""

    server_error_rate: float = 0.0
    reset_rate: float = 0.0
    slow_seconds: float = 0.0
    throttle_until: float = 0.0  # a throttling storm: every call throttled until then
    expire_tokens: bool = False
    only: set[str] | None = None
    # HTTP face: operation -> answers left to send as a 200 whose body is cut in half
    cut_short: dict[str, int] = field(default_factory=dict)
    cut_short_paged_only: bool = False  # only answers to calls that carry a nextToken
    # execution ARN -> (event id, "timestamp" or "no_id"): that event is served corrupted
    corrupt: dict[str, tuple[int, str]] = field(default_factory=dict)
    # execution ARN -> calls left to answer ExecutionDoesNotExist (AWS being inconsistent)
    vanish: dict[str, int] = field(default_factory=dict)

    def cut(self, operation: str, params: dict[str, Any]) -> bool:
        """Whether this answer is to be cut short (and count it)."""
        paged_only = self.cut_short_paged_only and operation == "GetExecutionHistory"
        if self.cut_short.get(operation, 0) <= 0 or (paged_only and not params.get("nextToken")):
            return False
        self.cut_short[operation] -= 1
        return True


def trace_header(execution_arn: str) -> str:
    """The X-Ray trace header of an execution of a state machine with tracing on (made from its
    ARN, so runs repeat)."""
    import hashlib

    digest = hashlib.sha256(execution_arn.encode()).hexdigest()
    return f"Root=1-{digest[:8]}-{digest[8:32]};Parent={digest[32:48]};Sampled=1"


def _uuid(machine: str, name: str) -> str:
    """The UUID in an EXPRESS execution's ARN (made from its names, so runs repeat)."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{machine}/{name}"))


def _ts(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


class Simulator:
    """The state of a simulated account and region."""

    def __init__(self, clock: Callable[[], float] = time.time, quotas: dict[str, tuple[float, float]] | None = None,
                 seed: int = 1, account: str = ACCOUNT, region: str = REGION) -> None:  # fmt: skip
        self.clock = clock
        self.account, self.region = account, region
        self.machines: dict[str, SimMachine] = {}
        self.executions: dict[str, SimExecution] = {}
        self._by_machine: dict[str, list[SimExecution]] = {}
        quotas = {**DEFAULT_QUOTAS, "DescribeStateMachineForExecution": (200, 1), "ListMapRuns": (100, 1),
                  **(quotas or {})}  # fmt: skip
        now = clock()
        self.buckets = {op: Bucket(cap, rate, cap, now) for op, (cap, rate) in quotas.items()}
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.faults = Faults()
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.logs = Logs(Delivery(), seed)
        self.map_runs: dict[str, SimMapRun] = {}

    # ------------------------------------------------------------------ set-up

    def add_machine(self, name: str, definition: dict[str, Any], type_: str = "STANDARD",
                    tags: dict[str, str] | None = None, logging: Logging | None = None) -> SimMachine:  # fmt: skip
        """A state machine; with `logging`, its executions write to that log group."""
        arn = f"arn:aws:states:{self.region}:{self.account}:stateMachine:{name}"
        machine = SimMachine(arn, name, type_, definition, self.clock(), tags or {}, logging)
        if logging is not None:
            self.logs.group(logging.group)
        self.machines[arn] = machine
        self._by_machine[arn] = []
        return machine

    def start(
        self, machine: SimMachine, template: Template, name: str, start: float | None = None
    ) -> SimExecution:
        if machine.type == "EXPRESS":
            arn = f"arn:aws:states:{self.region}:{self.account}:express:{machine.name}:{name}:{_uuid(machine.name, name)}"
        else:
            arn = f"arn:aws:states:{self.region}:{self.account}:execution:{machine.name}:{name}"
        execution = SimExecution(arn, machine, name, self.clock() if start is None else start, template)
        self.executions[arn] = execution
        self._by_machine[machine.arn].append(execution)
        if machine.logging is not None:
            with self.lock:
                self.logs.write(machine.logging, arn, [
                    (event, execution.appear_time(i + 1)) for i, event in enumerate(template.events)
                ])  # fmt: skip
        return execution

    def start_map_run(
        self, machine: SimMachine, spec: DistributedMap, name: str, start: float | None = None,
        child_type: str = "STANDARD",
    ) -> SimMapRun:  # fmt: skip
        """A parent execution of `machine` running `spec`'s Distributed Map, and its children
        (of a state machine named `PARENT/LABEL`, which no listing of state machines shows).
        EXPRESS children (`child_type`) have EXPRESS ARNs, no history, and write their log
        messages to their parent's log group, under the parent's logging configuration."""
        import uuid

        label = spec.label
        run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{machine.name}/{name}/{label}")
        arn = f"arn:aws:states:{self.region}:{self.account}:mapRun:{machine.name}/{label}:{run_id}"
        events = [
            {**e, "mapRunStartedEventDetails": {"mapRunArn": arn}} if e["type"] == "MapRunStarted" else e
            for e in spec.parent.events
        ]
        parent = self.start(machine, Template(spec.parent.name, spec.parent.offsets, events), name, start)
        child_machine = SimMachine(
            f"{machine.arn}/{label}", f"{machine.name}/{label}", child_type, {}, self.clock()
        )
        self._by_machine.setdefault(child_machine.arn, [])
        children = []
        for index, (template, offset) in enumerate(zip(spec.children, spec.child_starts, strict=True)):
            child_name = str(uuid.uuid5(run_id, str(index)))
            if child_type == "EXPRESS":
                child_arn = (
                    f"arn:aws:states:{self.region}:{self.account}:express:{machine.name}/{label}:{child_name}:"
                    f"{_uuid(child_machine.name, child_name)}"
                )
            else:
                child_arn = f"arn:aws:states:{self.region}:{self.account}:execution:{machine.name}/{label}:{child_name}"
            child = SimExecution(child_arn, child_machine, child_name, parent.start + offset, template)
            self.executions[child_arn] = child
            children.append(child)
            if child_type == "EXPRESS" and machine.logging is not None:  # they log where their parent does
                with self.lock:
                    self.logs.write(machine.logging, child_arn, [
                        (event, child.appear_time(i + 1)) for i, event in enumerate(template.events)
                    ])  # fmt: skip
        children.sort(key=lambda c: (c.start, c.arn), reverse=True)  # newest first, as listed
        run = self.map_runs[arn] = SimMapRun(arn, parent, children, spec)
        return run

    def delete_execution(self, arn: str) -> None:
        self.executions[arn].deleted = True

    # ------------------------------------------------------------------ the API

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any] | str:
        """One API call: a dict (or a JSON string, for histories) or SimError."""
        now = self.clock()
        with self.lock:
            self.calls[operation] += 1
            faults = self.faults
            applies = faults.only is None or operation in faults.only
            if (applies and now < faults.throttle_until) or not self.buckets.get(
                operation, Bucket(1, 1, 1, now)
            ).take(now):
                self.throttled[operation] += 1
                raise SimError("ThrottlingException", "Rate exceeded")
            if applies and faults.server_error_rate and self.random.random() < faults.server_error_rate:
                raise SimError("InternalFailure", "injected", 500)
            handler = getattr(self, f"_{operation}", None)
            if handler is None:
                raise SimError("UnknownOperationException", operation)
            result: dict[str, Any] | str = handler(params, now)
        return result

    def _arn(self, params: dict[str, Any], key: str) -> str:
        arn = params.get(key)
        if not isinstance(arn, str) or not arn.startswith("arn:aws:states:"):
            raise SimError("InvalidArn", f"Invalid Arn: '{arn}'")
        return arn

    def _execution(self, params: dict[str, Any]) -> SimExecution:
        arn = self._arn(params, "executionArn")
        execution = self.executions.get(arn)
        if self.faults.vanish.get(arn, 0) > 0:
            self.faults.vanish[arn] -= 1
            execution = None
        if execution is None or execution.deleted:
            raise SimError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        if execution.machine.type == "EXPRESS":  # their only record is in CloudWatch Logs
            raise SimError(
                "InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: express' ('{arn}')"
            )
        return execution

    def _machine(self, params: dict[str, Any], key: str = "stateMachineArn") -> SimMachine:
        arn = self._arn(params, key)
        machine = self.machines.get(arn)
        if machine is None:
            raise SimError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return machine

    def _ListStateMachines(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        items = sorted(self.machines.values(), key=lambda m: m.arn)
        start = int(params.get("nextToken") or 0)
        size = int(params.get("maxResults") or 100)
        page = items[start : start + size]
        result: dict[str, Any] = {"stateMachines": [
            {"stateMachineArn": m.arn, "name": m.name, "type": m.type, "creationDate": m.created} for m in page
        ]}  # fmt: skip
        if start + size < len(items):
            result["nextToken"] = str(start + size)
        return result

    def _DescribeStateMachine(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        m = self._machine(params)
        return {"stateMachineArn": m.arn, "name": m.name, "status": "ACTIVE", "type": m.type,
                "definition": json.dumps(m.definition), "roleArn": f"arn:aws:iam::{self.account}:role/sim",
                "creationDate": m.created, "tracingConfiguration": {"enabled": m.tracing},
                "loggingConfiguration": m.logging.describe(self.region, self.account) if m.logging else {"level": "OFF"}}  # fmt: skip

    def _ListTagsForResource(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        m = self._machine(params, "resourceArn")
        return {"tags": [{"key": k, "value": v} for k, v in m.tags.items()]}

    def _summary(self, e: SimExecution, now: float) -> dict[str, Any]:
        status = e.status(now)
        visible = e.visible(now)
        redrives = sum(1 for event in e.template.events[:visible] if event["type"] == "ExecutionRedriven")
        item = {"executionArn": e.arn, "stateMachineArn": e.machine.arn, "name": e.name, "status": status,
                "startDate": e.start, "redriveCount": redrives}  # fmt: skip
        if status != "RUNNING":
            item["stopDate"] = e.stop_time(now)
        return item

    def _map_run(self, params: dict[str, Any]) -> SimMapRun:
        arn = self._arn(params, "mapRunArn")
        run = self.map_runs.get(arn)
        if run is None or not run.started(self.clock()):
            raise SimError("ResourceNotFound", f"Resource not found: '{arn}'")
        return run

    def _ListExecutions(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        if ("mapRunArn" in params) == ("stateMachineArn" in params):
            raise SimError(
                "ValidationException", "Specify either a stateMachineArn or a mapRunArn, but not both"
            )
        size = int(params.get("maxResults") or 100)
        if not 1 <= size <= 1000:
            raise SimError("ValidationException", "maxResults must be between 1 and 1000")
        status = params.get("statusFilter")
        run = self._map_run(params) if "mapRunArn" in params else None
        if run is not None:
            started = [e for e in run.children if e.start <= now]  # newest first already
        else:
            machine = self._machine(params)
            if machine.type == "EXPRESS":
                raise SimError(
                    "StateMachineTypeNotSupported",
                    "This operation is not supported by this type of state machine",
                )
            started = [e for e in self._by_machine[machine.arn] if e.start <= now and not e.deleted]
            started.sort(key=lambda e: (e.start, e.arn), reverse=True)  # newest first
        if status:
            started = [e for e in started if e.status(now) == status]
        token = params.get("nextToken")
        if token:
            last_start, last_arn = json.loads(base64.b64decode(token))
            started = [e for e in started if (e.start, e.arn) < (last_start, last_arn)]
        page = started[:size]
        result: dict[str, Any] = {"executions": [self._summary(e, now) for e in page]}
        if run is not None:  # only listings by map run carry these
            for item in result["executions"]:
                item.update(mapRunArn=run.arn, itemCount=1)
        if len(started) > size:
            result["nextToken"] = base64.b64encode(
                json.dumps([page[-1].start, page[-1].arn]).encode()
            ).decode()
        return result

    def _DescribeExecution(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        e = self._execution(params)
        if e.start > now:
            raise SimError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{e.arn}'")
        summary = self._summary(e, now)
        if e.machine.tracing:
            summary["traceHeader"] = trace_header(e.arn)
        return summary

    def _DescribeMapRun(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        run = self._map_run(params)
        counts = run.counts(now)
        status = run.status(now)
        spec = run.spec
        result = {"mapRunArn": run.arn, "executionArn": run.parent.arn, "status": status,
                  "startDate": run.parent.appear_time(run._event("MapRunStarted")),
                  "maxConcurrency": spec.max_concurrency, "toleratedFailurePercentage": spec.tolerated_failure_percentage,
                  "toleratedFailureCount": spec.tolerated_failure_count, "itemCounts": dict(counts),
                  "executionCounts": counts, "redriveCount": 0}  # fmt: skip
        if status != "RUNNING":
            result["stopDate"] = run.stopped
        return result

    def _ListMapRuns(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        execution = self._execution(params)
        runs = [r for r in self.map_runs.values() if r.parent is execution and r.started(now)]
        return {"mapRuns": [
            {"executionArn": execution.arn, "mapRunArn": r.arn, "stateMachineArn": execution.machine.arn,
             "startDate": r.parent.appear_time(r._event("MapRunStarted")),
             **({"stopDate": r.stopped} if r.status(now) != "RUNNING" else {})}
            for r in runs
        ]}  # fmt: skip

    def _GetExecutionHistory(self, params: dict[str, Any], now: float) -> str:
        e = self._execution(params)
        size = int(params.get("maxResults") or 100)
        if not 1 <= size <= 1000:
            raise SimError("ValidationException", "maxResults must be between 1 and 1000")
        reverse = bool(params.get("reverseOrder"))
        include = params.get("includeExecutionData", True) is not False
        count = e.visible(now)
        token = params.get("nextToken")
        if token:
            try:
                arn, token_reverse, after, issued = json.loads(base64.b64decode(token))
            except ValueError:
                raise SimError("InvalidToken", "Invalid Token: undecodable") from None
            if (
                arn != e.arn
                or token_reverse != reverse
                or now - issued > TOKEN_TTL_S
                or self.faults.expire_tokens
            ):
                raise SimError("InvalidToken", "Invalid Token: expired or not for this request")
        else:
            after = count + 1 if reverse else 0
        # ids of this page, 1-based
        ids = (
            list(range(after - 1, max(0, after - 1 - size), -1))
            if reverse
            else list(range(after + 1, min(count, after + size) + 1))
        )
        parts = [f'{{"timestamp":{e.appear_time(i)!r},{e.template.body(i - 1, include)}}}' for i in ids]
        corrupt = self.faults.corrupt.get(e.arn)
        if corrupt is not None and corrupt[0] in ids:
            at = ids.index(corrupt[0])
            if corrupt[1] == "timestamp":
                parts[at] = parts[at].replace(f"{e.appear_time(corrupt[0])!r}", '"garbage"', 1)
            else:
                parts[at] = parts[at].replace(f'"id": {corrupt[0]}, ', "", 1)
        body = '{"events":[' + ",".join(parts) + "]"
        more = (ids and ids[-1] > 1) if reverse else (ids and ids[-1] < count)
        if more:
            token = base64.b64encode(json.dumps([e.arn, reverse, ids[-1], now]).encode()).decode()
            body += f',"nextToken":"{token}"'
        return body + "}"

    def _FilterLogEvents(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return self.logs.filter_log_events(params, now)

    # ------------------------------------------------------------------ ground truth

    def next_appearance(self, arn: str, after_id: int) -> float | None:
        """When event `after_id + 1` of an execution appears (None if there is none)."""
        e = self.executions[arn]
        if after_id >= len(e.template.events):
            return None
        return e.appear_time(after_id + 1)


# ---------------------------------------------------------------------- faces


class DirectClient:
    """The simulator in-process, shaped like an aiobotocore Step Functions client (async
    methods, ClientError on errors, datetimes), for the exporter's own AwsStepFunctions."""

    def __init__(self, simulator: Simulator) -> None:
        self.sim = simulator

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            result = self.sim.call(operation, params)
        except SimError as exc:
            raise ClientError({"Error": {"Code": exc.code, "Message": exc.message},
                               "ResponseMetadata": {"HTTPStatusCode": exc.status}}, operation) from None  # fmt: skip
        if isinstance(result, str):
            self.sim.bytes[operation] += len(result)
            return dict(json.loads(result))
        return result

    async def list_state_machines(self, **params: Any) -> dict[str, Any]:
        return self._call("ListStateMachines", params)

    async def describe_state_machine(self, **params: Any) -> dict[str, Any]:
        return self._call("DescribeStateMachine", params)

    async def list_tags_for_resource(self, **params: Any) -> dict[str, Any]:
        return self._call("ListTagsForResource", params)

    async def list_executions(self, **params: Any) -> dict[str, Any]:
        result = self._call("ListExecutions", params)
        for item in result["executions"]:
            item["startDate"] = _ts(item["startDate"])
            if "stopDate" in item:
                item["stopDate"] = _ts(item["stopDate"])
        return result

    async def describe_execution(self, **params: Any) -> dict[str, Any]:
        return self._call("DescribeExecution", params)

    async def describe_map_run(self, **params: Any) -> dict[str, Any]:
        result = self._call("DescribeMapRun", params)
        for key in ("startDate", "stopDate"):
            if key in result:
                result[key] = _ts(result[key])
        return result

    async def list_map_runs(self, **params: Any) -> dict[str, Any]:
        result = self._call("ListMapRuns", params)
        for item in result["mapRuns"]:
            for key in ("startDate", "stopDate"):
                if key in item:
                    item[key] = _ts(item[key])
        return result

    async def get_execution_history(self, **params: Any) -> dict[str, Any]:
        return self._call("GetExecutionHistory", params)


class DirectLogsClient(DirectClient):
    """The simulator's CloudWatch Logs in-process, shaped like an aiobotocore logs client."""

    async def filter_log_events(self, **params: Any) -> dict[str, Any]:
        return self._call("FilterLogEvents", params)


class SimulatorServer(ThreadedServer):
    """The simulator over HTTP (AWS JSON 1.0) on 127.0.0.1, served from its own thread.

    With `others`, it serves several accounts and regions: a call goes to the simulator of the
    region its signature names and of the account its access key belongs to (keys from its
    `AssumeRole` name the role's account; any other key is `simulator`'s account). It answers
    STS's `GetCallerIdentity` and `AssumeRole` (for the roles in `roles`) as well."""

    thread_name = "sfn-simulator"

    def __init__(
        self, simulator: Simulator, port: int = 0, others: list[Simulator] | None = None,
        roles: set[str] | None = None,
    ) -> None:  # fmt: skip
        self.sim = simulator
        self.sims = {(sim.account, sim.region): sim for sim in [simulator, *(others or [])]}
        self.roles = roles or set()
        self.sts_calls: Counter[str] = Counter()  # by account
        super().__init__(port)

    def app(self) -> Any:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            target = request.headers.get("X-Amz-Target", "")
            if not target:
                return self._sts(request, await request.post())
            sim = self._route(request)
            if sim is None:
                return web.Response(status=400, content_type="application/x-amz-json-1.0",
                                    text=json.dumps({"__type": "UnrecognizedClientException",
                                                     "message": "no such account or region"}))  # fmt: skip
            operation = target.rpartition(".")[2]
            params = json.loads(await request.read() or b"{}")
            faults = sim.faults
            applies = faults.only is None or operation in faults.only
            if applies and faults.slow_seconds:
                await asyncio.sleep(faults.slow_seconds)
            if applies and faults.reset_rate and sim.random.random() < faults.reset_rate:
                assert request.transport is not None
                request.transport.abort()  # a connection reset
                return web.Response(status=500)
            try:
                result = sim.call(operation, params)
            except SimError as exc:
                return web.Response(status=exc.status, content_type="application/x-amz-json-1.0",
                                    text=json.dumps({"__type": exc.code, "message": exc.message}))  # fmt: skip
            text = result if isinstance(result, str) else json.dumps(result)
            if applies and faults.cut(operation, params):
                text = text[: len(text) // 2]
            sim.bytes[operation] += len(text)
            return web.Response(text=text, content_type="application/x-amz-json-1.0")

        async def stats(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "calls": self.sim.calls,
                    "bytes": self.sim.bytes,
                    "throttled": self.sim.throttled,
                    "targets": {f"{a}/{r}": sim.calls for (a, r), sim in self.sims.items()},
                    "sts": self.sts_calls,
                }
            )

        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/", handle)
        app.router.add_get("/_sim/stats", stats)
        return app

    def _account(self, request: Any) -> str:
        """The account of the request's access key (`Credential=KEY/DATE/REGION/...`)."""
        key = request.headers.get("Authorization", "").partition("Credential=")[2].partition("/")[0]
        if key.startswith("ASIASIM") and key[7:19].isdigit():
            return str(key[7:19])
        return self.sim.account

    def _route(self, request: Any) -> Simulator | None:
        if len(self.sims) == 1:
            return self.sim
        credential = request.headers.get("Authorization", "").partition("Credential=")[2].split("/")
        region = credential[2] if len(credential) > 2 else self.sim.region
        return self.sims.get((self._account(request), region))

    def _sts(self, request: Any, form: Any) -> web.Response:
        """STS's query protocol: GetCallerIdentity, and AssumeRole of the known roles."""
        from aiohttp import web

        action = form.get("Action", "")
        account = self._account(request)
        self.sts_calls[account] += 1
        ns = "https://sts.amazonaws.com/doc/2011-06-15/"
        if action == "GetCallerIdentity":
            body = (f"<Arn>arn:aws:iam::{account}:user/sim</Arn><UserId>AIDASIM</UserId>"
                    f"<Account>{account}</Account>")  # fmt: skip
        elif action == "AssumeRole" and form.get("RoleArn") in self.roles:
            role = str(form["RoleArn"])
            role_account = role.split(":")[4]
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(form.get("DurationSeconds", 3600)))
            body = (f"<Credentials><AccessKeyId>ASIASIM{role_account}{self.sts_calls.total():08d}</AccessKeyId>"
                    f"<SecretAccessKey>sim</SecretAccessKey><SessionToken>sim</SessionToken>"
                    f"<Expiration>{expires.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration></Credentials>"
                    f"<AssumedRoleUser><AssumedRoleId>AROASIM:{form.get('RoleSessionName')}</AssumedRoleId>"
                    f"<Arn>arn:aws:sts::{role_account}:assumed-role/sim/{form.get('RoleSessionName')}</Arn>"
                    f"</AssumedRoleUser>")  # fmt: skip
        else:
            code = "AccessDenied" if action == "AssumeRole" else "InvalidAction"
            error = (f"<ErrorResponse xmlns=\"{ns}\"><Error><Type>Sender</Type><Code>{code}</Code>"
                     f"<Message>{action} refused</Message></Error><RequestId>sim</RequestId></ErrorResponse>")  # fmt: skip
            return web.Response(status=403, text=error, content_type="text/xml")
        text = (f"<{action}Response xmlns=\"{ns}\"><{action}Result>{body}</{action}Result>"
                f"<ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></{action}Response>")  # fmt: skip
        return web.Response(text=text, content_type="text/xml")

    async def make_app(self) -> Any:
        return self.app()

    def start(self) -> SimulatorServer:
        super().start()
        return self

    def __enter__(self) -> SimulatorServer:
        return self.start()
