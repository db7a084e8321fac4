"""Channel thresholds: when a channel's values open and close an incident.

A threshold is crossed by a value beyond its limit (`>`, `>=`, `<`, `<=`, or `outside` a range).
It opens an incident once it has stayed crossed for `hold_s` seconds (by the points' own times,
`occurred_at`), and the incident closes at the first value back past the limit by at least
`hysteresis`: open above 8.5, close below 8.3 is `> 8.5` with hysteresis 0.2, so a value hovering
at 8.5 does not open and close an incident with every reading. A value between the limit and the
clear line changes nothing: an open incident stays open, and a hold in progress ends (the
condition no longer holds).

Points are taken in the order they occurred. One older than the newest point a threshold has
seen changes nothing (a late reading does not rewrite what was opened or closed); points of one
batch are sorted by time first. The newest time remembered is never later than the judge's
clock, so a reading dated ahead by a drifting device clock does not make the readings after it
late. A hold whose time passes without a new point (the value stays
bad, the device goes quiet) opens the incident when the time is up (`due`), as the worker's timer
checks.

Pure rules: no database, no web framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

Comparator = Literal[">", ">=", "<", "<=", "outside"]
Level = Literal["warning", "critical"]
Status = Literal["normal", "holding", "open"]
COMPARATORS: tuple[Comparator, ...] = (">", ">=", "<", "<=", "outside")
MAX_HOLD_S = 7 * 24 * 3600  # a week: a hold longer than that is a different question
LEVELS: tuple[Level, ...] = ("warning", "critical")


@dataclass(frozen=True)
class Rule:
    comparator: Comparator
    value: float  # the limit; with `outside`, the low end of the range
    upper: float | None = None  # with `outside`, the high end
    hysteresis: float = 0.0
    hold_s: float = 0.0

    def problems(self) -> dict[str, str]:
        """field → what is wrong with it, for a rule as given by a person."""
        found: dict[str, str] = {}
        if self.comparator not in COMPARATORS:
            found["comparator"] = f"must be one of {', '.join(COMPARATORS)}"
        for name, number in (("value", self.value), ("upper", self.upper)):
            if number is not None and not math.isfinite(number):
                found[name] = "must be a finite number"
        if self.comparator == "outside":
            if self.upper is None:
                found["upper"] = "outside a range needs its upper end"
            elif "value" not in found and "upper" not in found and self.upper <= self.value:
                found["upper"] = "must be above the lower end (value)"
        elif self.upper is not None:
            found["upper"] = "only a range (outside) has an upper end"
        if not (math.isfinite(self.hysteresis) and self.hysteresis >= 0):
            found["hysteresis"] = "must be zero or more"
        elif (
            self.comparator == "outside"
            and self.upper is not None
            and not found
            and 2 * self.hysteresis >= self.upper - self.value
        ):
            found["hysteresis"] = "must leave room inside the range to clear (under half its width)"
        elif "value" not in found and not all(
            math.isfinite(line)
            for line in (self.value - self.hysteresis, self.value + self.hysteresis)
        ):
            found["hysteresis"] = "is too large for the value: the clear line is beyond any number"
        if not (math.isfinite(self.hold_s) and 0 <= self.hold_s <= MAX_HOLD_S):
            found["hold_s"] = f"must be 0 to {MAX_HOLD_S} seconds (a week)"
        return found

    def crossed(self, value: float) -> bool:
        match self.comparator:
            case ">":
                return value > self.value
            case ">=":
                return value >= self.value
            case "<":
                return value < self.value
            case "<=":
                return value <= self.value
            case "outside":
                assert self.upper is not None
                return value < self.value or value > self.upper

    def cleared(self, value: float) -> bool:
        """Back past the limit by the hysteresis (with none: simply not crossed)."""
        margin = self.hysteresis
        match self.comparator:
            case ">":
                return value <= self.value - margin
            case ">=":
                return value < self.value - margin
            case "<":
                return value >= self.value + margin
            case "<=":
                return value > self.value + margin
            case "outside":
                assert self.upper is not None
                return self.value + margin <= value <= self.upper - margin

    def describe(self) -> str:
        """The limit: "> 8.5", "outside 6 to 8"."""
        if self.comparator == "outside":
            return f"outside {_number(self.value)} to {_number(self.upper)}"
        return f"{self.comparator} {_number(self.value)}"

    def clear_line(self) -> str:
        """Where a value must come back to for the incident to close, in words (`cleared`)."""
        margin = self.hysteresis
        match self.comparator:
            case ">":
                return f"at {_number(self.value - margin)} or below"
            case ">=":
                return f"below {_number(self.value - margin)}"
            case "<":
                return f"at {_number(self.value + margin)} or above"
            case "<=":
                return f"above {_number(self.value + margin)}"
            case "outside":
                assert self.upper is not None
                low, high = self.value + margin, self.upper - margin
                return f"inside {_number(low)} to {_number(high)}"

    def in_words(self) -> str:
        """The whole rule as people read it: "> 8.5, clears at 8.3 or below, held 5 min"."""
        words = f"{self.describe()}, clears {self.clear_line()}"
        return f"{words}, held {_duration(self.hold_s)}" if self.hold_s > 0 else words


def _number(value: float | None) -> str:
    """Ten significant digits: 8.5 - 0.2 reads 8.3, and 1234567 is not 1.23457e+06."""
    return f"{value:.10g}"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{_number(seconds / size)} {unit}"
    return f"{_number(seconds)} s"


@dataclass(frozen=True)
class State:
    """Where a threshold stands: `since` is when the hold began (holding) or the incident opened
    (open); `last_at` and `last_value` are the newest point it has taken."""

    status: Status = "normal"
    since: datetime | None = None
    last_at: datetime | None = None
    last_value: float | None = None


@dataclass(frozen=True)
class Change:
    kind: Literal["opened", "closed"]
    at: datetime
    value: float


def step(
    rule: Rule, state: State, value: float, at: datetime, now: datetime | None = None
) -> tuple[State, Change | None]:
    """The state after one more point, and the incident it opens or closes, if any. With `now`
    (the judge's clock), the newest time remembered is never later than it: one reading dated
    ahead by a drifting device clock must not make every reading until then late."""
    state, change = _step(rule, state, value, at)
    if now is not None and state.last_at is not None and state.last_at > now:
        state = replace(state, last_at=now)
    return state, change


def _step(rule: Rule, state: State, value: float, at: datetime) -> tuple[State, Change | None]:
    if state.last_at is not None and at < state.last_at:
        return state, None  # late: history is not rewritten
    seen = replace(state, last_at=at, last_value=value)
    if state.status == "open":
        if rule.cleared(value):
            return State("normal", None, at, value), Change("closed", at, value)
        return seen, None
    if not rule.crossed(value):
        return State("normal", None, at, value), None
    since = state.since if state.status == "holding" and state.since is not None else at
    if at - since >= timedelta(seconds=rule.hold_s):
        return State("open", at, at, value), Change("opened", at, value)
    return State("holding", since, at, value), None


def due(rule: Rule, state: State, now: datetime) -> tuple[State, Change | None]:
    """A hold whose time has passed without a new point opens the incident at the moment the
    hold was complete, with the last value seen."""
    if state.status != "holding" or state.since is None or state.last_value is None:
        return state, None
    opens_at = state.since + timedelta(seconds=rule.hold_s)
    if now < opens_at:
        return state, None
    return replace(state, status="open", since=opens_at), Change(
        "opened", opens_at, state.last_value
    )


def holds_until(rule: Rule, state: State) -> datetime | None:
    """When a hold in progress would open the incident, for the timer to look then."""
    if state.status != "holding" or state.since is None:
        return None
    return state.since + timedelta(seconds=rule.hold_s)
