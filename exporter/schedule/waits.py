"""When can an execution next change? Not before every running state is a Wait that has ended."""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from exporter.model import SpanKind, SpanRecord


def _states(definition: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every (name, state) of a definition, branches and Map iterators included."""
    states = definition.get("States")
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        yield name, state
        for branch in state.get("Branches") or ():
            if isinstance(branch, Mapping):
                yield from _states(branch)
        for key in ("Iterator", "ItemProcessor"):
            inner = state.get(key)
            if isinstance(inner, Mapping):
                yield from _states(inner)


def wait_end(definition: Mapping[str, Any] | None, state_name: str, entered_s: float) -> float | None:
    """Epoch seconds at which the Wait state `state_name`, entered at `entered_s`, ends; None when
    the definition does not say (a path into the input, or two different states of that name)."""
    if not definition:
        return None
    ends: set[float] = set()
    for name, state in _states(definition):
        if name != state_name or state.get("Type") != "Wait":
            continue
        seconds = state.get("Seconds")
        stamp = state.get("Timestamp")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            ends.add(entered_s + float(seconds))
        elif isinstance(stamp, str) and not stamp.startswith("{%"):
            try:
                ends.add(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
            except ValueError:
                return None
        else:
            return None
    return ends.pop() if len(ends) == 1 else None


@dataclass(frozen=True)
class Quiet:
    """Until when an execution is unlikely to change, and whether that is a guess."""

    until: float  # epoch seconds
    guessed: bool  # from past durations of a state, not only from Waits' known ends
    # by when it has almost surely changed (epoch seconds; None: no such time is known)
    over: float | None = None


def quiet_until(
    open_spans: list[SpanRecord], definition: Mapping[str, Any] | None,
    durations: DurationModel | None = None, state_machine: str = "",
) -> Quiet | None:  # fmt: skip
    """When the execution can next produce an event: if every innermost open span is a Wait
    state whose end the definition gives, or a state whose past visits `durations` knows, the
    earliest of those ends (for a state known from past visits, the earliest it is worth
    polling for), and the earliest by which one of them has almost surely ended."""
    parents = {span.parent_span_id for span in open_spans}
    by_id = {span.span_id: span for span in open_spans}
    leaves = [span for span in open_spans if span.span_id not in parents]
    ends = []
    overs: list[float] = []
    guessed = False
    for leaf in leaves:
        if leaf.kind in (SpanKind.TASK, SpanKind.LAMBDA, SpanKind.ACTIVITY):
            leaf = by_id.get(leaf.parent_span_id or 0, leaf)  # noqa: PLW2901 (an attempt: its state decides)
        if leaf.kind == SpanKind.PARALLEL_BRANCH:
            continue  # a branch opens with its first state: with none open, it is done
        if leaf.kind == SpanKind.STATE and leaf.state_type == "Wait":
            end = over = wait_end(definition, leaf.name, leaf.start_ns / 1e9)
        elif leaf.kind == SpanKind.STATE and durations is not None:
            end = durations.earliest_end(state_machine, leaf.name, leaf.start_ns / 1e9)
            over = durations.over_by(state_machine, leaf.name, leaf.start_ns / 1e9)
            guessed = True
        else:
            return None
        if end is None:
            return None
        ends.append(end)
        if over is not None:
            overs.append(over)
    return Quiet(min(ends), guessed, min(overs, default=None)) if ends else None


# The standard normal's z from -6 to 3 in steps of 0.05: where a state's fitted durations are
# looked up (see DurationModel._Fit).
_Z = [-6.0 + 0.05 * n for n in range(181)]
_NORMAL = NormalDist()
# log of the normal's density over its survival at each z: the hazard of z itself
_LOG_Z_HAZARD = [math.log(_NORMAL.pdf(z)) - math.log(max(1e-300, 1.0 - _NORMAL.cdf(z))) for z in _Z]
_CDF = [_NORMAL.cdf(z) for z in _Z]
_OVER_Z = _NORMAL.inv_cdf(0.995)
_TAIL_Z = _NORMAL.inv_cdf(0.005)


def _t_over_normal(dof: float) -> float:
    """Student t's 0.5% quantile over the standard normal's, for `dof` degrees of freedom
    (Cornish-Fisher's expansion: within 1% of the exact value from 8 degrees of freedom)."""
    z = _TAIL_Z
    t = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    return t / z


# A state is fitted again once an eighth of its sample is new (a fit costs a pass over its sample
# and the table: at every visit while few are known, every 8th for a state that runs often).
_REFIT = 8


class _Fit:
    """A state's visits as a lognormal, tabled on `_Z`: the hazard (the chance a second of ending,
    having run so long) made non-decreasing from the left, so a threshold gives the first
    duration at which it is reached.

    The log durations' spread is not taken from the visits alone: a few visits say little of it,
    and a lognormal fitted to them is overconfident exactly where the watch begins, in its lower
    tail. It is the Bayesian predictive one: the visits' own sum of squares weighed with a prior
    spread `sigma0` counted as `weight` visits (a scaled inverse chi-squared prior; the model
    passes the spread of the states it knows well), widened for the uncertainty of the mean
    (sqrt(1 + 1/n)) and for the predictive Student t's heavier lower tail (its 0.5% quantile over
    the normal's, with weight + n - 1 degrees of freedom)."""

    __slots__ = ("_log_hazard", "cap", "mu", "over", "sigma", "squares")

    def __init__(self, sample: list[float], cap_quantile: float, sigma0: float, weight: float) -> None:
        logs = [math.log(max(seconds, 1e-3)) for seconds in sample]
        n = len(logs)
        self.mu = sum(logs) / n
        self.squares = sum((v - self.mu) ** 2 for v in logs)  # for the prior the model pools
        dof = weight + n - 1
        scale = math.sqrt((weight * sigma0**2 + self.squares) / dof * (1 + 1 / n))
        self.sigma = max(0.02, scale * _t_over_normal(dof))
        ordered = sorted(sample)
        position = cap_quantile * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        self.cap = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
        self.over = math.exp(self.mu + self.sigma * _OVER_Z)  # all but 0.5% have ended by then
        self._log_hazard: list[float] | None = None  # tabled when first asked for

    @property
    def log_hazard(self) -> list[float]:
        """The log hazard at each z, made non-decreasing. Tabled when first looked up: a state
        that runs often is fitted again several times between two lookups."""
        if self._log_hazard is None:
            log_hazard = []
            highest = -math.inf
            shift = math.log(self.sigma) + self.mu
            sigma = self.sigma
            for z, z_hazard in zip(_Z, _LOG_Z_HAZARD, strict=True):
                # f(x) / S(x) for x = exp(mu + sigma z): z's hazard over sigma x
                value = z_hazard - shift - sigma * z
                highest = max(highest, value)
                log_hazard.append(highest)
            self._log_hazard = log_hazard
        return self._log_hazard

    def watch_from(self, log_threshold: float) -> tuple[float, float]:
        """(seconds after entry at which the hazard reaches the threshold, capped at `cap`; the
        fitted share of visits that end before then)."""
        index = bisect.bisect_left(self.log_hazard, log_threshold)
        if index >= len(_Z):
            index = len(_Z) - 1
        seconds = math.exp(self.mu + self.sigma * _Z[index])
        if seconds <= self.cap:
            return seconds, _CDF[index]
        return self.cap, _NORMAL.cdf((math.log(max(self.cap, 1e-3)) - self.mu) / self.sigma)


class DurationModel:
    """What recent visits of each state took, per state machine: a bounded sample per state,
    and from it when a visit is worth polling for its end.

    A state that has always taken at least a minute is not worth polling in its first seconds.
    Each state's visits are fitted with a lognormal, and a visit is watched from the moment its
    hazard (the chance of ending in the next second, having run so long) reaches one threshold
    shared by every state: polls go where ends are most likely, so a state of hours is watched
    from later in its typical run than one of minutes. The threshold is set so that, on average
    over the states, `early` of a state's visits end before they are watched; those are read
    late, the price of the calls saved. (Every state counts the same, however often it runs: a
    Map's iterations, hundreds of visits a run, must not make the task before the Map, whose
    end the whole fan-out waits on, the one whose visits are missed.) A state's watch never
    begins later than the `cap_quantile` of its own durations (a state the lognormal fits badly
    is not missed more often than that). A state is fitted once 3 visits are known, and again
    when an eighth of its sample is new.

    A state seen a few times says little of how its visits spread, and a spread fitted too
    narrow starts the watch too late: its ends are missed, each read as late as the watch
    begins (at 100 executions in bench.freshness, one seed in two missed over 1% of its events
    so). Each fit weighs its own visits with the spread pooled over the states known from
    `trusted_samples` visits or more that take a second or longer (instant states say nothing of
    what is polled for), counted as `prior_weight` visits; `prior_sigma` until there is one. See
    `_Fit` for the rest of the predictive spread."""

    def __init__(
        self, keep: int = 64, min_samples: int = 3, early: float = 0.002, cap_quantile: float = 0.02,
        trusted_samples: int = 8, prior_sigma: float = 0.5, prior_weight: float = 32,
    ) -> None:  # fmt: skip
        self._keep = keep
        self._min_samples = min_samples
        self._trusted_samples = trusted_samples
        self._prior_sigma = prior_sigma
        self._prior_weight = prior_weight
        # the pooled spread: sums of squares and degrees of freedom of the states it is made of
        self._pool: dict[tuple[str, str], tuple[float, int]] = {}
        self._pool_squares = 0.0
        self._pool_dof = 0
        self._early = early
        self._cap_quantile = cap_quantile
        self._samples: dict[tuple[str, str], list[float]] = {}
        self._fits: dict[tuple[str, str], _Fit] = {}
        self._unfitted: dict[tuple[str, str], int] = {}  # visits since the state was last fitted
        self._log_threshold: float | None = None  # None: to be worked out again
        self._since_solved = 0

    def observe(self, state_machine: str, state: str, seconds: float) -> None:
        key = (state_machine, state)
        sample = self._samples.setdefault(key, [])
        sample.append(seconds)
        if len(sample) > self._keep:
            del sample[0]
        unfitted = self._unfitted[key] = self._unfitted.get(key, 0) + 1
        if len(sample) >= self._min_samples and (key not in self._fits or unfitted * _REFIT >= len(sample)):
            if key not in self._fits:
                self._log_threshold = None  # a state to share the threshold with
            fit = self._fits[key] = _Fit(sample, self._cap_quantile, self.pooled_sigma(), self._prior_weight)
            self._unfitted[key] = 0
            if len(sample) >= self._trusted_samples and fit.mu >= 0.0:  # a second or longer
                self._pooled(key, fit.squares, len(sample) - 1)
        self._since_solved += 1
        if self._since_solved >= self._keep:  # now and then, not on every visit
            self._log_threshold = None
            self._since_solved = 0

    def _pooled(self, key: tuple[str, str], squares: float, dof: int) -> None:
        """A state's part of the pooled spread, in place of its part from an earlier fit."""
        old_squares, old_dof = self._pool.get(key, (0.0, 0))
        self._pool[key] = (squares, dof)
        self._pool_squares += squares - old_squares
        self._pool_dof += dof - old_dof

    def pooled_sigma(self) -> float:
        """The log durations' spread pooled over the states known well (`prior_sigma` before
        there is one)."""
        if self._pool_dof <= 0:
            return self._prior_sigma
        return math.sqrt(max(0.0, self._pool_squares) / self._pool_dof)

    def _threshold(self) -> float:
        """log of the hazard at which visits are watched: the highest that leaves no more than
        `early` of a state's visits, on average over the states, ending before their watch."""
        if self._log_threshold is None:
            fits = list(self._fits.values())

            def early(log_threshold: float) -> float:
                return sum(fit.watch_from(log_threshold)[1] for fit in fits) / max(1, len(fits))

            low, high = -40.0, 5.0  # hazards of e^-40 to e^5 a second
            for _ in range(40):
                middle = (low + high) / 2
                low, high = (middle, high) if early(middle) <= self._early else (low, middle)
            self._log_threshold = low
        return self._log_threshold

    def earliest_end(self, state_machine: str, state: str, entered_s: float) -> float | None:
        """When a visit of the state entered at `entered_s` is worth polling for its end; None
        while too few visits are known."""
        fit = self._fits.get((state_machine, state))
        if fit is None:
            return None
        return entered_s + fit.watch_from(self._threshold())[0]

    def over_by(self, state_machine: str, state: str, entered_s: float) -> float | None:
        """By when a visit entered at `entered_s` has almost surely ended (all but 0.5% of the
        fitted durations); None while too few visits are known."""
        fit = self._fits.get((state_machine, state))
        return None if fit is None else entered_s + fit.over
