"""The threshold rules alone (domain.thresholds), over any series of values and times."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from labhooks.domain.thresholds import Change, Rule, State, due, step

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)

rules = st.one_of(
    st.builds(
        Rule,
        comparator=st.sampled_from([">", ">=", "<", "<="]),
        value=st.sampled_from([-1.0, 0.0, 8.5]),
        hysteresis=st.sampled_from([0.0, 0.2, 1.0]),
        hold_s=st.sampled_from([0.0, 5.0, 60.0]),
    ),
    st.builds(
        Rule,
        comparator=st.just("outside"),
        value=st.just(6.0),
        upper=st.just(8.5),
        hysteresis=st.sampled_from([0.0, 0.2]),
        hold_s=st.sampled_from([0.0, 5.0]),
    ),
)
points = st.lists(
    st.tuples(
        st.floats(-3, 12, allow_nan=False).map(lambda v: round(v, 2)),
        st.integers(0, 600),  # seconds after T0
    ),
    max_size=60,
)


def run(rule: Rule, series: list[tuple[float, int]]) -> tuple[State, list[Change]]:
    state, changes = State(), []
    for value, second in series:
        state, change = step(rule, state, value, T0 + timedelta(seconds=second))
        if change:
            changes.append(change)
    return state, changes


@given(rules, points)
def test_incidents_alternate_open_and_close_one_at_a_time(
    rule: Rule, series: list[tuple[float, int]]
) -> None:
    state, changes = run(rule, series)
    kinds = [c.kind for c in changes]
    assert kinds == ["opened", "closed"] * (len(kinds) // 2) + ["opened"] * (len(kinds) % 2)
    assert (state.status == "open") == (kinds[-1:] == ["opened"])


@given(rules, points)
def test_an_open_incident_closes_at_the_first_value_that_clears_it(
    rule: Rule, series: list[tuple[float, int]]
) -> None:
    state, is_open = State(), False
    for value, second in sorted(series, key=lambda p: p[1]):
        state, change = step(rule, state, value, T0 + timedelta(seconds=second))
        if is_open:
            assert (change is not None) == rule.cleared(value)
            is_open = change is None
        else:
            is_open = change is not None and change.kind == "opened"


@given(rules, points)
def test_an_incident_opens_only_after_the_condition_held_for_the_hold_time(
    rule: Rule, series: list[tuple[float, int]]
) -> None:
    """The crossed values just before an opening, back to the last one that was not crossed,
    span at least the hold time."""
    state = State()
    run_started: int | None = None  # the second the current run of crossed values began
    for value, second in sorted(series, key=lambda p: p[1]):
        if not rule.crossed(value):
            run_started = None
        elif run_started is None:
            run_started = second
        state, change = step(rule, state, value, T0 + timedelta(seconds=second))
        if change and change.kind == "opened":
            assert run_started is not None and second - run_started >= rule.hold_s


@given(st.sampled_from([0.1, 0.2, 0.5]), st.lists(st.booleans(), min_size=2, max_size=40))
def test_hysteresis_keeps_a_value_hovering_at_the_limit_from_flapping(
    hysteresis: float, above: list[bool]
) -> None:
    """pH hovering around 8.5 (just above, then just below but not past the clear line)
    opens once and never closes."""
    rule = Rule(">", 8.5, hysteresis=hysteresis)
    series = [
        (8.5 + 0.01 if up else 8.5 - hysteresis / 2, i) for i, up in enumerate([True, *above])
    ]
    _, changes = run(rule, series)
    assert [c.kind for c in changes] == ["opened"]


@given(rules, points)
def test_a_late_point_changes_nothing(rule: Rule, series: list[tuple[float, int]]) -> None:
    """Only the points that are the newest so far count; the others are as if never seen."""
    newest: list[tuple[float, int]] = []
    for value, second in series:
        if not newest or second >= newest[-1][1]:
            newest.append((value, second))
    assert run(rule, series) == run(rule, newest)


@given(rules, st.floats(-3, 12, allow_nan=False), st.integers(0, 120))
def test_a_hold_that_runs_out_without_new_points_opens_when_its_time_is_up(
    rule: Rule, value: float, quiet_s: int
) -> None:
    state, change = step(rule, State(), value, T0)
    if not rule.crossed(value) or change is not None:
        assert due(rule, state, T0 + timedelta(seconds=quiet_s))[1] is None
        return
    state, opened = due(rule, state, T0 + timedelta(seconds=quiet_s))
    if quiet_s >= rule.hold_s:
        assert opened == Change("opened", T0 + timedelta(seconds=rule.hold_s), value)
        assert state.status == "open"
    else:
        assert opened is None and state.status == "holding"


def test_a_rule_as_a_person_gives_it_is_checked_field_by_field() -> None:
    assert Rule(">", 8.5, hysteresis=0.2, hold_s=300).problems() == {}
    assert set(Rule("outside", 6.0).problems()) == {"upper"}
    assert set(Rule("outside", 8.0, upper=6.0).problems()) == {"upper"}
    assert set(Rule("outside", 6.0, upper=7.0, hysteresis=0.5).problems()) == {"hysteresis"}
    assert set(Rule(">", float("nan")).problems()) == {"value"}
    assert set(Rule(">", 1, upper=2).problems()) == {"upper"}
    assert set(Rule(">", 1, hysteresis=-1, hold_s=-5).problems()) == {"hysteresis", "hold_s"}


@given(rules)
def test_the_clear_line_in_words_is_where_values_clear(rule: Rule) -> None:
    """What the web UI says ("> 8.5, clears at 8.3 or below") is what `cleared` does."""
    words = rule.clear_line()
    numbers = [float(n) for n in re.findall(r"-?[\d.]+(?:e[-+]?\d+)?", words)]
    below, above = (math.nextafter(numbers[0], -math.inf), math.nextafter(numbers[-1], math.inf))
    if words.startswith("at ") and words.endswith(" or below"):
        assert rule.cleared(numbers[0]) and not rule.cleared(above)
    elif words.startswith("at ") and words.endswith(" or above"):
        assert rule.cleared(numbers[0]) and not rule.cleared(below)
    elif words.startswith("below "):
        assert rule.cleared(below) and not rule.cleared(numbers[0])
    elif words.startswith("above "):
        assert rule.cleared(above) and not rule.cleared(numbers[0])
    else:
        assert words.startswith("inside ") and len(numbers) == 2
        assert rule.cleared(numbers[0]) and rule.cleared(numbers[1])
        assert not rule.cleared(below) and not rule.cleared(above)
    assert rule.in_words().startswith(f"{rule.describe()}, clears {words}")


def test_a_rule_reads_as_people_say_it() -> None:
    assert Rule(">", 8.5, None, 0.2, 300).in_words() == "> 8.5, clears at 8.3 or below, held 5 min"
    assert Rule("outside", 6, 8, 0.2, 90).in_words() == (
        "outside 6 to 8, clears inside 6.2 to 7.8, held 90 s"
    )
    assert Rule("<=", 2, None, 0, 7200).in_words() == "<= 2, clears above 2, held 2 h"
    assert Rule(">=", 1234567.0).in_words() == ">= 1234567, clears below 1234567"


@given(rules, st.floats(-3, 12, allow_nan=False), st.floats(-3, 12, allow_nan=False))
def test_a_reading_dated_ahead_of_the_clock_does_not_make_the_next_one_late(
    rule: Rule, ahead: float, current: float
) -> None:
    clock = T0
    state, _ = step(rule, State(), ahead, T0 + timedelta(hours=23), clock)
    assert state.last_at == clock
    later, _ = step(rule, state, current, T0 + timedelta(seconds=1), clock + timedelta(seconds=1))
    assert later.last_value == current  # taken, not ignored as late
