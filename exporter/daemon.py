"""Exporter: the long-running loop. Discovers executions, tails each one's history, assembles
spans and observations, hands them to the sinks, and only then advances the checkpoint."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from exporter.aws.discovery import Discovery, WatchedMachine
from exporter.aws.logtail import GroupTail, Parsed, ReadWindow, Reorder, parse_records
from exporter.aws.mapruns import Child, MapRuns, Watch
from exporter.aws.ratelimit import RateLimiter
from exporter.aws.source import (
    CloudWatchLogsApi,
    Denied,
    ExecutionSummary,
    Malformed,
    NotFound,
    SourceError,
    StateMachine,
    StepFunctionsApi,
    Throttled,
)
from exporter.aws.tail import MIN_PAGE, first_page_size, next_peak, read_new_events, read_whole_history
from exporter.checkpoint import CheckpointError, CursorStore
from exporter.config import Config
from exporter.emit.health import TargetHealth
from exporter.emit.metrics import WorkflowMetrics, observe_all
from exporter.emit.otlp import ExecutionSpans
from exporter.emit.sinks import ExportFailed, SpanSink
from exporter.history.assembler import Assembled, AssemblerOptions, SpanAssembler
from exporter.history.catalogue import EXECUTION_METRICS
from exporter.history.redact import make_redactor
from exporter.model import ExecutionIdentity, HistoryError, HistoryEvent, Observation, SpanKind, SpanRecord
from exporter.schedule.scheduler import PollScheduler
from exporter.schedule.waits import DurationModel, quiet_until
from exporter.shards import Layout

log = logging.getLogger(__name__)

HISTORY = "GetExecutionHistory"  # the operation whose calls the dispatcher hands out

# Events come in bursts (a Wait's end, the next state entered, its task scheduled and started):
# a poll whose newest event is younger than BURST_SECONDS may have read only the start of one, so
# the execution is polled again soon; and the poll after a Wait comes SETTLE_SECONDS after its
# end, to read what follows it in the same call. (Ages compare AWS's timestamps with this host's
# clock: a host clock behind AWS's costs a follow-up poll now and then, nothing more.)
BURST_SECONDS = 0.5
SETTLE_SECONDS = 1.0
# An execution whose history answers stay malformed (an event botocore or we cannot read) this
# many polls in a row is quarantined: counted, logged once, polled no more by this process.
MALFORMED_POLLS = 5
# A log group read at a time per this many groups; and how long an execution that ended is
# remembered in memory, so that its messages read again in the overlap window are known at once.
LOG_GROUP_CONCURRENCY = 4
# What an EXPRESS execution taken over from another shard (its log's events before the move
# dropped) does not count: its start was counted there, its duration is not known here, and the
# events it lacks are missing by design, not anomalies of its history.
TAKEN_OVER_UNCOUNTED = frozenset(
    {"sfn_executions_started_total", "sfn_execution_duration_seconds", "sfn_history_anomalies_total"}
)
# The most an execution's assembler state may take in the checkpoint (compressed): one larger
# (a Map with thousands of iterations open) is not kept, and a restart reads its history again.
MAX_STATE_BYTES = 256 * 1024
WATERMARK_KEY = "logs:"  # checkpoint watermarks of log groups: this prefix and the group's ARN


@dataclass
class Pending:
    """What one poll produced, until it has reached every sink and the checkpoint."""

    spans: list[SpanRecord]
    observations: list[Observation]
    event_times_ns: list[int]
    cursor: int
    finished: bool
    redrives: int
    exported: bool = False
    state: bytes | None = None  # the assembler's at the cursor, kept with it (see poll)


@dataclass(eq=False, slots=True)
class Tracked:
    arn: str
    identity: ExecutionIdentity
    watched: WatchedMachine
    replay_to: int = 0  # events up to here were exported before: rebuild state, emit nothing
    last_new: int = 0  # events the last poll found: with peak_new, sizes the next poll's first page
    peak_new: float = float(MIN_PAGE)  # the most a recent poll found (exporter.aws.tail.next_peak)
    newest_s: float = 0.0  # epoch seconds of the newest event read
    assembler: SpanAssembler | None = None
    pending: Pending | None = None
    malformed_polls: int = 0  # polls in a row whose answer could not be read
    reorder: Reorder | None = None  # read from a log group: its events waiting for their turn
    group: str | None = None  # that log group's ARN
    first_ms: int = 0  # the oldest event timestamp read from its log (epoch ms)
    filling: bool = False  # read from its log; a history read (by a poll worker) is due or under way
    takeover: bool = False  # moved from another shard: its first read rebuilds state, emits nothing
    silent_before_ns: int = 0  # moved from another shard, read from its log: earlier events were theirs
    restore: bytes | None = None  # the assembler's state at the checkpoint's cursor, to go on from
    # an EXPRESS map run child: its log's events from..to (epoch ms; to None: now) are to be read
    # by a filter on its ARN (the group's tail read past them before it was followed)
    backfill: tuple[int, int | None] | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that puts the execution ARN on every line (made when needed: thousands are tracked)."""
        return logging.LoggerAdapter(log, {"execution_arn": self.arn})


class Exporter:
    def __init__(
        self, config: Config, api: StepFunctionsApi, store: CursorStore, sink: SpanSink,
        workflow: WorkflowMetrics, health: TargetHealth, *,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
        on_spans: Callable[[Tracked, list[SpanRecord]], None] | None = None,
        on_events: Callable[[Tracked, list[int]], None] | None = None,
        scheduler: PollScheduler | None = None, budget: Callable[[], float] | None = None,
        logs_api: CloudWatchLogsApi | None = None, log_calls_spare: Callable[[], bool] | None = None,
        layout: Layout | None = None, limiter: RateLimiter | None = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.api = api
        self.store = store
        self.sink = sink
        self.workflow = workflow
        self.health = health
        self._clock = clock
        self._wall = wall
        self.tracked: dict[str, Tracked] = {}
        self.scheduler = (
            scheduler
            if scheduler is not None
            else PollScheduler(
                config.polling.min_interval_seconds, config.polling.max_interval_seconds, clock, budget=budget
            )
        )
        self.discovery = Discovery(config, api, store, health, self._on_execution, wall, layout or Layout())
        self.discovery.on_removed = self._on_machine_removed
        self.discovery.on_unfinished = self._on_unfinished
        data = config.data
        self._options = AssemblerOptions(
            include_data=data.include_execution_data, include_causes=data.include_causes,
            max_data_bytes=data.max_bytes, redact=make_redactor(data.redact_paths),
            execution_name=data.execution_name, legacy_status=config.otlp.legacy_status,
        )  # fmt: skip
        self._queue: asyncio.Queue[tuple[str, contextvars.Context | None]] = asyncio.Queue()
        self._busy = 0  # workers with a poll under way
        self._limiter = limiter  # the api's: polls are chosen when a call is free (see _dispatch_loop)
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self.durations = DurationModel()
        self._on_spans = on_spans
        self._on_events = on_events
        self._stopped_at: float | None = None
        self._running: Counter[str] = Counter()  # tracked executions by state machine name
        self._staleness_at = float("-inf")
        self.quarantined: set[str] = set()
        self.checkpoint_failing = False  # the last checkpoint write failed: not ready
        self.logs_api = logs_api
        # whether FilterLogEvents has a call to spare now (no other read waits for one)
        self._log_calls_spare = log_calls_spare or (lambda: True)
        self.groups: dict[str, GroupTail] = {}
        self._ended: dict[str, float] = {}  # read from logs, ended: ARN -> when (monotonic)
        self.map_runs = MapRuns(config, api, store, workflow.map_runs(), health, self._on_child, wall)

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        """Discovery has completed a pass, AWS answered recently and the checkpoint takes writes."""
        window = max(60.0, 3 * self.config.discovery.executions_interval_seconds)
        return (
            self.discovery.completed_pass
            and not self.checkpoint_failing
            and self._wall() - self.health.last_success_time < window
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; then finish the polls under way within the grace period."""
        workers = [
            asyncio.create_task(self._worker(), name=f"poller-{n}")
            for n in range(self.config.polling.concurrency)
        ]
        background = [
            asyncio.create_task(self._discovery_loop(), name="discovery"),
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._logs_loop(), name="logs"),
            asyncio.create_task(self._map_runs_loop(), name="map-runs"),
        ]
        await stop.wait()
        self._stopped_at = self._clock()
        log.info("stopping: no new polls; finishing the ones under way")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for task in workers:
            task.cancel()  # they take no more work; the polls under way go on
        await asyncio.gather(*workers, return_exceptions=True)
        if self._in_flight:
            grace = self.config.shutdown.grace_period_seconds
            _, late = await asyncio.wait(self._in_flight, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "%d polls did not finish within %.0fs; their events are read again next time",
                    len(late),
                    grace,
                )
        self._prune()

    def _prune(self) -> None:
        try:
            self.store.prune(self.config.checkpoint.retention_hours * 3600)
            self.map_runs.prune(self.config.checkpoint.retention_hours * 3600)
        except CheckpointError as exc:
            log.warning("%s", exc)

    def seconds_since_stop(self) -> float:
        return 0.0 if self._stopped_at is None else self._clock() - self._stopped_at

    async def _discovery_loop(self) -> None:
        settings = self.config.discovery
        next_machines = 0.0
        while True:
            started = self._clock()
            try:
                if started >= next_machines and await self.discovery.refresh_state_machines():
                    next_machines = started + settings.state_machines_interval_seconds
                    self._prune()
                await self.discovery.discover_executions()
                self._update_gauges()
            except CheckpointError as exc:
                log.warning("discovery pass failed: %s", exc)
            except Exception:  # a bug in one pass must not end discovery for good
                log.exception("discovery pass failed; trying again next interval")
            await asyncio.sleep(max(0.0, settings.executions_interval_seconds - (self._clock() - started)))

    async def _dispatch_loop(self) -> None:
        """Hands due polls to the workers. With the api's rate limiter, it first waits for a
        free GetExecutionHistory call and only then asks the scheduler which poll to spend it on
        (the poll's first call is that one): a poll that falls due urgently meanwhile goes next,
        not behind paced polls queued at the limiter before it; and one that falls due before
        the next call would come gets this one."""
        while True:
            room = self.config.polling.concurrency - self._busy - self._queue.qsize()
            next_due = self.scheduler.next_due()
            if room > 0 and next_due is not None and next_due <= self._clock():
                if self._limiter is None:
                    for key in self.scheduler.pop_due(room):
                        self._queue.put_nowait((key, None))
                else:
                    await self._limiter.acquire(HISTORY)
                    paid = self._limiter.prepay(HISTORY)
                    urgent = self.scheduler.next_due(urgent_only=True)
                    now = self._clock()
                    if urgent is not None and now < urgent <= now + 1 / max(
                        self._limiter.rate(HISTORY), 1e-9
                    ):
                        # kept for an urgent poll due before the next call comes (a Wait's end:
                        # news almost surely), not spent on a paced guess
                        await asyncio.sleep(urgent - now)
                    chosen = self.scheduler.pop_due(1)
                    if chosen:
                        self._queue.put_nowait((chosen[0], paid))
                    else:
                        self._limiter.refund(paid)
                    continue
            if self._clock() - self._staleness_at >= 1.0:  # it walks every slot: once a second
                self._staleness_at = self._clock()
                self.health.staleness.set(self.scheduler.staleness())
            next_due = self.scheduler.next_due()
            self._wake.clear()
            # A timer sets the same event as new work does. (asyncio.wait_for can swallow a
            # cancellation that lands as its timeout expires, and a shutdown would then hang.)
            # With every worker busy, the end of a poll sets it.
            alarm = None
            if next_due is not None and room > 0:
                delay = max(0.0, next_due - self._clock())
                alarm = asyncio.get_running_loop().call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if alarm is not None:
                    alarm.cancel()

    async def _worker(self) -> None:
        while True:
            key, paid = await self._queue.get()
            tracked = self.tracked.get(key)
            if tracked is None:
                if paid is not None and self._limiter is not None:
                    self._limiter.refund(paid)
                continue
            task = self._under_way(self._poll_and_reschedule(tracked), context=paid)
            self._busy += 1
            try:
                await asyncio.shield(task)  # on shutdown the worker stops; the poll finishes (see run)
            except Exception:  # a bug past the poll's own handling: the worker must live on
                log.exception("rescheduling %s failed; it is polled again after a back-off", key)
                try:
                    self.scheduler.done(key, found_events=False, failed=True)
                except Exception:
                    log.exception("the scheduler refused %s; it is no longer polled", key)
            finally:
                self._busy -= 1
                if paid is not None and self._limiter is not None:
                    self._limiter.refund(paid)  # a poll that made no call
                self._wake.set()  # room for the next poll

    # ------------------------------------------------------------------ tracking

    def _on_execution(self, summary: ExecutionSummary, watched: WatchedMachine) -> None:
        if summary.arn in self.quarantined:
            return
        if watched.via_logs:
            self._on_listed_from_logs(summary, watched)
            return
        if summary.arn in self.tracked:
            if summary.status != "RUNNING":
                self.scheduler.wake(summary.arn)
                self._wake.set()
            return
        cursor = self.store.get(summary.arn)
        takeover = False
        moved = watched.taken_over_at
        if moved is not None and (cursor is None or cursor.updated_at < moved):
            cursor = None  # one from before the move is stale: another shard read on since
            takeover = summary.start_date.timestamp() < moved
        redriven = cursor is not None and summary.redrive_count > cursor.redrives
        if cursor is not None and cursor.finished and summary.status != "RUNNING" and not redriven:
            return  # exported to its end already (a redrive since would show in redriveCount)
        try:
            identity = ExecutionIdentity.from_arn(summary.arn)
        except ValueError as exc:
            log.error("%s", exc)
            return
        tracked = Tracked(
            summary.arn,
            identity,
            watched,
            replay_to=cursor.event_id if cursor else 0,
            takeover=takeover,
            restore=cursor.state if cursor else None,
        )
        self.tracked[summary.arn] = tracked
        self.scheduler.add(summary.arn)
        self._wake.set()
        tracked.log.debug(
            "tracking (%s, cursor %d%s)", summary.status, tracked.replay_to, ", taken over" * takeover
        )
        self._count(tracked, +1)

    def _on_unfinished(self, arn: str, watched: WatchedMachine) -> None:
        """An execution the checkpoint holds unfinished that discovery did not list (it ended,
        or began, while no exporter ran): read on from its cursor; one AWS no longer has is
        buried (exporter.checkpoint)."""
        if arn in self.tracked or arn in self.quarantined or watched.via_logs:
            return
        cursor = self.store.get(arn)
        if cursor is None or cursor.finished:
            return
        moved = watched.taken_over_at
        if moved is not None and cursor.updated_at < moved:
            return  # from before its state machine moved here: another shard read on since
        try:
            identity = ExecutionIdentity.from_arn(arn)
        except ValueError as exc:
            log.error("%s", exc)
            return
        tracked = Tracked(arn, identity, watched, replay_to=cursor.event_id, restore=cursor.state)
        self.tracked[arn] = tracked
        self.scheduler.add(arn)
        self._wake.set()
        tracked.log.info("reading on from the checkpoint (cursor %d); no listing showed it", cursor.event_id)
        self._count(tracked, +1)

    def _watch_map_runs(
        self, tracked: Tracked, assembler: SpanAssembler, taking_over: bool = False, replayed: bool = False
    ) -> None:
        for run in assembler.map_runs.values():
            self.map_runs.watch(run, tracked.watched, baseline=taking_over, replayed=replayed)

    def _on_child(self, child: Child, watch: Watch) -> str:
        """A map run's child to follow: tracked like any execution (a child ARN is an execution
        ARN with `STATE_MACHINE/LABEL` for the state machine). A STANDARD child is read from its
        history; an EXPRESS one from its parent's log group, where it logs under its parent's
        logging configuration ("unlogged" when there is none the exporter reads)."""
        arn = child.arn
        if arn in self.tracked or arn in self.quarantined:
            return ""
        cursor = self.store.get(arn)
        if cursor is not None and cursor.finished:
            return ""
        moved = watch.parent.taken_over_at
        if moved is not None and child.ended_at is not None and child.ended_at < moved:
            return ""  # it ended before the state machine moved here: its shard had it
        try:
            identity = ExecutionIdentity.of_child(
                arn, watch.run, nested=self.config.map_runs.trace == "nested"
            )
        except ValueError as exc:
            log.error("%s", exc)
            return ""
        if ":express:" in arn:
            return self._follow_express_child(child, watch, identity, cursor.event_id if cursor else 0)
        tracked = Tracked(arn, identity, watch.parent, replay_to=cursor.event_id if cursor else 0,
                          restore=cursor.state if cursor else None)  # fmt: skip
        self.tracked[arn] = tracked
        self.scheduler.add(arn)
        self._wake.set()
        tracked.log.debug("following map run child (cursor %d)", tracked.replay_to)
        return "followed"

    def _follow_express_child(
        self, child: Child, watch: Watch, identity: ExecutionIdentity, cursor: int
    ) -> str:
        parent = watch.parent.machine
        logging_ = parent.logging
        if logging_ is None or not logging_.log_group_arns or self.logs_api is None:
            if not watch.warned:
                log.warning(
                    "the EXPRESS children of map run %s of %s cannot be followed: %s; they are counted only",
                    watch.run.map_state, watch.run.parent_arn,
                    "the log source is off" if self.logs_api is None else f"{parent.name} does not log",
                    extra={"map_run_arn": watch.run.arn},
                )  # fmt: skip
                watch.warned = True
            return "unlogged"
        machine = StateMachine(
            identity.state_machine_arn, identity.state_machine_name, "EXPRESS", logging=logging_
        )
        watched = WatchedMachine(machine, taken_over_at=watch.parent.taken_over_at)
        tracked = Tracked(child.arn, identity, watched, replay_to=cursor)
        tracked.reorder, tracked.group = Reorder(), logging_.log_group_arns[0]
        started_ms = int((child.started_at or self._wall() - self.config.logs.express_max_seconds) * 1000)
        tracked.first_ms = started_ms
        # Its messages the group's tail read before it was followed are read again by a filter
        # on its ARN: none when the tail has not read as far as its start, or under `all` when
        # it began after its map run was watched (from then on its messages were followed).
        tail = self.groups.get(tracked.group)
        routed = (
            self.config.map_runs.follow == "all"
            and started_ms >= watch.since * 1000
            and self.map_runs.watch_of_child(identity.state_machine_arn) is watch
        )
        if (
            not routed
            and tail is not None
            and tail.reach_ms is not None
            and tail.reach_ms >= started_ms - 1000
        ):
            ended_ms = None if child.ended_at is None else int(child.ended_at * 1000) + 1
            tracked.backfill = (started_ms - 1000, ended_ms)
        moved = watched.taken_over_at
        if moved is not None and cursor == 0 and started_ms < moved * 1000:
            tracked.silent_before_ns = int(moved * 1e9)  # its start was another shard's to export
        self.tracked[child.arn] = tracked
        tracked.log.debug("following map run child from its log (cursor %d)", cursor)
        return "followed"

    async def _map_runs_loop(self) -> None:
        interval = self.config.map_runs.interval_seconds
        while True:
            started = self._clock()
            try:
                await self.map_runs.run_once()
            except Exception:  # a bug in one pass must not end map run watching for good
                log.exception("map run pass failed; trying again next interval")
            await asyncio.sleep(max(0.0, interval - (self._clock() - started)))

    def _on_machine_removed(self, machine: StateMachine) -> None:
        """A deleted (or no longer chosen) state machine: its series go (an execution of it
        still being read would bring back the series it touches)."""
        self.workflow.forget(machine.name)

    def _untrack(self, tracked: Tracked) -> None:
        if self.tracked.pop(tracked.arn, None) is not None:
            self._count(tracked, -1)
        self.scheduler.remove(tracked.arn)

    def _count(self, tracked: Tracked, change: int) -> None:
        if tracked.identity.map_run is not None:
            return  # map run children: counted by their map run (sfn_map_run_executions)
        name = tracked.identity.state_machine_name
        self._running[name] += change
        self.workflow.set_running(name, self._running[name])
        self.health.tracked.set(len(self.tracked))

    def _update_gauges(self) -> None:
        """State machines with nothing running show 0, not their last count."""
        for watched in self.discovery.machines.values():
            self.workflow.set_running(watched.machine.name, self._running[watched.machine.name])

    # ------------------------------------------------------------------ polling

    async def _poll_and_reschedule(self, tracked: Tracked) -> None:
        found, failed, quiet = False, False, None
        try:
            found = await self.poll(tracked)
            quiet = self._quiet(tracked, found)
        except NotFound:
            # Kept as a tombstone: listed again (AWS answers are not always consistent at once),
            # the execution resumes at its cursor instead of being counted a second time.
            tracked.log.warning("execution no longer exists; no longer polled")
            self._bury(tracked)
            return
        except (Malformed, HistoryError) as exc:
            failed = True
            if self._malformed(tracked, exc):
                return
        except (SourceError, ExportFailed, CheckpointError) as exc:
            failed = True
            level = logging.DEBUG if isinstance(exc, Throttled) else logging.WARNING
            if isinstance(exc, Denied):
                level = logging.ERROR
            tracked.log.log(level, "poll failed: %s", exc)
        except Exception:
            failed = True
            tracked.log.exception("poll failed unexpectedly")
        if not failed:
            tracked.malformed_polls = 0
        if tracked.pending is None and tracked.assembler is not None and tracked.assembler.finished:
            if tracked.reorder is not None:
                self._ended[tracked.arn] = self._clock()
            self._untrack(tracked)
            return
        if tracked.reorder is not None and not failed:
            self._filled(tracked)
            return
        not_before, guessed, by = quiet if quiet is not None else (None, False, None)
        self.scheduler.done(tracked.arn, found, not_before, failed, steady=guessed, by=by)
        self._wake.set()

    def _bury(self, tracked: Tracked) -> None:
        try:
            self.store.bury(tracked.arn)
        except CheckpointError as exc:
            tracked.log.warning("%s", exc)
        self._untrack(tracked)

    def _malformed(self, tracked: Tracked, exc: Exception) -> bool:
        """Count an answer that could not be read; quarantine the execution (True) once that
        has happened MALFORMED_POLLS times in a row. What was exported before stays exported."""
        reason = exc.code if isinstance(exc, Malformed) else "InvalidHistory"
        self.health.history_errors.labels(reason).inc()
        tracked.malformed_polls += 1
        if tracked.malformed_polls < MALFORMED_POLLS:
            tracked.log.warning("poll failed: %s (retried)", exc)
            return False
        tracked.log.error(
            "quarantined after %d unreadable answers in a row; no longer polled: %s",
            tracked.malformed_polls,
            exc,
        )
        self.quarantined.add(tracked.arn)
        self.health.quarantined.set(len(self.quarantined))
        self._untrack(tracked)
        return True

    def _quiet(self, tracked: Tracked, found: bool) -> tuple[float, bool, float | None] | None:
        """When to poll next at the earliest (monotonic time), whether that is a guess from the
        durations of past visits, and by when it has almost surely changed (see
        `exporter.schedule.waits.quiet_until`); None when it may change any time."""
        assembler = tracked.assembler
        if assembler is None or assembler.finished:
            return None
        now = self._wall()
        if found and now - tracked.newest_s < BURST_SECONDS:
            return None  # more may be on the way: a state's entry, its task's schedule and start
        quiet = quiet_until(
            assembler.open_spans(), tracked.watched.machine.definition, self.durations,
            tracked.identity.state_machine_name,
        )  # fmt: skip
        if quiet is None:
            return None
        until = quiet.until + SETTLE_SECONDS  # a Wait's end and what follows it, in one poll
        if quiet.guessed and self.scheduler.idle_cap() <= self.config.polling.min_interval_seconds:
            # calls to spare (the budget could poll every active execution at the minimum
            # interval): a state that ends sooner than it ever did is still seen within the
            # maximum interval. Otherwise early polls would be taken from the executions whose
            # states are likely to end now.
            until = min(until, now + self.config.polling.max_interval_seconds)
        by = None if quiet.over is None else self._clock() + (quiet.over + SETTLE_SECONDS - now)
        return self._clock() + (until - now), quiet.guessed, by

    async def poll(self, tracked: Tracked) -> bool:
        """Read what is new, assemble it, emit it, checkpoint it. True if there was anything."""
        if tracked.pending is not None:
            await self._emit(tracked, tracked.pending)
        assembler = tracked.assembler
        if assembler is None and tracked.restore is not None and not tracked.takeover:
            assembler = self._restored(tracked)
        if assembler is None:
            assembler = tracked.assembler = await self._new_assembler(tracked)
        include = self.config.data.include_execution_data
        if tracked.takeover:
            await self._take_over(tracked, assembler)
            return False
        if tracked.replay_to > assembler.last_event_id:
            events = await read_whole_history(self.api, tracked.arn, include)
            old = [e for e in events if e["id"] <= tracked.replay_to]
            assembler.feed(old)  # exported before the restart: rebuild the state only
            self._watch_map_runs(tracked, assembler, replayed=True)
            events = events[len(old) :]
            tracked.log.info("resumed after event %d", tracked.replay_to)
        else:
            page = first_page_size(tracked.last_new, tracked.peak_new, self.config.polling.page_size)
            events = await read_new_events(self.api, tracked.arn, assembler.last_event_id, page, include)
            tracked.peak_new = next_peak(tracked.peak_new, len(events))
        tracked.last_new = len(events)
        if not events:
            return False
        await self._consume(tracked, assembler, assembler.feed(events))
        return True

    def _restored(self, tracked: Tracked) -> SpanAssembler | None:
        """The assembler as the checkpoint kept it at the cursor: the history is read on from
        there, not from its start (nor is the trace header asked for: the state holds the trace).
        None when it cannot be restored: it is then rebuilt from the history."""
        data, tracked.restore = tracked.restore, None
        assert data is not None
        try:
            restored = SpanAssembler.restore(tracked.identity, data, self._options)
        except ValueError as exc:
            tracked.log.warning("%s; reading its history again", exc)
            return None
        if restored.last_event_id != tracked.replay_to:
            tracked.log.warning("the state kept is not at the cursor; reading its history again")
            return None
        tracked.assembler = restored
        self._watch_map_runs(tracked, restored, replayed=True)
        tracked.log.info("resumed after event %d from the checkpoint", tracked.replay_to)
        return restored

    async def _take_over(self, tracked: Tracked, assembler: SpanAssembler) -> None:
        """An execution that began before its state machine moved to this shard: its history
        so far rebuilds the state and is not exported (another shard did; see exporter.shards);
        its cursor is saved, and what comes after is exported as usual."""
        events = await read_whole_history(self.api, tracked.arn, self.config.data.include_execution_data)
        assembler.feed(events)
        self._watch_map_runs(tracked, assembler, taking_over=True)
        tracked.takeover = False
        tracked.replay_to = assembler.last_event_id
        tracked.pending = Pending(
            [], [], [], cursor=assembler.last_event_id, finished=assembler.finished,
            redrives=assembler.redrive_count, exported=True,
        )  # fmt: skip
        await self._emit(tracked, tracked.pending)
        tracked.log.info("taken over from another shard after event %d", assembler.last_event_id)

    async def _consume(self, tracked: Tracked, assembler: SpanAssembler, out: Assembled) -> None:
        """What a batch of events gave, to the sinks and the checkpoint."""
        machine = tracked.identity.state_machine_name
        for span in out.spans:  # what states take, to know when not to poll
            if span.kind == SpanKind.STATE and span.end_ns is not None and span.state_type != "Wait":
                self.durations.observe(machine, span.name, (span.end_ns - span.start_ns) / 1e9)
        tracked.pending = Pending(
            out.spans, out.observations, out.event_times_ns,
            cursor=assembler.last_event_id, finished=assembler.finished, redrives=assembler.redrive_count,
            state=self._state(tracked, assembler),
        )  # fmt: skip
        if tracked.pending.event_times_ns:
            tracked.newest_s = max(tracked.pending.event_times_ns) / 1e9
        self._watch_map_runs(tracked, assembler)
        await self._emit(tracked, tracked.pending)

    def _state(self, tracked: Tracked, assembler: SpanAssembler) -> bytes | None:
        """The assembler's state to keep with the cursor, for an execution read from its history
        (one read from a log is rebuilt from the log, read again from the group's position);
        none when finished, or larger than MAX_STATE_BYTES (a restart then reads the history)."""
        if assembler.finished or tracked.reorder is not None:
            return None
        state = assembler.snapshot()
        return state if len(state) <= MAX_STATE_BYTES else None

    async def _new_assembler(self, tracked: Tracked) -> SpanAssembler:
        identity = tracked.identity
        # X-Ray on: join the execution's trace (a map run's child joins its map run's instead)
        if tracked.watched.machine.tracing and identity.map_run is None:
            description = await self.api.describe_execution(tracked.arn)
            header = description.get("traceHeader")
            if header:
                identity = ExecutionIdentity.from_arn(tracked.arn, trace_header=header)
                tracked.identity = identity
        return SpanAssembler(identity, self._options)

    async def _emit(self, tracked: Tracked, pending: Pending) -> None:
        """Spans to OTLP, then the cursor to the checkpoint, then observations to the registry,
        each step once, resumed where a failure left it.

        Spans go first: after a crash they are sent again, which the deterministic ids make
        harmless. Counters go last: after a crash between the checkpoint and the counters, an
        event is counted by neither process, never by both."""
        if not pending.exported:
            await self.sink.export(ExecutionSpans.of(pending.spans, tracked.identity))
            pending.exported = True
            if self._on_spans is not None:
                self._on_spans(tracked, pending.spans)
        try:
            await self.store.save(
                tracked.arn, pending.cursor, pending.finished, pending.redrives, pending.state
            )
        except CheckpointError:
            self.health.checkpoint_writes.labels("error").inc()
            self.checkpoint_failing = True
            raise
        self.checkpoint_failing = False
        self.health.checkpoint_writes.labels("ok").inc()
        observations = pending.observations
        if tracked.identity.map_run is not None:  # a child: its map run counts it (in any follow mode)
            observations = [o for o in observations if o.metric not in EXECUTION_METRICS]
        elif (
            tracked.silent_before_ns
        ):  # its start was another shard's to count, and its duration is unknown here
            observations = [o for o in observations if o.metric not in TAKEN_OVER_UNCOUNTED]
        self.workflow.apply(observations)
        self.health.events.inc(len(pending.event_times_ns))
        now_ns = int(self._wall() * 1e9)
        observe_all(self.health.lag, [max(0.0, (now_ns - when) / 1e9) for when in pending.event_times_ns])
        if self._on_events is not None:
            self._on_events(tracked, pending.event_times_ns)
        tracked.pending = None

    # ------------------------------------------------------------------ the log source

    async def _logs_loop(self) -> None:
        settings = self.config.logs
        while True:
            started = self._clock()
            try:
                await self._read_log_groups()
            except Exception:  # a bug in one pass must not end the log source for good
                log.exception("log source pass failed; trying again next interval")
            await asyncio.sleep(max(0.0, settings.interval_seconds - (self._clock() - started)))

    def _under_way(
        self, work: Coroutine[Any, Any, None], context: contextvars.Context | None = None
    ) -> asyncio.Task[None]:
        """`work` as a task that shutdown lets finish, within the grace period (see run)."""
        task = asyncio.create_task(work, context=context)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    def _log_groups(self) -> dict[str, set[str]]:
        """The log groups to read: group ARN -> the state machines read from it."""
        groups: dict[str, set[str]] = {}
        for watched in self.discovery.machines.values():
            logging_ = watched.machine.logging
            if watched.via_logs and logging_ is not None:
                for group in logging_.log_group_arns:
                    groups.setdefault(group, set()).add(watched.machine.arn)
        for tracked in self.tracked.values():  # EXPRESS map run children: their parent's group
            if tracked.group is not None and tracked.identity.map_run is not None:
                groups.setdefault(tracked.group, set())
        for watch in self.map_runs.watches.values():  # and the children yet to come, under `all`
            if self.config.map_runs.follow == "all" and watch.parent.machine.logging is not None:
                for group in watch.parent.machine.logging.log_group_arns:
                    groups.setdefault(group, set())
        return groups

    async def _read_log_groups(self) -> None:
        groups = self._log_groups()
        for arn in set(self.groups) - set(groups):
            del self.groups[arn]
        self.health.log_groups.set(len(groups))
        if not groups or self.logs_api is None:
            return
        semaphore = asyncio.Semaphore(LOG_GROUP_CONCURRENCY)

        async def one(arn: str, machines: set[str]) -> None:
            async with semaphore:
                await self._read_log_group(arn, machines)

        # Each group's pass runs to its end on shutdown (see run), as a poll does.
        tasks = [self._under_way(one(arn, machines)) for arn, machines in groups.items()]
        results = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        for arn, result in zip(groups, results, strict=True):
            if isinstance(result, Exception):  # a bug: the group is read again from its watermark
                log.error("reading the log group failed", exc_info=result, extra={"log_group_arn": arn})
        now_ms = self._wall() * 1000
        oldest = min((tail.watermark_ms for tail in self.groups.values() if tail.watermark_ms), default=None)
        self.health.log_watermark.set(0.0 if oldest is None else max(0.0, (now_ms - oldest) / 1000))
        self._forget_ended()

    async def _read_log_group(self, arn: str, machines: set[str]) -> None:
        assert self.logs_api is not None
        settings = self.config.logs
        tail = self.groups.get(arn)
        if tail is None:
            restored = self.store.watermark(WATERMARK_KEY + arn)
            start = None if restored is None else int(restored * 1000)
            if start is None and not machines:  # read for map run children only: from their start
                start = min((t.first_ms for t in self.tracked.values() if t.group == arn), default=None)
            tail = self.groups[arn] = GroupTail(arn, start)
        tail.backfills = 0
        now_ms = int(self._wall() * 1000)
        window = ReadWindow(
            int(settings.settle_seconds * 1000), int(settings.overlap_seconds * 1000),
            int(self.config.discovery.lookback_seconds * 1000),
        )  # fmt: skip
        handing: asyncio.Task[None] | None = None  # the hand-over of the page before
        try:
            # Each page is handed over as it comes, while the next one is read: a read of many
            # pages (a backlog) exports its first events while the rest are read, and a busy
            # group's reads wait for neither the sink nor the backend. One page is handed over
            # at a time (so no execution is handed over twice at once).
            async for records, again, late in tail.pages(
                self.logs_api, now_ms, window, self._log_calls_spare
            ):
                self.health.log_messages.labels("reread").inc(again)
                self.health.log_late_messages.inc(late)
                parsed = parse_records(records)
                if handing is not None:
                    await handing
                handing = self._under_way(self._take_page(parsed, machines, arn))
            if tail.late_read is not None:
                self.health.log_late_reads.labels("read" if tail.late_read else "skipped").inc()
        except SourceError as exc:
            self.health.discovery_errors.labels(exc.operation).inc()
            if not tail.failing:
                log.error("cannot read log group: %s", exc, extra={"log_group_arn": arn})
            tail.failing = True
            return
        finally:
            if handing is not None:
                await handing
        if tail.failing:
            log.info("reading the log group again", extra={"log_group_arn": arn})
        tail.failing = False
        # Reorder windows and EXPRESS deadlines run out in quiet times too; executions with
        # nothing held, pending or due are left alone (most of them, at thousands tracked).
        deadline_ms = self._express_deadline_ms(arn)
        await self._release_all(
            [t for t in self.tracked.values() if t.group == arn and self._due(t, deadline_ms)]
        )
        self._save_log_watermark(tail)

    def _express_deadline_ms(self, group: str | None) -> float:
        """An EXPRESS execution whose first event is older than this (epoch ms) and whose end was
        not read is over its maximum duration: that long before how far its group has been read
        (a group read late, its quota spent, does not make its executions overdue)."""
        tail = self.groups.get(group) if group is not None else None
        read_ms = tail.watermark_ms if tail is not None and tail.watermark_ms is not None else None
        return (
            read_ms if read_ms is not None else self._wall() * 1000
        ) - self.config.logs.express_max_seconds * 1000

    @staticmethod
    def _due(tracked: Tracked, deadline_ms: float) -> bool:
        """Whether a quiet log-read execution has something for `_release` to do."""
        return (
            tracked.assembler is None
            or tracked.backfill is not None
            or tracked.pending is not None
            or (tracked.reorder is not None and tracked.reorder.waiting)
            or (tracked.watched.machine.type == "EXPRESS" and tracked.first_ms < deadline_ms)
        )

    async def _take_page(self, parsed: Parsed, machines: set[str], group: str) -> None:
        """One page of a log group: its messages into their executions' reorder buffers, and
        what those let go to the sinks."""
        for _, reason in parsed.invalid:
            log.warning("skipping a log message: %s", reason, extra={"log_group_arn": group})
        self.health.log_messages.labels("invalid").inc(len(parsed.invalid))
        for execution_arn, events in parsed.by_execution.items():
            try:
                self._hold(execution_arn, events, machines, group)
            except Exception:  # a bug with one execution's messages must not lose the others'
                log.exception("cannot take these log messages", extra={"execution_arn": execution_arn})
                self.health.log_messages.labels("invalid").inc(len(events))
        await self._release_all([
            tracked for execution_arn in parsed.by_execution
            if (tracked := self.tracked.get(execution_arn)) is not None and tracked.reorder is not None
        ])  # fmt: skip

    async def _release_all(self, executions: list[Tracked]) -> None:
        """`_release` each execution, all at once: their spans share the sink's requests. (One
        after another, each waited for its own request: the sink's linger and a round trip to the
        backend per execution, a few executions a second for a whole log group.)"""
        await asyncio.gather(*(self._release(tracked) for tracked in executions))

    def _hold(self, arn: str, events: list[HistoryEvent], machines: set[str], group: str) -> None:
        """Put an execution's newly read events in its reorder buffer (tracking it if new)."""
        tracked = self.tracked.get(arn)
        if tracked is None:
            tracked = self._track_from_log(arn, events, machines, group)
            if tracked is None:
                return
        elif tracked.reorder is None:  # read from its history (its group is read for another's sake)
            self.health.log_messages.labels("ignored").inc(len(events))
            return
        assert tracked.reorder is not None
        if tracked.silent_before_ns:  # another shard's, from before the move (exporter.shards)
            kept = [e for e in events if e.timestamp_ns >= tracked.silent_before_ns]
            self.health.log_messages.labels("ignored").inc(len(events) - len(kept))
            events = kept
        after = tracked.assembler.last_event_id if tracked.assembler is not None else 0
        new, late = tracked.reorder.add(events, after)
        self.health.log_messages.labels("accepted").inc(new)
        self.health.log_messages.labels("late").inc(late)
        if events:
            tracked.first_ms = min(tracked.first_ms, min(e.timestamp_ns for e in events) // 1_000_000)

    def _track_from_log(
        self, arn: str, events: list[HistoryEvent], machines: set[str], group: str
    ) -> Tracked | None:
        """An execution the log shows for the first time, tracked if it is to be read from this
        log; if not, its messages are counted as what they are."""
        try:
            identity = ExecutionIdentity.from_arn(arn)
        except ValueError as exc:
            log.warning("skipping log messages: %s", exc, extra={"log_group_arn": group})
            self.health.log_messages.labels("invalid").inc(len(events))
            return None
        if arn in self._ended or arn in self.quarantined:
            self.health.log_messages.labels("late").inc(len(events))
            return None
        watched = self.discovery.machines.get(identity.state_machine_arn)
        if identity.state_machine_arn not in machines or watched is None:
            tracked = self._child_in_log(arn, identity, events)
            if tracked is None:
                self.health.log_messages.labels("ignored").inc(len(events))
            return tracked
        cursor = self.store.get(arn)
        moved = watched.taken_over_at
        if moved is not None and (cursor is None or cursor.updated_at < moved):
            cursor = None  # one from before the move is stale: another shard read on since
        if cursor is not None and cursor.finished:
            self._ended[arn] = self._clock()
            self.health.log_messages.labels("late").inc(len(events))
            return None
        tracked = Tracked(arn, identity, watched, replay_to=cursor.event_id if cursor else 0)
        if moved is not None and cursor is None:
            self._take_over_from_log(tracked, events, moved)
        tracked.reorder, tracked.group = Reorder(), group
        tracked.first_ms = min(e.timestamp_ns for e in events) // 1_000_000
        self.tracked[arn] = tracked
        self._count(tracked, +1)
        tracked.log.debug("tracking from its log (cursor %d)", tracked.replay_to)
        return tracked

    def _child_in_log(
        self, arn: str, identity: ExecutionIdentity, events: list[HistoryEvent]
    ) -> Tracked | None:
        """Under `map_runs.follow: all`, an EXPRESS child of a map run being watched (the only one
        with its label) is followed from its first message in the log (it would be listed a
        moment later)."""
        if self.config.map_runs.follow != "all" or ":express:" not in arn:
            return None
        watch = self.map_runs.watch_of_child(identity.state_machine_arn)
        if watch is None:
            return None
        first_s = min(e.timestamp_ns for e in events) / 1e9
        self.map_runs.follow(watch, Child(arn, first_s, None))
        tracked = self.tracked.get(arn)
        if tracked is not None and any(e.id == 1 for e in events):
            tracked.backfill = None  # its first event is here: nothing of it was read before
        return tracked

    def _take_over_from_log(self, tracked: Tracked, events: list[HistoryEvent], moved: float) -> None:
        """An execution read from the log of a state machine that moved to this shard, with no
        cursor of this shard since: unless its first events show it started after the move, it
        is taken over (exporter.shards). A STANDARD one is rebuilt from its history without
        exporting it (its log's later events go on from there); an EXPRESS one, which has no
        history, exports only what its log says happened after the move."""
        started = [e for e in events if e.type == "ExecutionStarted"]
        if started and started[0].timestamp_ns >= moved * 1e9:
            return  # it began here
        if tracked.watched.machine.type == "EXPRESS":
            tracked.silent_before_ns = int(moved * 1e9)
        else:
            tracked.takeover = True
            tracked.replay_to = 2**62  # the history read first (see _release_standard)
        tracked.log.info("taken over from another shard: it began before its state machine moved here")

    async def _release(self, tracked: Tracked) -> None:
        """Feed what an execution's reorder buffer lets go; end an EXPRESS execution that is past
        its maximum duration. Failures are logged; what was read stays held or pending."""
        if tracked.filling:
            return  # a poll worker reads its history; the log's events wait for it
        try:
            if tracked.backfill is not None:
                tail = self.groups.get(tracked.group) if tracked.group is not None else None
                if tail is not None:
                    if tail.backfills and not self._log_calls_spare():
                        return  # one a pass while the quota has no call to spare: the tail first
                    tail.backfills += 1
                await self._backfill(tracked)
            if tracked.pending is not None:
                await self._emit(tracked, tracked.pending)
            if tracked.watched.machine.type == "EXPRESS":
                await self._release_express(tracked)
            else:
                await self._release_standard(tracked)
        except (SourceError, ExportFailed, CheckpointError) as exc:
            tracked.log.warning("could not hand over logged events: %s", exc)
            return
        except Exception:
            tracked.log.exception("could not hand over logged events")
            return
        assembler = tracked.assembler
        if tracked.pending is None and assembler is not None and assembler.finished:
            self._ended[tracked.arn] = self._clock()
            self._untrack(tracked)

    async def _backfill(self, tracked: Tracked) -> None:
        """An EXPRESS map run child's events its group's tail read before it was followed: read
        again from the group by a filter on its ARN, into its reorder buffer."""
        assert tracked.backfill is not None and tracked.reorder is not None and tracked.group is not None
        assert self.logs_api is not None
        start_ms, end_ms = tracked.backfill
        now_ms = int((self._wall() - self.config.logs.settle_seconds) * 1000)
        end_ms = now_ms if end_ms is None else min(end_ms, now_ms)  # the rest comes through the tail
        pattern = f'{{ $.execution_arn = "{tracked.arn}" }}'
        after = tracked.assembler.last_event_id if tracked.assembler is not None else 0
        token: str | None = None
        while True:
            records, token = await self.logs_api.filter_log_events(
                tracked.group, start_ms, end_ms, token, pattern=pattern
            )
            parsed = parse_records(records)
            self.health.log_messages.labels("invalid").inc(len(parsed.invalid))
            events = parsed.by_execution.get(tracked.arn, [])
            new, late = tracked.reorder.add(events, after)
            self.health.log_messages.labels("accepted").inc(new)
            self.health.log_messages.labels("reread").inc(late)
            if not token:
                break
        tracked.backfill = None

    def _options_for(self, tracked: Tracked) -> AssemblerOptions:
        logging_ = tracked.watched.machine.logging
        partial = logging_ is not None and logging_.level != "ALL"
        return dataclasses.replace(self._options, partial=True) if partial else self._options

    async def _release_express(self, tracked: Tracked) -> None:
        assert tracked.reorder is not None
        assembler = tracked.assembler
        if assembler is None:
            assembler = tracked.assembler = SpanAssembler(tracked.identity, self._options_for(tracked))
        settings = self.config.logs
        overdue = tracked.first_ms < self._express_deadline_ms(tracked.group)
        events = tracked.reorder.take(
            assembler.last_event_id, self._clock(), 0.0 if overdue else settings.reorder_window_seconds,
            eager=assembler.options.partial,
        )  # fmt: skip
        replay = [e for e in events if e.id <= tracked.replay_to]
        if replay:
            assembler.feed(replay)  # exported before a restart: state only
            events = events[len(replay) :]
        if events:
            await self._consume(tracked, assembler, assembler.feed(events))
        if overdue and not assembler.finished:
            tracked.log.warning(
                "no %s of this EXPRESS execution in its log after %.0fs; %s",
                *(("end", settings.express_max_seconds, "closed as incomplete") if assembler.last_event_id
                  else ("message", settings.express_max_seconds, "given up")),
            )  # fmt: skip
            await self._consume(tracked, assembler, assembler.abandon())
            if not assembler.finished:  # nothing to close (no start of it was read): given up
                tracked.pending = Pending([], [], [], cursor=assembler.last_event_id, finished=True,
                                          redrives=assembler.redrive_count, exported=True)  # fmt: skip
                await self._emit(tracked, tracked.pending)
                self._ended[tracked.arn] = self._clock()
                self._untrack(tracked)

    async def _release_standard(self, tracked: Tracked) -> None:
        """A STANDARD execution read from its log: what follows on goes at once; a hole the
        reorder window did not close, or a restart, is read from its history (the truth: logs
        are best effort) by a poll worker, while the log's events wait."""
        assert tracked.reorder is not None
        assembler = tracked.assembler
        if assembler is None:
            assembler = tracked.assembler = await self._new_assembler(tracked)
        if tracked.replay_to <= assembler.last_event_id:
            reorder = tracked.reorder
            events = reorder.take(assembler.last_event_id, self._clock(), float("inf"))
            if events:
                await self._consume(tracked, assembler, assembler.feed(events))
            if not reorder.waiting:
                return
            since = reorder.hole_since if reorder.hole_since is not None else self._clock()
            if self._clock() - since < self.config.logs.reorder_window_seconds:
                return
            tracked.log.info(
                "events %s missing from the log; reading them from the history",
                "..".join(map(str, reorder.hole(assembler.last_event_id) or ())),
            )
        self._fill_from_history(tracked)

    def _fill_from_history(self, tracked: Tracked) -> None:
        """Hand a STANDARD execution read from its log to the poll workers for one history read
        (see `_filled`); its log's events wait meanwhile."""
        if not tracked.filling:
            tracked.filling = True
            self.scheduler.add(tracked.arn)
            self._wake.set()

    def _filled(self, tracked: Tracked) -> None:
        """The history read of an execution read from its log is done: the events its log held
        up to there are dropped (read from the history instead), and it goes back to its log."""
        assert tracked.reorder is not None
        tracked.filling = False
        last = tracked.assembler.last_event_id if tracked.assembler is not None else 0
        held = tracked.reorder.held
        for key in [k for k in held if k <= last]:
            del held[key]
        if not held:
            tracked.reorder.hole_since = None
        self.scheduler.remove(tracked.arn)

    def _save_log_watermark(self, tail: GroupTail) -> None:
        """The group's read position as the checkpoint keeps it: held back to the oldest event of
        an EXPRESS execution still open, whose events are read again after a restart to rebuild
        its state (STANDARD ones rebuild theirs from the history)."""
        if tail.watermark_ms is None:
            return
        position = tail.watermark_ms
        for tracked in self.tracked.values():  # (map run children are read on from their map run)
            if (
                tracked.group == tail.arn
                and tracked.watched.machine.type == "EXPRESS"
                and tracked.identity.map_run is None
            ):
                position = min(position, tracked.first_ms)
        try:
            self.store.set_watermark(WATERMARK_KEY + tail.arn, position / 1000)
        except CheckpointError as exc:
            log.warning("%s", exc)

    def _on_listed_from_logs(self, summary: ExecutionSummary, watched: WatchedMachine) -> None:
        """A STANDARD execution read from its log, listed by discovery: when it ended a while ago
        (longer than a read's settle time, interval and reorder window together) and its log did
        not show the end, its history gives the rest."""
        if summary.stop_date is None or summary.arn in self._ended:  # running, or seen to end
            return
        settings = self.config.logs
        waits = settings.settle_seconds + settings.interval_seconds + settings.reorder_window_seconds
        if self._wall() - summary.stop_date.timestamp() < waits:  # the log may still show it
            return
        tracked = self.tracked.get(summary.arn)
        if tracked is None:
            cursor = self.store.get(summary.arn)
            redriven = cursor is not None and summary.redrive_count > cursor.redrives
            if cursor is not None and cursor.finished and not redriven:
                self._ended[summary.arn] = self._clock()
                return
            assert watched.machine.logging is not None
            tracked = Tracked(summary.arn, ExecutionIdentity.from_arn(summary.arn), watched,
                              replay_to=cursor.event_id if cursor else 0)  # fmt: skip
            tracked.reorder, tracked.group = Reorder(), watched.machine.logging.log_group_arns[0]
            tracked.first_ms = int(summary.start_date.timestamp() * 1000)
            self.tracked[summary.arn] = tracked
            self._count(tracked, +1)
        if not tracked.filling:
            tracked.log.info("ended %s, but not in its log; reading its history", summary.status)
        self._fill_from_history(tracked)

    def _forget_ended(self) -> None:
        settings = self.config.logs
        keep = settings.settle_seconds + settings.overlap_seconds + settings.interval_seconds * 2 + 60
        now = self._clock()
        for arn in [arn for arn, when in self._ended.items() if now - when > keep]:
            del self._ended[arn]
