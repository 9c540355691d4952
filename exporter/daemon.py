"""Exporter: the long-running loop. Discovers executions, tails each one's history, assembles
spans and observations, hands them to the sinks, and only then advances the checkpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from exporter.assembler import AssemblerOptions, SpanAssembler
from exporter.checkpoint import CheckpointError, CursorStore
from exporter.config import Config
from exporter.discovery import Discovery, WatchedMachine
from exporter.events import timestamp_ns
from exporter.health import HealthMetrics
from exporter.metrics import WorkflowMetrics
from exporter.model import ExecutionIdentity, HistoryError, Observation, SpanKind, SpanRecord
from exporter.otlp import to_readable_spans
from exporter.redact import make_redactor
from exporter.scheduler import PollScheduler
from exporter.sinks import ExportFailed, SpanSink
from exporter.source import (
    Denied,
    ExecutionSummary,
    Malformed,
    NotFound,
    SourceError,
    StateMachine,
    StepFunctionsApi,
    Throttled,
)
from exporter.tail import first_page_size, read_new_events, read_whole_history
from exporter.waits import DurationModel, quiet_until

log = logging.getLogger(__name__)

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


@dataclass(eq=False)
class Tracked:
    arn: str
    identity: ExecutionIdentity
    watched: WatchedMachine
    replay_to: int = 0  # events up to here were exported before: rebuild state, emit nothing
    last_new: int = 0  # events the last poll found: sizes the next poll's first page
    newest_s: float = 0.0  # epoch seconds of the newest event read
    assembler: SpanAssembler | None = None
    pending: Pending | None = None
    malformed_polls: int = 0  # polls in a row whose answer could not be read

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that puts the execution ARN on every line (made when needed: thousands are tracked)."""
        return logging.LoggerAdapter(log, {"execution_arn": self.arn})


class Exporter:
    def __init__(
        self, config: Config, api: StepFunctionsApi, store: CursorStore, sink: SpanSink,
        workflow: WorkflowMetrics, health: HealthMetrics, *,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
        on_spans: Callable[[Tracked, list[SpanRecord]], None] | None = None,
        on_events: Callable[[Tracked, list[int]], None] | None = None,
        scheduler: PollScheduler | None = None, budget: Callable[[], float] | None = None,
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
        self.discovery = Discovery(config, api, store, health, self._on_execution, wall)
        self.discovery.on_removed = self._on_machine_removed
        data = config.data
        self._options = AssemblerOptions(
            include_data=data.include_execution_data, include_causes=data.include_causes,
            max_data_bytes=data.max_bytes, redact=make_redactor(data.redact_paths),
            execution_name=data.execution_name, legacy_status=config.otlp.legacy_status,
        )  # fmt: skip
        self._queue: asyncio.Queue[str] = asyncio.Queue()
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
        while True:
            for key in self.scheduler.pop_due():
                self._queue.put_nowait(key)
            if self._clock() - self._staleness_at >= 1.0:  # it walks every slot: once a second
                self._staleness_at = self._clock()
                self.health.staleness.set(self.scheduler.staleness())
            next_due = self.scheduler.next_due()
            self._wake.clear()
            # A timer sets the same event as new work does. (asyncio.wait_for can swallow a
            # cancellation that lands as its timeout expires, and a shutdown would then hang.)
            alarm = None
            if next_due is not None:
                delay = max(0.0, next_due - self._clock())
                alarm = asyncio.get_running_loop().call_later(delay, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if alarm is not None:
                    alarm.cancel()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            tracked = self.tracked.get(key)
            if tracked is None:
                continue
            task = asyncio.create_task(self._poll_and_reschedule(tracked))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            try:
                await asyncio.shield(task)  # on shutdown the worker stops; the poll finishes (see run)
            except Exception:  # a bug past the poll's own handling: the worker must live on
                log.exception("rescheduling %s failed; it is polled again after a back-off", key)
                try:
                    self.scheduler.done(key, found_events=False, failed=True)
                except Exception:
                    log.exception("the scheduler refused %s; it is no longer polled", key)
                self._wake.set()

    # ------------------------------------------------------------------ tracking

    def _on_execution(self, summary: ExecutionSummary, watched: WatchedMachine) -> None:
        if summary.arn in self.quarantined:
            return
        if summary.arn in self.tracked:
            if summary.status != "RUNNING":
                self.scheduler.wake(summary.arn)
                self._wake.set()
            return
        cursor = self.store.get(summary.arn)
        redriven = cursor is not None and summary.redrive_count > cursor.redrives
        if cursor is not None and cursor.finished and summary.status != "RUNNING" and not redriven:
            return  # exported to its end already (a redrive since would show in redriveCount)
        try:
            identity = ExecutionIdentity.from_arn(summary.arn)
        except ValueError as exc:
            log.error("%s", exc)
            return
        tracked = Tracked(summary.arn, identity, watched, replay_to=cursor.event_id if cursor else 0)
        self.tracked[summary.arn] = tracked
        self.scheduler.add(summary.arn)
        self._wake.set()
        tracked.log.debug("tracking (%s, cursor %d)", summary.status, tracked.replay_to)
        self._count(tracked, +1)

    def _on_machine_removed(self, machine: StateMachine) -> None:
        """A deleted (or no longer chosen) state machine: its series go (an execution of it
        still being read would bring back the series it touches)."""
        self.workflow.forget(machine.name)

    def _untrack(self, tracked: Tracked) -> None:
        if self.tracked.pop(tracked.arn, None) is not None:
            self._count(tracked, -1)
        self.scheduler.remove(tracked.arn)

    def _count(self, tracked: Tracked, change: int) -> None:
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
            self._untrack(tracked)
            return
        not_before, guessed = quiet if quiet is not None else (None, False)
        self.scheduler.done(tracked.arn, found, not_before, failed, steady=guessed)
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

    def _quiet(self, tracked: Tracked, found: bool) -> tuple[float, bool] | None:
        """When to poll next at the earliest (monotonic time), and whether that is a guess from
        the durations of past visits (see `exporter.waits.quiet_until`); None when it may change
        any time."""
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
        if quiet.guessed and self.scheduler.idle_cap() <= self.config.polling.max_interval_seconds:
            # calls to spare: a state that ends sooner than it ever did is still seen within the
            # maximum interval. When the budget is short, early polls would be taken from the
            # executions whose states are likely to end now.
            until = min(until, now + self.config.polling.max_interval_seconds)
        return self._clock() + (until - now), quiet.guessed

    async def poll(self, tracked: Tracked) -> bool:
        """Read what is new, assemble it, emit it, checkpoint it. True if there was anything."""
        if tracked.pending is not None:
            await self._emit(tracked, tracked.pending)
        assembler = tracked.assembler
        if assembler is None:
            assembler = tracked.assembler = await self._new_assembler(tracked)
        include = self.config.data.include_execution_data
        if tracked.replay_to > assembler.last_event_id:
            events = await read_whole_history(self.api, tracked.arn, include)
            old = [e for e in events if e["id"] <= tracked.replay_to]
            assembler.feed(old)  # exported before the restart: rebuild the state only
            events = events[len(old) :]
            tracked.log.info("resumed after event %d", tracked.replay_to)
        else:
            page = first_page_size(tracked.last_new, self.config.polling.page_size)
            events = await read_new_events(self.api, tracked.arn, assembler.last_event_id, page, include)
        tracked.last_new = len(events)
        if not events:
            return False
        out = assembler.feed(events)
        machine = tracked.identity.state_machine_name
        for span in out.spans:  # what states take, to know when not to poll
            if span.kind == SpanKind.STATE and span.end_ns is not None and span.state_type != "Wait":
                self.durations.observe(machine, span.name, (span.end_ns - span.start_ns) / 1e9)
        tracked.pending = Pending(
            out.spans, out.observations, [timestamp_ns(e.get("timestamp")) for e in events],
            cursor=assembler.last_event_id, finished=assembler.finished, redrives=assembler.redrive_count,
        )  # fmt: skip
        tracked.newest_s = max(tracked.pending.event_times_ns) / 1e9
        await self._emit(tracked, tracked.pending)
        return True

    async def _new_assembler(self, tracked: Tracked) -> SpanAssembler:
        identity = tracked.identity
        if tracked.watched.machine.tracing:  # X-Ray on: join the execution's trace
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
            await self.sink.export(to_readable_spans(pending.spans, tracked.identity))
            pending.exported = True
            if self._on_spans is not None:
                self._on_spans(tracked, pending.spans)
        try:
            await self.store.save(tracked.arn, pending.cursor, pending.finished, pending.redrives)
        except CheckpointError:
            self.health.checkpoint_writes.labels("error").inc()
            self.checkpoint_failing = True
            raise
        self.checkpoint_failing = False
        self.health.checkpoint_writes.labels("ok").inc()
        self.workflow.apply(pending.observations)
        self.health.events.inc(len(pending.event_times_ns))
        now_ns = int(self._wall() * 1e9)
        for when in pending.event_times_ns:
            self.health.lag.observe(max(0.0, (now_ns - when) / 1e9))
        if self._on_events is not None:
            self._on_events(tracked, pending.event_times_ns)
        tracked.pending = None
