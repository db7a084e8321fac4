"""When to try a delivery again: pure functions of the schedule, the attempts made, Retry-After
and a random source.

The schedule lists the delay before each attempt, the first normally 0: the default
`0, 5, 300, 1800, 7200, 18000, 36000, 36000` is "at once, then 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 10 h". Each delay gets ±20 % jitter so that a target coming back up is not hit by every
waiting delivery at the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime
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
    if value.isascii() and value.isdigit():  # str.isdigit() is true for "²" and "٣" too
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
