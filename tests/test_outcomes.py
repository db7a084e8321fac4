"""The delivery rules as pure functions: retry timing, Retry-After, what an attempt decides, the
rate limit. Hypothesis drives them through their whole input space."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from labhooks.domain.outcomes import (
    ATTEMPT_COLUMNS,
    Attempt,
    AutoDisable,
    DeliveryStatus,
    Verdict,
    decide,
)
from labhooks.domain.ratelimit import TokenBucket
from labhooks.domain.retry import (
    JITTER,
    MAX_RETRY_AFTER_S,
    next_delay,
    parse_retry_after,
    parse_schedule,
)
from labhooks.storage.models import DeliveryAttempt

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
schedules = st.lists(st.floats(0, 7 * 86400), min_size=1, max_size=12)
statuses = st.one_of(st.none(), st.integers(100, 599))


def attempt(status: int | None, error: str | None = None, **headers: str) -> Attempt:
    return Attempt(
        delivery_id="dlv_x",
        number=1,
        started_at=NOW,
        duration_ms=1.0,
        request_headers={},
        response_status=status,
        response_headers=dict(headers) or None,
        error=error,
    )


@given(schedules, st.integers(0, 20), st.floats(0, 1))
def test_the_delay_stays_within_the_jitter_of_the_schedule(
    schedule: list[float], made: int, where: float
) -> None:
    def uniform(low: float, high: float) -> float:
        return low + (high - low) * where

    delay = next_delay(made, schedule, uniform=uniform)
    if made >= len(schedule):
        assert delay is None  # the schedule is spent: give up
        return
    assert delay is not None
    planned = schedule[made]
    assert planned * (1 - JITTER) - 1e-6 <= delay <= planned * (1 + JITTER) + 1e-6


@given(schedules, st.integers(0, 11), st.floats(0, MAX_RETRY_AFTER_S))
def test_retry_after_is_a_floor_never_a_shortcut(
    schedule: list[float], made: int, retry_after: float
) -> None:
    delay = next_delay(made, schedule, retry_after)
    if made < len(schedule):
        assert delay is not None and delay >= retry_after


@given(st.integers(0, 10**12))
def test_retry_after_in_seconds_is_capped_at_a_day(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == min(float(seconds), MAX_RETRY_AFTER_S)


@given(st.integers(-3 * 86400, 3 * 86400))
def test_retry_after_as_an_http_date_counts_from_now(offset: int) -> None:
    moment = NOW + timedelta(seconds=offset)
    assert parse_retry_after(format_datetime(moment, usegmt=True), NOW) == min(
        max(float(offset), 0.0), MAX_RETRY_AFTER_S
    )


@given(st.text())
def test_any_retry_after_is_none_or_within_zero_and_a_day(value: str) -> None:
    parsed = parse_retry_after(value, NOW)
    assert parsed is None or 0 <= parsed <= MAX_RETRY_AFTER_S


def test_digits_that_are_not_ascii_are_no_retry_after() -> None:
    """Found by the test above: "²".isdigit() is true, and float("²") raised inside the worker."""
    for value in ("²", "٣", "5²"):
        assert parse_retry_after(value, NOW) is None
        busy = attempt(429, **{"Retry-After": value})
        assert decide(busy, 1, [0, 5], NOW, uniform=lambda a, b: 1.0).verdict is Verdict.RETRY


@given(statuses, st.sampled_from([None, "timed out"]), schedules, st.integers(1, 12))
def test_decide_maps_every_outcome_to_one_next_step(
    status: int | None, error: str | None, schedule: list[float], made: int
) -> None:
    decision = decide(attempt(status, error), made, schedule, NOW, uniform=lambda a, b: 1.0)
    if status is not None and 200 <= status < 300 and error is None:
        assert decision.verdict is Verdict.SUCCEEDED
        assert decision.status is DeliveryStatus.SUCCEEDED
    elif status == 410:
        assert decision.verdict is Verdict.FAILED and "410" in (decision.deactivate_reason or "")
    elif made >= len(schedule):
        assert decision.verdict is Verdict.FAILED and decision.deactivate_reason is None
    else:
        assert decision.verdict is Verdict.RETRY
        assert decision.status is DeliveryStatus.PENDING
        assert decision.next_attempt_at == NOW + timedelta(seconds=schedule[made])


@given(st.sampled_from([429, 503, 500, 404]), st.integers(0, 86400))
def test_retry_after_counts_only_for_429_and_503(status: int, seconds: int) -> None:
    failed = attempt(status, **{"Retry-After": str(seconds)})
    decision = decide(failed, 1, [0, 5, 5], NOW, uniform=lambda a, b: 1.0)
    assert decision.next_attempt_at is not None
    waited = (decision.next_attempt_at - NOW).total_seconds()
    assert waited == (max(5.0, seconds) if status in (429, 503) else 5.0)


def test_an_answer_that_could_not_be_stored_is_a_failure_even_when_it_was_200() -> None:
    stored = attempt(200).as_unstorable("str is not valid UTF-8")
    assert stored.response_status == 200 and stored.response_body is None
    assert "could not store" in (stored.error or "")
    assert decide(stored, 1, [0, 5], NOW).verdict is Verdict.RETRY


def test_every_attempt_field_is_a_column_of_the_delivery_log() -> None:
    columns = set(DeliveryAttempt.__table__.columns.keys()) - {"id"}
    assert set(ATTEMPT_COLUMNS) == columns


@given(st.floats(0.01, 1000))
def test_auto_disable_counts_the_setting_in_days(days: float) -> None:
    policy = AutoDisable(days)
    assert policy.cutoff(NOW) == NOW - timedelta(days=days)
    assert f"{days:g} days" in policy.reason


def test_a_schedule_setting_names_what_is_wrong() -> None:
    assert parse_schedule("0, 5,300") == (0.0, 5.0, 300.0)
    for bad, words in (("", "at least one"), ("5,x", "comma-separated"), ("-1", "negative")):
        try:
            parse_schedule(bad)
        except ValueError as exc:
            assert words in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(st.floats(0.1, 500), st.lists(st.floats(0, 2), min_size=1, max_size=200))
def test_the_token_bucket_never_lets_more_through_than_its_rate(
    rate: float, gaps: list[float]
) -> None:
    """Over any run of requests, at most a full bucket plus the rate times the time elapsed go
    out; and a request refused is told a wait after which one is allowed."""
    clock = Clock()
    bucket = TokenBucket(rate, clock)
    allowed = 0
    for gap in gaps:
        clock.now += gap
        wait = bucket.take()
        if wait == 0:
            allowed += 1
            continue
        clock.now += wait
        assert bucket.take() == 0
        allowed += 1
    assert allowed <= max(rate, 1.0) + rate * clock.now + 1e-6
