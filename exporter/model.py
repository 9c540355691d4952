"""The project's own types: execution identity, history events, span records, observations."""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

AttributeValue = str | bool | int | float

_EXECUTION_ARN = re.compile(
    r"^arn:(?P<partition>[\w-]+):states:(?P<region>[\w-]*):(?P<account>\d*):"
    r"(?:execution:(?P<machine>[^:]+):(?P<name>[^:]+)"  # STANDARD
    r"|express:(?P<express_machine>[^:]+):(?P<express_name>[^:]+):[^:]+)$"  # EXPRESS: NAME:UUID
)


class HistoryError(ValueError):
    """A history that cannot be consumed; the message names the offending event."""


@dataclass(frozen=True, slots=True)
class MapRun:
    """A Distributed Map's map run as its parent's history shows it: its ARN, the Map state that
    started it, and its span (trace and span id) in the parent's trace."""

    arn: str
    map_state: str
    trace_id: int
    span_id: int
    parent_arn: str
    parent_state_machine: str
    ended: str | None = None  # succeeded, failed or aborted, once the parent's history says so


MAP_RUN_STATUSES = ("pending", "running", "succeeded", "failed", "timedOut", "aborted", "total")


@dataclass(frozen=True, slots=True)
class MapRunDescription:
    """What `DescribeMapRun` says of a map run: its status, its children and items by status
    (the keys of MAP_RUN_STATUSES), and its failure tolerance."""

    arn: str
    status: str
    executions: dict[str, int]
    items: dict[str, int]
    max_concurrency: int
    tolerated_failure_percentage: float
    tolerated_failure_count: int
    start_date: float = 0.0  # epoch seconds


@dataclass(frozen=True, slots=True)
class ExecutionIdentity:
    """Who an execution is: the ARNs and names every span and metric is labelled with. A
    Distributed Map's child execution has its `map_run`, and its trace either `nested` under
    the map run's span or its own, linked to that span."""

    execution_arn: str
    state_machine_arn: str
    state_machine_name: str
    execution_name: str
    region: str
    account: str
    trace_header: str | None = None
    map_run: MapRun | None = None
    nested: bool = False

    @classmethod
    def from_arn(cls, execution_arn: str, trace_header: str | None = None) -> ExecutionIdentity:
        """Derive the identity from an execution ARN: `arn:aws:states:REGION:ACCT:execution:SM:NAME`,
        or an EXPRESS execution's `arn:aws:states:REGION:ACCT:express:SM:NAME:UUID`."""
        match = _EXECUTION_ARN.match(execution_arn)
        if match is None:
            raise ValueError(
                f"execution ARN {execution_arn!r}: expected "
                "arn:PARTITION:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME "
                "or arn:PARTITION:states:REGION:ACCOUNT:express:STATE_MACHINE:NAME:ID"
            )
        g = match.groupdict()
        machine = sys.intern(g["machine"] or g["express_machine"])
        # interned: thousands of executions tracked at once share their state machine's
        machine_arn = sys.intern(
            f"arn:{g['partition']}:states:{g['region']}:{g['account']}:stateMachine:{machine}"
        )
        return cls(
            execution_arn=execution_arn,
            state_machine_arn=machine_arn,
            state_machine_name=machine,
            execution_name=g["name"] or g["express_name"],
            region=sys.intern(g["region"]),
            account=sys.intern(g["account"]),
            trace_header=trace_header,
        )

    @classmethod
    def of_child(cls, execution_arn: str, map_run: MapRun, nested: bool) -> ExecutionIdentity:
        """A map run's child: named `PARENT_STATE_MACHINE/MAP_STATE` on spans and metrics (its
        ARN's `STATE_MACHINE/LABEL` may hold a UUID, one per map run: no label to group by)."""
        base = cls.from_arn(execution_arn)
        return cls(
            execution_arn=execution_arn, state_machine_arn=base.state_machine_arn,
            state_machine_name=f"{map_run.parent_state_machine}/{map_run.map_state}",
            execution_name=base.execution_name, region=base.region, account=base.account,
            map_run=map_run, nested=nested,
        )  # fmt: skip


@dataclass(slots=True)
class HistoryEvent:
    """One `GetExecutionHistory` event, validated; `details` is its `*EventDetails` object.

    This and the records below are built by the hundred thousand, so they are plain (not
    frozen) dataclasses, which construct several times faster; treat them as immutable."""

    id: int
    previous_id: int
    timestamp_ns: int
    type: str
    details: Mapping[str, Any]


class SpanKind(enum.StrEnum):
    EXECUTION = "execution"
    STATE = "state"
    TASK = "task"
    LAMBDA = "lambda"
    ACTIVITY = "activity"
    MAP_ITERATION = "map_iteration"
    PARALLEL_BRANCH = "parallel_branch"
    MAP_RUN = "map_run"


class Status(enum.StrEnum):
    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"


@dataclass(slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanLink:
    trace_id: int
    span_id: int
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


@dataclass(slots=True)
class SpanRecord:
    """A span as the assembler sees it: ids as integers, times in ns since the epoch."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int | None
    status: Status
    error: str | None
    cause: str | None
    attributes: Mapping[str, AttributeValue]
    events: tuple[SpanEvent, ...]
    links: tuple[SpanLink, ...]
    state_type: str | None = None
    opening_event_id: int = 0


class Observation(NamedTuple):
    """One metric update: `metric` names a catalogue entry, `labels` follow its label order.

    A tuple of strings and a number: once the garbage collector has seen one it stops tracking
    it, which matters at tens of thousands per batch."""

    metric: str
    labels: tuple[str, ...]
    value: float = 1.0
