"""Small pure parts of the daemon: redaction, token buckets, the scheduler, Wait states, the checkpoint."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path
from statistics import NormalDist

import pytest

from exporter.aws.ratelimit import RateLimiter
from exporter.checkpoint import Cursor, CursorStore
from exporter.history.redact import REDACTED, make_redactor, parse_path
from exporter.model import SpanKind, SpanRecord, Status
from exporter.schedule.scheduler import PollScheduler
from exporter.schedule.waits import DurationModel, Quiet, quiet_until, wait_end


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------- redaction


def test_redaction_by_path() -> None:
    redact = make_redactor(
        ["$.customer.email", "$..password", "$.items[*].card", "$['odd key']", "$.list[1]"]
    )
    assert redact is not None
    document = {
        "customer": {"email": "a@b.c", "name": "Ann"},
        "auth": {"password": "x", "nested": {"password": "y"}},
        "items": [{"card": "4111", "sku": 1}, {"card": "5500", "sku": 2}],
        "odd key": 1,
        "list": [0, 1, 2],
    }
    out = json.loads(redact(json.dumps(document)))
    assert out["customer"] == {"email": REDACTED, "name": "Ann"}
    assert out["auth"] == {"password": REDACTED, "nested": {"password": REDACTED}}
    assert [item["card"] for item in out["items"]] == [REDACTED, REDACTED]
    assert [item["sku"] for item in out["items"]] == [1, 2]
    assert out["odd key"] == REDACTED and out["list"] == [0, REDACTED, 2]


def test_redaction_of_text_that_is_not_json_replaces_it_whole() -> None:
    redact = make_redactor(["$.a"])
    assert redact is not None and redact('{"a": 1, "b": "trunc') == REDACTED
    assert make_redactor([]) is None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("a.b", "'a.b': a path starts with $"),
        ("$", "'$': redacting the whole document"),
        ("$.a[x]", "cannot parse at character 4"),
    ],
)
def test_bad_paths_are_named(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("$", r"\$")):
        parse_path(path)


def test_redaction_happens_before_truncation_in_the_assembler() -> None:
    from exporter.history.assembler import AssemblerOptions, SpanAssembler
    from exporter.model import ExecutionIdentity
    from simulator.builder import History

    h = History()
    h.add("ExecutionStarted", prev=0, input=json.dumps({"card": "4111111111111111", "pad": "x" * 100}))
    h.add("ExecutionSucceeded")
    options = AssemblerOptions(include_data=True, max_data_bytes=30, redact=make_redactor(["$.card"]))
    identity = ExecutionIdentity.from_arn("arn:aws:states:eu-west-1:1:execution:M:e")
    (root,) = SpanAssembler(identity, options).feed(h.events).spans
    assert root.attributes["sfn.execution.input"] == '{"card":"[REDACTED]","pad":"xx'
    assert "4111" not in json.dumps(root.attributes)


# ---------------------------------------------------------------- token buckets


def test_token_bucket_allows_the_burst_then_the_refill_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"Op": (5, 2)}, clock=clock, sleep=clock.sleep)

    async def take(n: int) -> None:
        for _ in range(n):
            await limiter.acquire("Op")

    asyncio.run(take(5))
    assert clock.slept == []  # the burst
    asyncio.run(take(4))
    assert sum(clock.slept) == pytest.approx(2.0)  # then 2 per second


def test_a_call_is_spare_only_while_one_could_go_without_waiting() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"Op": (2, 4)}, clock=clock, sleep=clock.sleep)
    assert limiter.spare("Op")
    asyncio.run(limiter.acquire("Op"))
    assert limiter.spare("Op")
    asyncio.run(limiter.acquire("Op"))
    assert not limiter.spare("Op")  # the bucket is empty
    clock.now += 0.2  # 0.8 of a token
    assert not limiter.spare("Op")
    clock.now += 0.05
    assert limiter.spare("Op")


def test_a_prepaid_call_goes_at_once_and_an_unmade_one_is_given_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"Op": (1, 1), "Other": (5, 5)}, clock=clock, sleep=clock.sleep)
    asyncio.run(limiter.acquire("Op"))  # the dispatcher takes the bucket's one call...
    paid = limiter.prepay("Op")

    async def poll() -> None:
        await limiter.acquire("Other")  # not prepaid: from its own bucket
        await limiter.acquire("Op")  # ...and the poll's first call is that one
        await limiter.acquire("Op")  # the second waits for the refill

    async def in_a_task() -> None:
        await asyncio.create_task(poll(), context=paid)  # as the daemon's workers run polls

    asyncio.run(in_a_task())
    assert clock.slept == pytest.approx([1.0])
    limiter.refund(paid)  # used: nothing to give back
    assert limiter.available("Op") == pytest.approx(0.0)
    unused = limiter.prepay("Op")
    limiter.refund(unused)  # a poll that made no call
    assert limiter.available("Op") == pytest.approx(1.0)
    limiter.refund(limiter.prepay("Op"))
    assert limiter.available("Op") == pytest.approx(1.0)  # never above the bucket


def test_throttling_halves_the_rate_once_a_second_and_calm_brings_it_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter({"Op": (10, 20)}, clock=clock, sleep=clock.sleep)
    limiter.throttled("Op")
    limiter.throttled("Op")  # the same burst: one signal
    assert limiter.rate("Op") == 10
    clock.now += 1.0
    limiter.throttled("Op")
    assert limiter.rate("Op") == 5
    clock.now += 1.5  # not calm for long enough yet
    limiter.available("Op")
    assert limiter.rate("Op") == 5
    clock.now += 20
    limiter.available("Op")
    assert limiter.rate("Op") == 20
    for _ in range(12):
        clock.now += 1.0
        limiter.throttled("Op")
    assert limiter.rate("Op") == 1.0  # the floor: 5% of 20


# ---------------------------------------------------------------- scheduler


def test_busy_executions_come_back_soon_idle_ones_back_off() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 16, clock, jitter=lambda: 1.0)
    scheduler.add("a")
    assert scheduler.pop_due() == ["a"]
    assert scheduler.pop_due() == []  # never twice at once
    intervals = []
    for _ in range(6):
        scheduler.done("a", found_events=False)
        due = scheduler.next_due()
        assert due is not None
        intervals.append(due - clock.now)
        clock.now = due
        assert scheduler.pop_due() == ["a"]
    assert intervals == [2, 4, 8, 16, 16, 16]
    scheduler.done("a", found_events=True)
    assert scheduler.next_due() == clock.now + 1


def test_urgent_polls_go_before_paced_ones_that_fell_due_earlier() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 30, clock, jitter=lambda: 1.0, budget=lambda: 1.0)
    for key in ("idle", "other", "waiter", "busy"):
        scheduler.add(key)
    assert scheduler.pop_due(2) == ["idle", "other"]  # new ones (urgent) oldest first, two at most
    assert scheduler.pop_due() == ["waiter", "busy"]
    scheduler.done("idle", found_events=False)  # backs off: paced
    scheduler.done("other", found_events=False)
    scheduler.done("waiter", found_events=False, not_before=clock.now + 3)  # a Wait ends at +3: urgent
    scheduler.done("busy", found_events=True)  # the rest of a burst, at +1: urgent
    clock.now += 10  # every one is due; the paced ones fell due first (at +2)
    assert scheduler.pop_due(1) == ["busy"]
    assert scheduler.pop_due() == ["waiter", "idle", "other"]
    scheduler.done("idle", found_events=False)
    scheduler.wake("idle")  # discovery saw it change: urgent now, not at its paced due
    assert scheduler.next_due() == clock.now
    assert scheduler.pop_due() == ["idle"]


def test_a_guessed_state_shorter_than_the_pace_is_polled_when_it_has_almost_surely_ended() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 30, clock, jitter=lambda: 1.0, budget=lambda: 0.1)
    for n in range(10):
        scheduler.add(f"e{n}")
    scheduler.pop_due()
    assert scheduler.idle_cap() == 100  # ten active executions, a call every ten seconds
    start = clock.now
    scheduler.done("e0", found_events=True, not_before=start + 10, steady=True, by=start + 30)
    scheduler.done("e1", found_events=True, not_before=start + 10, steady=True)
    scheduler.done("e2", found_events=True, not_before=start + 10, steady=True, by=start + 500)
    scheduler.done("e3", found_events=True, not_before=start + 10, steady=True, by=start + 5)
    due = {key: slot.due - start for key, slot in scheduler._slots.items() if key in ("e0", "e1", "e2", "e3")}
    # a pace after it is likely to end (each parked one leaves the pace to fewer: 90 s, then
    # 80 s), unless it has almost surely ended before that; never before it is worth polling
    assert due == {"e0": 30, "e1": 10 + 90, "e2": 10 + 80, "e3": 10}


def test_a_wait_keeps_the_execution_away_until_it_ends_unless_woken() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 16, clock)
    scheduler.add("a")
    scheduler.pop_due()
    scheduler.done("a", found_events=True, not_before=clock.now + 300)
    assert scheduler.next_due() == clock.now + 300
    scheduler.wake("a")
    assert scheduler.pop_due() == ["a"]


def test_failures_back_off_with_jitter_and_cap() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 30, clock, jitter=lambda: 0.0)
    scheduler.add("a")
    delays = []
    for _ in range(8):
        scheduler.pop_due()
        scheduler.done("a", found_events=False, failed=True)
        due = scheduler.next_due()
        assert due is not None
        delays.append(due - clock.now)
        clock.now = due
    assert delays == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0]  # half of min(30, 2^n), jitter 0


def test_overdue_executions_come_out_oldest_first_and_staleness_says_how_late() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 10, clock)
    for key in ("a", "b", "c"):
        scheduler.add(key)
        clock.now += 1
    clock.now += 5
    assert scheduler.staleness() == 8
    assert scheduler.pop_due() == ["a", "b", "c"]
    scheduler.remove("b")
    scheduler.done("b", found_events=True)  # removed meanwhile: ignored
    assert "b" not in scheduler and len(scheduler) == 2


# ---------------------------------------------------------------- Wait states

DEFINITION = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Sleep", "States": {"Sleep": {"Type": "Wait", "Seconds": 600, "End": True}}},
                {
                    "StartAt": "Until",
                    "States": {"Until": {"Type": "Wait", "Timestamp": "2030-01-01T00:00:00Z", "End": True}},
                },
            ],
            "End": True,
        },
        "ByPath": {"Type": "Wait", "SecondsPath": "$.s", "End": True},
    },
}


def span(
    name: str,
    kind: SpanKind,
    span_id: int,
    parent: int | None,
    state_type: str | None = None,
    start_s: float = 100.0,
) -> SpanRecord:
    return SpanRecord(
        1,
        span_id,
        parent,
        name,
        kind,
        int(start_s * 1e9),
        None,
        Status.UNSET,
        None,
        None,
        {},
        (),
        (),
        state_type,
    )


def test_wait_end_from_the_definition() -> None:
    assert wait_end(DEFINITION, "Sleep", 100.0) == 700.0
    assert wait_end(DEFINITION, "Until", 100.0) == 1893456000.0
    assert wait_end(DEFINITION, "ByPath", 100.0) is None
    assert wait_end(None, "Sleep", 100.0) is None


def test_quiet_only_when_every_running_leaf_is_a_known_wait() -> None:
    root = span("M", SpanKind.EXECUTION, 1, None)
    fan = span("Fan", SpanKind.STATE, 2, 1, "Parallel")
    b1, b2 = (
        span("Fan branch", SpanKind.PARALLEL_BRANCH, 3, 2),
        span("Fan branch", SpanKind.PARALLEL_BRANCH, 4, 2),
    )
    sleep = span("Sleep", SpanKind.STATE, 5, 3, "Wait", start_s=100)
    task = span("Work", SpanKind.STATE, 6, 4, "Task")
    assert quiet_until([root, fan, b1, b2, sleep], DEFINITION) == Quiet(700.0, guessed=False, over=700.0)
    assert quiet_until([root, fan, b1, b2, sleep, task], DEFINITION) is None
    assert quiet_until([root], DEFINITION) is None
    by_path = span("ByPath", SpanKind.STATE, 7, 1, "Wait")
    assert quiet_until([root, by_path], DEFINITION) is None


# ---------------------------------------------------------------- checkpoint


def test_cursor_store_survives_reopening_and_prunes_finished_ones(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000.0)
    path = str(tmp_path / "state" / "c.sqlite")
    store = CursorStore(path, clock=clock)
    store.save_now("a", 5, False)
    store.save_now("b", 9, True)
    asyncio.run(store.save("a", 7, False))
    store.set_watermark("sm", 123.5)
    store.close()
    clock.now += 3600
    store = CursorStore(path, clock=clock)
    assert store.load() == {"a": Cursor(7, False), "b": Cursor(9, True)}
    assert store.watermark("sm") == 123.5 and store.watermark("other") is None
    assert store.prune(1800) == 1  # b: finished an hour ago
    assert store.get("b") is None and store.get("a") == Cursor(7, False)
    store.delete("a")
    assert store.load() == {}
    store.close()


def test_watermarks_by_prefix_match_the_prefix_literally() -> None:
    store = CursorStore(":memory:")
    for key in ("maprun:a_b:done", "maprun:a_b:child:x", "maprun:aXb:done", "maprun:a%:done", "logs:g"):
        store.set_watermark(key, 1.0)
    assert set(store.watermarks("maprun:a_b:")) == {"maprun:a_b:done", "maprun:a_b:child:x"}
    assert set(store.watermarks("maprun:a%")) == {"maprun:a%:done"}
    assert set(store.watermarks("maprun:", ":done")) == {
        "maprun:a_b:done",
        "maprun:aXb:done",
        "maprun:a%:done",
    }
    assert store.delete_watermarks("maprun:a_b:") == 2
    assert set(store.watermarks("maprun:")) == {"maprun:aXb:done", "maprun:a%:done"}
    store.close()


def test_idle_back_off_follows_the_budget() -> None:
    clock = FakeClock()
    budget = [10.0]
    scheduler = PollScheduler(1, 30, clock, jitter=lambda: 1.0, budget=lambda: budget[0])
    for n in range(100):
        scheduler.add(f"e{n}")
    due = scheduler.pop_due()
    for key in due[:60]:  # parked in Waits
        scheduler.done(key, found_events=False, not_before=clock.now + 3600)
    for key in due[60:]:
        scheduler.done(key, found_events=False)
    assert scheduler.idle_cap() == 40 / 10  # 4 s: spare budget, polled more often than 30 s
    budget[0] = 0.5  # throttled hard: the interval stretches to what the budget sustains
    assert scheduler.idle_cap() == 40 / 0.5
    scheduler.wake("e0")  # unparked
    assert scheduler.idle_cap() == 41 / 0.5


def test_a_state_that_always_takes_a_while_is_not_polled_early() -> None:
    model = DurationModel(min_samples=8)
    assert model.earliest_end("M", "Fetch", 100.0) is None  # nothing learned yet
    for seconds in (300, 310, 290, 305, 320, 295, 315, 300) * 8:  # known well: the pool is its own
        model.observe("M", "Fetch", seconds)
    watched = model.earliest_end("M", "Fetch", 100.0)
    assert watched is not None and 100.0 + 250 < watched <= 100.0 + 290  # never after its shortest visit
    assert model.earliest_end("M", "Other", 100.0) is None
    root = span("M", SpanKind.EXECUTION, 1, None)
    fetch = span("Fetch", SpanKind.STATE, 2, 1, "Task", start_s=100)
    over = model.over_by("M", "Fetch", 100.0)
    assert over is not None and 100.0 + 320 < over < 100.0 + 400  # past the longest visit seen
    assert quiet_until([root, fetch], DEFINITION, model, "M") == Quiet(watched, guessed=True, over=over)
    assert quiet_until([root, fetch], DEFINITION, None, "M") is None
    attempt = span("lambda:invoke", SpanKind.LAMBDA, 3, 2, start_s=101)
    assert quiet_until([root, fetch, attempt], DEFINITION, model, "M") == Quiet(watched, True, over)
    for _ in range(100):
        model.observe("M", "Fetch", 1.0)  # it got fast: the old samples age out
    fast = model.earliest_end("M", "Fetch", 100.0)
    assert fast is not None and fast <= 101.0


def test_a_state_seen_a_few_times_is_fitted_with_a_spread_pooled_from_states_known_better() -> None:
    model = DurationModel()
    for seconds in (1000, 1005, 995):  # three visits that happen to agree
        model.observe("M", "Long", seconds)
    watched = model.earliest_end("M", "Long", 0.0)
    assert watched is not None and watched < 995 / 2  # fitted with the prior's spread, not theirs
    assert model.pooled_sigma() == 0.5  # nothing known well yet: the prior
    assert model._fits[("M", "Long")].sigma > 0.5  # and widened: three visits, an uncertain mean
    rng = random.Random(3)
    logs = [math.log(60) + rng.gauss(0, 0.2) for _ in range(8)]
    for value in logs:
        model.observe("M", "Known", math.exp(value))
    for _ in range(20):
        model.observe("M", "Check", 0.05)  # an instant state: not pooled, however often seen
    mean = sum(logs) / 8
    pooled = math.sqrt(sum((v - mean) ** 2 for v in logs) / 7)
    assert model.pooled_sigma() == pytest.approx(pooled)
    for seconds in (200, 201, 199):
        model.observe("M", "Other", seconds)
    other = model._fits[("M", "Other")].sigma
    assert pooled < other < 1.3 * pooled  # the pool's spread, widened a little for three visits
    for seconds in (1000, 1002, 998, 1001, 999):
        model.observe("M", "Long", seconds)
    long = model._fits[("M", "Long")].sigma
    assert long < other  # its own eight visits agree: narrower than a state seen three times,
    assert long > 0.5 * pooled  # but the pool still counts as 32 visits


def test_a_spread_fitted_from_few_visits_does_not_start_the_watch_too_late() -> None:
    # states of a spread of 0.3, each seen 3 to 12 times, beside one known from 64 visits: the
    # watch is to miss about the share asked for, not the more a fit of their own visits misses
    # (the lognormal of a few visits is too narrow, its mean uncertain)
    rng = random.Random(11)
    model = DurationModel(early=0.002)
    _lognormal_visits(model, rng, {"Known": 600.0}, 64)
    missed = []
    for n in range(200):
        state = f"S{n}"
        median = rng.uniform(60, 3600)
        _lognormal_visits(model, rng, {state: median}, rng.randint(3, 12))
        start = model.earliest_end("M", state, 0.0)
        assert start is not None
        missed.append(NormalDist().cdf(math.log(start / median) / 0.3))
    assert sum(missed) / len(missed) < 0.005  # (each state on its own visits, as before: 0.8%)


def _lognormal_visits(
    model: DurationModel, rng: random.Random, states: dict[str, float], visits: int
) -> None:
    for _ in range(visits):
        for state, median in states.items():
            model.observe("M", state, median * math.exp(rng.gauss(0, 0.3)))


def test_states_are_watched_where_their_ends_are_likeliest_leaving_the_share_asked_for_early() -> None:
    # one state of minutes and one of an hour, the same spread, ending as often as each other
    rng = random.Random(5)
    states = {"Minutes": 120.0, "Hour": 3600.0}
    model = DurationModel(early=0.01, cap_quantile=0.25)  # a cap that does not bind here
    _lognormal_visits(model, rng, states, 64)
    starts = {state: model.earliest_end("M", state, 0.0) for state in states}
    assert all(start is not None for start in starts.values())
    fresh = {
        state: [median * math.exp(rng.gauss(0, 0.3)) for _ in range(20000)]
        for state, median in states.items()
    }
    early = {state: sum(1 for d in fresh[state] if d < starts[state]) / 20000 for state in states}  # type: ignore[operator]
    # the same hazard for both: the hour-long state (whose every second is less likely to be
    # its end) is left alone for more of its typical run, so more of its visits end unwatched
    assert early["Hour"] > 2 * early["Minutes"]
    # about the 1% asked for (as the fits, from 64 visits each, see the durations)
    assert 0.002 < (early["Hour"] + early["Minutes"]) / 2 < 0.02
    equal_share = DurationModel(early=0.01, cap_quantile=0.0)  # capped at the shortest: earlier
    _lognormal_visits(equal_share, rng, states, 64)
    assert equal_share.earliest_end("M", "Hour", 0.0) <= min(equal_share._samples[("M", "Hour")])  # type: ignore[operator]


def test_a_state_visited_often_does_not_make_a_rare_one_the_one_whose_visits_are_missed() -> None:
    # a Map's iterations: fifty visits of Item for each of Fetch, whose end the fan-out waits on
    rng = random.Random(9)
    model = DurationModel(early=0.01, cap_quantile=0.25)
    for _ in range(64):
        model.observe("M", "Fetch", 300 * math.exp(rng.gauss(0, 0.3)))
        for _ in range(50):
            model.observe("M", "Item", 3 * math.exp(rng.gauss(0, 0.3)))
    start = model.earliest_end("M", "Fetch", 0.0)
    assert start is not None
    fresh = [300 * math.exp(rng.gauss(0, 0.3)) for _ in range(20000)]
    assert sum(1 for d in fresh if d < start) / 20000 < 0.03  # about 2% at most, not 25%


def test_a_state_the_lognormal_fits_badly_is_watched_no_later_than_a_low_quantile_of_its_visits() -> None:
    model = DurationModel(early=0.002, cap_quantile=0.02)
    for n in range(64):  # mostly five minutes, one visit in eight a few seconds
        model.observe("M", "Fetch", 4.0 if n % 8 == 0 else 300.0)
    start = model.earliest_end("M", "Fetch", 0.0)
    assert start is not None and start <= 4.0


def test_a_guessed_state_is_parked_until_it_is_likely_to_end_then_polled_at_the_pace() -> None:
    clock = FakeClock()
    scheduler = PollScheduler(1, 30, clock, jitter=lambda: 1.0, budget=lambda: 10.0)
    for n in range(40):
        scheduler.add(f"e{n}")
    for key in scheduler.pop_due():
        scheduler.done(key, found_events=False)
    assert scheduler.idle_cap() == 40 / 10
    assert scheduler.pop_due() == []
    clock.now += 5
    assert "e0" in scheduler.pop_due()
    # e0 entered a state whose visits all took 300 s or more: parked until then, not counted
    scheduler.done("e0", found_events=True, not_before=clock.now + 300, steady=True)
    assert scheduler.idle_cap() == 39 / 10
    assert scheduler.next_due() is not None
    due = {key: slot.due for key, slot in scheduler._slots.items()}
    assert due["e0"] == clock.now + 300 + 40 / 10  # one pace (as it was) after the likely end
    clock.now += 300
    assert scheduler.idle_cap() == 40 / 10  # from then on it shares the pace
    clock.now = due["e0"]
    assert "e0" in scheduler.pop_due()
    scheduler.done("e0", found_events=False, not_before=clock.now - 5, steady=True)
    assert scheduler._slots["e0"].due == clock.now + 40 / 10  # the pace, not a back-off from 1 s


# ---------------------------------------------------------------- logging


def test_repeated_warnings_are_one_line_per_interval_with_a_count() -> None:
    import logging

    from exporter.logs import RepeatFilter

    clock = FakeClock()
    sampler = RepeatFilter(interval_s=60, clock=clock)
    logger = logging.getLogger("test.repeat")

    def record(level: int, msg: str, *args: object) -> logging.LogRecord:
        return logger.makeRecord(logger.name, level, __file__, 1, msg, args, None)

    passed = [sampler.filter(record(logging.WARNING, "poll failed: %s", OSError(n))) for n in range(500)]
    assert passed == [True] + [False] * 499
    assert sampler.filter(record(logging.WARNING, "poll failed: %s", ValueError("x")))  # another kind
    assert sampler.filter(record(logging.ERROR, "poll failed: %s", OSError("x")))  # another level
    assert all(sampler.filter(record(logging.INFO, "resumed")) for _ in range(3))  # info passes
    clock.now += 61
    late = record(logging.WARNING, "poll failed: %s", OSError("again"))
    assert sampler.filter(late)
    assert late.getMessage() == "poll failed: again [499 more like this in the last 60 s]"
    assert not sampler.filter(record(logging.WARNING, "poll failed: %s", OSError("again")))
