"""When to try a delivery again, and what an attempt's outcome means: pure functions.

The schedule lists the delay before each attempt, the first normally 0: the default
`0, 5, 300, 1800, 7200, 18000, 36000, 36000` is "at once, then 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 10 h". Each delay gets ±20 % jitter so that a target coming back up is not hit by every
waiting delivery at the same second.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

JITTER = 0.2
MAX_RETRY_AFTER_S = 24 * 3600.0  # a Retry-After further out than this is capped, not obeyed
DEFAULT_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def parse_schedule(text: str) -> tuple[float, ...]:
    """`"0,5,300"` → (0.0, 5.0, 300.0); ValueError naming what is wrong."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("must be comma-separated numbers of seconds, e.g. 0,5,300") from None
    if not delays:
        raise ValueError("must list at least one delay")
    if any(d < 0 for d in delays):
        raise ValueError("delays cannot be negative")
    return delays


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    retry_after_s: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts, or None: give up."""
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made] * uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


class Verdict(enum.StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: an HTTP status, or an error before any answer."""

    status: int | None
    error: str | None = None
    retry_after: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    next_attempt_at: datetime | None = None
    deactivate_reason: str | None = None


def decide(
    outcome: Outcome,
    attempts_made: int,
    schedule: Sequence[float],
    now: datetime,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Decision:
    """The one place an attempt's outcome becomes the delivery's next step."""
    if outcome.succeeded:
        return Decision(Verdict.SUCCEEDED)
    if outcome.status == 410:
        reason = f"The target answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC."
        return Decision(Verdict.FAILED, deactivate_reason=reason)
    retry_after = (
        parse_retry_after(outcome.retry_after, now) if outcome.status in (429, 503) else None
    )
    delay = next_delay(attempts_made, schedule, retry_after, uniform)
    if delay is None:
        return Decision(Verdict.FAILED)
    return Decision(Verdict.RETRY, now + timedelta(seconds=delay))
