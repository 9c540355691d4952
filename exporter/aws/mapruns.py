"""Distributed Map runs: their progress from `DescribeMapRun`, and which of their child
executions are read.

A map run is watched from the moment its parent's history shows its `MapRunStarted` until
`DescribeMapRun` says it ended. Every `map_runs.interval_seconds` it is described (progress
gauges; the children that finished since, counted by status) and its children are listed under
it, not under any state machine, as `map_runs.follow` says:

- `all`: every child, newest first down to the previous listing less `discovery.overlap_seconds`;
- `failed`: the children that failed, timed out or were aborted, listed by status whenever the
  description shows more of them than were listed;
- `sample` (the default): the first `map_runs.sample_size` children listed, and every failure.

A child is followed the way its type allows (see the Exporter's `_on_child`): a STANDARD one
through its history, an EXPRESS one through its parent's log group (it runs under its parent's
logging configuration); an EXPRESS child whose parent logs nowhere the exporter reads is
`unlogged`: counted only, and said so.

What the checkpoint keeps per map run (in its watermarks table, under `maprun:ARN:...`): that
it was seen, the child counts already counted, each child followed (or found unlogged), how many
were sampled, and when the run's end was counted; so a restart counts nothing twice, and the
children it was reading are read on. A run's rows go `checkpoint.retention_hours` after its end;
a parent read again after that (its history replayed up to its cursor) shows a map run with no
rows, which is then known to be over and is not watched again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from exporter.aws.discovery import WatchedMachine
from exporter.aws.source import ExecutionSummary, SourceError, StepFunctionsApi
from exporter.checkpoint import CheckpointError, CursorStore
from exporter.config import Config
from exporter.emit.health import TargetHealth
from exporter.emit.metrics import MapRunMetrics
from exporter.model import MapRun, MapRunDescription

log = logging.getLogger(__name__)

# statusFilter values of the children always followed (bar `all`), and their key in the counts
FAILURES = {"FAILED": "failed", "TIMED_OUT": "timedOut", "ABORTED": "aborted"}
FINISHED = {"SUCCEEDED": "succeeded", **FAILURES}
# the value of a child's row: followed, or an EXPRESS child that left no log to read
FOLLOWED, UNLOGGED = 1, 2


class Child(NamedTuple):
    """A child to follow: its ARN, and when it started and ended (epoch s; None if not known,
    or while it runs)."""

    arn: str
    started_at: float | None
    ended_at: float | None


@dataclass
class Watch:
    run: MapRun
    parent: WatchedMachine
    followed: int = 0  # children followed (kept in the checkpoint)
    sampled: int = 0  # of those, taken as the sample (kept in the checkpoint)
    counted: dict[str, int] = field(default_factory=dict)  # finished children counted, by status
    listed: dict[str, int] = field(default_factory=dict)  # failed children listed, by status
    listed_until: float | None = None  # `all`: the start date the last listing reached down from
    resumed: bool = False  # the children a previous process was reading are read on
    failing: bool = False
    description: MapRunDescription | None = None  # the latest
    baseline: bool = False  # taken over from another shard: what its first description shows was theirs
    children: dict[str, int] = field(default_factory=dict)  # child ARN -> FOLLOWED or UNLOGGED
    warned: bool = False  # that its EXPRESS children cannot be read
    since: float = 0.0  # when this process began to watch it (epoch s)

    @property
    def unlogged(self) -> int:
        return sum(1 for value in self.children.values() if value == UNLOGGED)


class MapRuns:
    """The map runs being watched. `on_child(child, watch)` is called for each child to follow;
    it returns `followed` (newly followed), `unlogged` (an EXPRESS child with no log to read) or
    "" (followed already, or not to be)."""

    def __init__(
        self, config: Config, api: StepFunctionsApi, store: CursorStore, metrics: MapRunMetrics,
        health: TargetHealth, on_child: Callable[[Child, Watch], str], wall: Callable[[], float],
    ) -> None:  # fmt: skip
        self.config = config
        self.api = api
        self.store = store
        self.metrics = metrics
        self.health = health
        self.on_child = on_child
        self.wall = wall
        self.watches: dict[str, Watch] = {}
        self.over: set[str] = set()  # map runs this process saw end (or found over): not watched again

    def _key(self, run: MapRun, what: str) -> str:
        return f"maprun:{run.arn}:{what}"

    def watch(
        self, run: MapRun, parent: WatchedMachine, baseline: bool = False, replayed: bool = False
    ) -> None:
        """A map run its parent's history shows. `replayed`: in the part of that history exported
        before this process (read again after a restart): a run with no rows then is one whose
        rows were pruned long after its end. `baseline`: its parent was taken over from another
        shard (exporter.shards), which counted and sampled it so far."""
        if run.arn in self.watches or run.arn in self.over:
            return
        rows = self.store.watermarks(self._key(run, ""))
        if baseline:
            for key in rows:  # from before the move: stale
                self.store.delete_watermark(key)
            rows = {}
        elif rows.get(self._key(run, "done")) or (replayed and not rows):
            self.over.add(run.arn)
            return
        stored = {key.removeprefix(self._key(run, "")): value for key, value in rows.items()}
        watch = Watch(
            run, parent, followed=int(stored.get("followed", 0)), sampled=int(stored.get("sampled", 0)),
            baseline=baseline, since=self.wall(),
        )  # fmt: skip
        watch.counted = {key: int(stored.get(key, 0)) for key in FINISHED.values()}
        watch.children = {
            key.removeprefix("child:"): int(value)
            for key, value in stored.items()
            if key.startswith("child:")
        }
        if "seen" not in stored:
            self.store.set_watermark(self._key(run, "seen"), self.wall())
        self.watches[run.arn] = watch
        self.health.map_runs.set(len(self.watches))
        log.info("watching map run %s of %s", run.map_state, run.parent_arn, extra={"map_run_arn": run.arn})

    def prune(self, retention_s: float) -> int:
        """Forget the rows of map runs that ended `retention_s` ago or more; returns how many runs."""
        cutoff = self.wall() - retention_s
        ended = [key.removesuffix(":done") for key, value in self.store.watermarks("maprun:", ":done").items()
                 if value < cutoff]  # fmt: skip
        for prefix in ended:
            self.store.delete_watermarks(prefix + ":")
        return len(ended)

    async def run_once(self) -> None:
        """One pass over the map runs being watched."""
        for watch in list(self.watches.values()):
            try:
                await self._pass(watch)
            except SourceError as exc:
                self.health.discovery_errors.labels(exc.operation).inc()
                if not watch.failing:
                    log.error("cannot read map run: %s", exc, extra={"map_run_arn": watch.run.arn})
                watch.failing = True
            except CheckpointError as exc:
                log.warning("%s", exc)
            else:
                watch.failing = False
        self.metrics.set_progress(
            [(w.run, w.description) for w in self.watches.values() if w.description is not None]
        )
        self.health.map_runs.set(len(self.watches))

    async def _pass(self, watch: Watch) -> None:
        run = watch.run
        description = await self.api.describe_map_run(run.arn)
        watch.description = description
        if watch.baseline:  # what another shard counted and sampled: taken as done
            for key in FINISHED.values():
                self.store.set_watermark(self._key(run, key), description.executions[key])
                watch.counted[key] = description.executions[key]
            watch.listed = {status: description.executions[key] for status, key in FAILURES.items()}
            watch.sampled = self.config.map_runs.sample_size
            self.store.set_watermark(self._key(run, "sampled"), watch.sampled)
            watch.baseline, watch.resumed = False, True
        if not watch.resumed:
            self._resume(watch, description)
            watch.resumed = True
        await self._list_children(watch, description)
        self._count_finished(watch, description)
        if description.status != "RUNNING":
            self._finish(watch, description)

    def _resume(self, watch: Watch, description: MapRunDescription) -> None:
        """Read on the children a previous process was following and had not read to their end."""
        followed = [arn for arn, value in watch.children.items() if value == FOLLOWED]
        if not followed and watch.followed:  # followed by a version that kept no row per child
            followed = self.store.unfinished(f"{_child_prefix(watch.run)}:")
        for arn in followed:
            cursor = self.store.get(arn)
            if cursor is None or not cursor.finished:
                self.on_child(Child(arn, description.start_date or None, None), watch)

    async def _list_children(self, watch: Watch, description: MapRunDescription) -> None:
        settings = self.config.map_runs
        if settings.follow == "all":
            await self._list_all(watch)
            return
        if settings.follow == "sample" and watch.sampled < settings.sample_size:
            await self._sample(watch, settings.sample_size - watch.sampled)
        for status, key in FAILURES.items():
            if description.executions[key] > watch.listed.get(status, 0):
                watch.listed[status] = await self._list_failed(watch, status)

    async def _list_all(self, watch: Watch) -> None:
        """Every child started since the last listing (less the overlap), newest first."""
        started = self.wall()
        floor = float("-inf")
        if watch.listed_until is not None:
            floor = watch.listed_until - self.config.discovery.overlap_seconds
        token: str | None = None
        while True:
            page, token = await self.api.list_map_run_executions(watch.run.arn, next_token=token)
            for summary in page:
                if summary.start_date.timestamp() < floor:
                    watch.listed_until = started
                    return
                self.follow(watch, _child(summary))
            if not token:
                break
        watch.listed_until = started

    async def _sample(self, watch: Watch, wanted: int) -> None:
        page, _ = await self.api.list_map_run_executions(watch.run.arn, max_results=max(1, min(1000, wanted)))
        for summary in page[:wanted]:
            if self.follow(watch, _child(summary)):
                watch.sampled += 1
        self.store.set_watermark(self._key(watch.run, "sampled"), watch.sampled)

    async def _list_failed(self, watch: Watch, status: str) -> int:
        """Every child with this status (they end in any order, so all are listed); how many."""
        listed, token = 0, None
        while True:
            page, token = await self.api.list_map_run_executions(
                watch.run.arn, status=status, next_token=token
            )
            listed += len(page)
            for summary in page:
                self.follow(watch, _child(summary))
            if not token:
                return listed

    def follow(self, watch: Watch, child: Child) -> bool:
        """Follow a child, unless it was before; whether it was taken (followed, or found unlogged)."""
        if child.arn in watch.children:
            return False
        outcome = self.on_child(child, watch)
        if outcome == "unlogged":
            watch.children[child.arn] = UNLOGGED
            self.store.set_watermark(self._key(watch.run, f"child:{child.arn}"), UNLOGGED)
            self.health.map_run_children.labels("unlogged").inc()
            return True
        if outcome != "followed":
            return False
        watch.children[child.arn] = FOLLOWED
        watch.followed += 1
        self.store.set_watermark(self._key(watch.run, f"child:{child.arn}"), FOLLOWED)
        self.store.set_watermark(self._key(watch.run, "followed"), watch.followed)
        self.health.map_run_children.labels("followed").inc()
        return True

    def watch_of_child(self, state_machine_arn: str) -> Watch | None:
        """The map run being watched whose children run as `state_machine_arn`
        (`...:stateMachine:PARENT/LABEL`); None when none is, or when several are (map runs
        whose Map states share a label: the listing by map run tells their children apart)."""
        found = [w for w in self.watches.values() if _child_machine(w.run) == state_machine_arn]
        return found[0] if len(found) == 1 else None

    def _count_finished(self, watch: Watch, description: MapRunDescription) -> None:
        """The children that finished since the last description, counted by status: the
        checkpoint first, then the counters (after a crash between the two, a child is counted
        by neither process, never by both)."""
        deltas: dict[str, int] = {}
        for status, key in FINISHED.items():
            now = description.executions[key]
            if now > watch.counted.get(key, 0):
                deltas[status] = now - watch.counted.get(key, 0)
                self.store.set_watermark(self._key(watch.run, key), now)
                watch.counted[key] = now
        for status, delta in deltas.items():
            self.metrics.children_finished(watch.run, status, delta)

    def _finish(self, watch: Watch, description: MapRunDescription) -> None:
        run = watch.run
        self.store.set_watermark(self._key(run, "done"), self.wall())
        del self.watches[run.arn]
        self.over.add(run.arn)
        self.metrics.finished(run, description.status)
        self.health.map_run_children.labels("counted").inc(
            max(0, description.executions["total"] - watch.followed - watch.unlogged)
        )
        log.info(
            "map run %s of %s ended %s: %d children, %d followed", run.map_state, run.parent_arn,
            description.status, description.executions["total"], watch.followed, extra={"map_run_arn": run.arn},
        )  # fmt: skip


def _child(summary: ExecutionSummary) -> Child:
    ended = None if summary.stop_date is None else summary.stop_date.timestamp()
    return Child(summary.arn, summary.start_date.timestamp(), ended)


def _child_machine(run: MapRun) -> str:
    """The state machine ARN its children's ARNs name: `arn:...:stateMachine:STATE_MACHINE/LABEL`."""
    head, _, rest = run.arn.partition(":mapRun:")
    return f"{head}:stateMachine:{rest.rpartition(':')[0]}"


def _child_prefix(run: MapRun) -> str:
    """What the ARNs of a map run's children begin with: `arn:...:execution:STATE_MACHINE/LABEL`
    (from the map run's `arn:...:mapRun:STATE_MACHINE/LABEL:ID`)."""
    head, _, rest = run.arn.partition(":mapRun:")
    return f"{head}:execution:{rest.rpartition(':')[0]}"
