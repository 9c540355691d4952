"""Discovery: which state machines to watch, and which of their executions to track.

Each pass lists a state machine's executions newest first, down to a little before the previous
pass began, so an execution that started and finished between two passes is still found; every
few passes (and on the first) it also lists the RUNNING ones, for those that began long ago. On
the first pass it also hands over the executions the checkpoint holds unfinished: one that began
long ago and ended while no exporter ran is in no listing.
One state machine whose calls fail is logged, counted and skipped; the others go on."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.aws.source import ExecutionSummary, NotFound, SourceError, StateMachine, StepFunctionsApi
from exporter.checkpoint import CursorStore
from exporter.config import Config
from exporter.emit.health import TargetHealth
from exporter.shards import Layout

log = logging.getLogger(__name__)


@dataclass
class WatchedMachine:
    machine: StateMachine
    passes: int = 0
    failing: bool = False
    via_logs: bool = False  # read from its log group (its history only to fill what the log lost)
    # it moved to this shard at this time (epoch s): what began before is taken over (exporter.shards)
    taken_over_at: float | None = None


def log_verdict(machine: StateMachine, source: str) -> tuple[bool, str | None]:
    """Whether a state machine's executions are read from its logs, or why it is skipped.

    `auto` reads EXPRESS state machines from their logs and STANDARD ones from their history;
    `logs` reads STANDARD ones from their logs when they log every event (level ALL), else from
    their history (logs at ERROR or FATAL hold only failures); EXPRESS state machines have no
    history, so they are skipped when they do not log or when `history` is chosen."""
    logging_ = machine.logging
    if machine.type == "EXPRESS":
        if source == "history":
            return False, "express"
        if logging_ is None:
            return False, "not_logging"
        return True, None
    if source == "logs" and logging_ is not None and logging_.level == "ALL":
        return True, None
    return False, None


@dataclass
class Discovery:
    config: Config
    api: StepFunctionsApi
    store: CursorStore
    health: TargetHealth
    on_execution: Callable[[ExecutionSummary, WatchedMachine], None]
    wall: Callable[[], float] = time.time
    layout: Layout = field(default_factory=Layout)
    machines: dict[str, WatchedMachine] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # arn -> reason, logged once
    completed_pass: bool = False
    unreadable: set[str] = field(default_factory=set)  # could not be described; tried again next refresh
    filtered_out: int = 0  # by name or ARN, at the last refresh
    other_shards: int = 0  # owned by other shards, at the last refresh
    on_removed: Callable[[StateMachine], None] | None = None  # a watched one is listed no more
    # an execution the checkpoint holds unfinished, found on a state machine's first pass (its
    # ARN): it may have ended while no exporter ran, and then no listing shows it again
    on_unfinished: Callable[[str, WatchedMachine], None] | None = None

    async def refresh_state_machines(self) -> bool:
        """List (or, with an ARN list, describe) the state machines and keep those that pass.
        False when the listing failed: what was watched stays watched, and the caller retries."""
        wanted = self.config.state_machines
        try:
            if wanted.arns:
                listed = [
                    StateMachine(arn=arn, name=arn.rsplit(":", 1)[-1], type="UNKNOWN") for arn in wanted.arns
                ]
            else:
                listed, token = await self.api.list_state_machines()
                while token:
                    more, token = await self.api.list_state_machines(token)
                    listed += more
        except SourceError as exc:
            self.health.discovery_errors.labels(exc.operation).inc()
            log.error("cannot list state machines: %s", exc)
            return False
        # Tags, names and logging configurations can change: only the EXPRESS verdict is final.
        self.skipped = {arn: reason for arn, reason in self.skipped.items() if reason == "express"}
        self.unreadable.clear()
        seen: set[str] = set()
        filtered = others = 0
        for item in listed:
            if not wanted.accepts(item.arn, item.name):
                filtered += 1
                continue
            if not self.layout.owns(item.arn):
                others += 1
                continue
            seen.add(item.arn)
            if item.arn in self.machines or item.arn in self.skipped:
                continue
            await self._admit(item)
        for arn in set(self.machines) - seen:
            log.info(
                "state machine no longer listed; not discovering its executions",
                extra={"state_machine_arn": arn},
            )
            self._remove(arn)
        self.filtered_out = filtered
        self.other_shards = others
        self._count()
        return True

    def _remove(self, arn: str) -> None:
        removed = self.machines.pop(arn, None)
        if removed is not None and self.on_removed is not None:
            self.on_removed(removed.machine)

    async def _admit(self, item: StateMachine) -> None:
        try:
            machine = await self.api.describe_state_machine(item.arn)
            tags = await self.api.list_tags(item.arn) if self.config.state_machines.tags else {}
        except SourceError as exc:
            self.health.discovery_errors.labels(exc.operation).inc()
            log.error("cannot describe state machine: %s", exc, extra={"state_machine_arn": item.arn})
            if isinstance(exc, NotFound):
                return
            if self.config.state_machines.tags:
                self.unreadable.add(item.arn)  # its tags are unknown: not watched until they are
                return
            self.machines[item.arn] = self._watched(item, failing=True)  # retried on its next pass
            return
        if any(tags.get(key) != value for key, value in self.config.state_machines.tags.items()):
            self.skipped[item.arn] = "tags"
            return
        source = self.config.logs.source_for(item.arn, machine.name)
        via_logs, skip = log_verdict(machine, source)
        if skip is not None:
            self._skip(machine, skip)
            return
        self.machines[item.arn] = self._watched(machine, via_logs)
        log.info(
            "watching state machine %s (%s, read from its %s)", machine.name, machine.type,
            "logs" if via_logs else "history", extra={"state_machine_arn": item.arn},
        )  # fmt: skip

    def _watched(
        self, machine: StateMachine, via_logs: bool = False, failing: bool = False
    ) -> WatchedMachine:
        moved = self.layout.moved_in(machine.arn)
        if moved:
            log.info(
                "state machine moved to this shard: what began before %s is taken over, not exported again",
                dt.datetime.fromtimestamp(self.layout.changed_at, dt.UTC).isoformat(timespec="seconds"),
                extra={"state_machine_arn": machine.arn},
            )
        taken_over_at = self.layout.changed_at if moved else None
        return WatchedMachine(machine, failing=failing, via_logs=via_logs, taken_over_at=taken_over_at)

    def _skip(self, machine: StateMachine, reason: str) -> None:
        self.skipped[machine.arn] = reason
        why = {
            "express": "logs.source is history, and GetExecutionHistory does not support EXPRESS workflows",
            "not_logging": "it has no loggingConfiguration, and CloudWatch Logs are an EXPRESS execution's only record",
        }[reason]  # fmt: skip
        log.warning(
            "skipping EXPRESS state machine %s: %s",
            machine.name,
            why,
            extra={"state_machine_arn": machine.arn},
        )

    def _count(self) -> None:
        failing = sum(1 for w in self.machines.values() if w.failing) + len(self.unreadable)
        self.health.state_machines.labels("tracked").set(
            len(self.machines) - (failing - len(self.unreadable))
        )
        self.health.state_machines.labels("failing").set(failing)
        self.health.state_machines.labels("skipped_express").set(
            sum(1 for reason in self.skipped.values() if reason == "express")
        )
        self.health.state_machines.labels("skipped_express_not_logging").set(
            sum(1 for reason in self.skipped.values() if reason == "not_logging")
        )
        by_tags = sum(1 for reason in self.skipped.values() if reason == "tags")
        self.health.state_machines.labels("filtered_out").set(self.filtered_out + by_tags)
        self.health.state_machines.labels("other_shards").set(self.other_shards)

    async def discover_executions(self) -> None:
        """One pass over every watched state machine, a few at a time."""
        semaphore = asyncio.Semaphore(4)

        async def one(watched: WatchedMachine) -> None:
            async with semaphore:
                await self._discover_machine(watched)

        # EXPRESS executions cannot be listed; STANDARD ones read from logs are, so that one whose
        # log lost its last messages is still seen to end (and read from its history).
        listable = [w for w in self.machines.values() if not (w.via_logs and w.machine.type == "EXPRESS")]
        await asyncio.gather(*(one(w) for w in listable))
        self._count()
        self.completed_pass = True

    async def _discover_machine(self, watched: WatchedMachine) -> None:
        arn = watched.machine.arn
        started = self.wall()
        try:
            if watched.failing or watched.machine.type == "UNKNOWN":
                watched.machine = await self.api.describe_state_machine(arn)
                source = self.config.logs.source_for(arn, watched.machine.name)
                via_logs, skip = log_verdict(watched.machine, source)
                if skip is not None or via_logs:
                    del self.machines[arn]
                    if skip is not None:
                        self._skip(watched.machine, skip)
                    else:
                        self.machines[arn] = self._watched(watched.machine, via_logs=True)
                    return
            watermark = self.store.watermark(arn)
            if watermark is None:
                floor = started - self.config.discovery.lookback_seconds
            else:
                floor = watermark - self.config.discovery.overlap_seconds
            if watched.taken_over_at is not None:  # a watermark from before the move is stale
                floor = max(floor, watched.taken_over_at - self.config.discovery.lookback_seconds)
            await self._list_recent(watched, floor)
            if watched.passes % self.config.discovery.running_scan_every == 0:
                await self._list_running(watched)
            if watched.passes == 0:
                self._hand_over_unfinished(watched)
        except SourceError as exc:
            self.health.discovery_errors.labels(exc.operation).inc()
            if not watched.failing:
                log.error("cannot discover executions: %s", exc, extra={"state_machine_arn": arn})
            watched.failing = True
            if isinstance(exc, NotFound):
                self._remove(arn)
            return
        if watched.failing:
            log.info("discovering executions again", extra={"state_machine_arn": arn})
        watched.failing = False
        watched.passes += 1
        self.store.set_watermark(arn, started)

    def _hand_over_unfinished(self, watched: WatchedMachine) -> None:
        if self.on_unfinished is None:
            return
        prefix = watched.machine.arn.replace(":stateMachine:", ":execution:", 1) + ":"
        for execution_arn in self.store.unfinished(prefix):
            self.on_unfinished(execution_arn, watched)

    async def _list_recent(self, watched: WatchedMachine, floor: float) -> None:
        token: str | None = None
        while True:
            page, token = await self.api.list_executions(watched.machine.arn, next_token=token)
            for summary in page:
                if summary.start_date.timestamp() < floor:
                    return
                self.on_execution(summary, watched)
            if not token:
                return

    async def _list_running(self, watched: WatchedMachine) -> None:
        token: str | None = None
        while True:
            page, token = await self.api.list_executions(
                watched.machine.arn, status="RUNNING", max_results=1000, next_token=token
            )
            for summary in page:
                self.on_execution(summary, watched)
            if not token:
                return
