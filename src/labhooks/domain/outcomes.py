"""A delivery's life in the domain's terms: the states it is stored in, the record of one
attempt, what an attempt's outcome decides, and when a subscription that only fails is switched
off. Pure: the queue in `storage` applies these, the worker in `delivery` produces them.

    pending ──attempt──▶ pending      a retry is due later (the verdict RETRY)
       │           └───▶ succeeded    a 2xx answer
       │           └───▶ failed       410 Gone, or the schedule is spent ──resend, replay──▶ pending
       └──subscription or its owner deleted──▶ cancelled
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta

from labhooks.domain.retry import next_delay, parse_retry_after


class DeliveryStatus(enum.StrEnum):
    """What is stored in `deliveries.status`."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Verdict(enum.StrEnum):
    """What one attempt decided for its delivery."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"


_STATUS_AFTER = {
    Verdict.SUCCEEDED: DeliveryStatus.SUCCEEDED,
    Verdict.RETRY: DeliveryStatus.PENDING,
    Verdict.FAILED: DeliveryStatus.FAILED,
}


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    next_attempt_at: datetime | None = None
    deactivate_reason: str | None = None

    @property
    def status(self) -> DeliveryStatus:
        return _STATUS_AFTER[self.verdict]


@dataclass(frozen=True)
class Attempt:
    """One try at sending a delivery: what the sender made of it, and the row the delivery log
    stores (its fields are the columns of `delivery_attempts`)."""

    delivery_id: str
    number: int
    started_at: datetime
    duration_ms: float
    request_headers: dict[str, str]  # as sent, custom header values masked
    response_status: int | None = None
    response_headers: dict[str, str] | None = None
    response_body: str | None = None  # the first 64 KiB
    response_note: str | None = None  # what was escaped to store the answer, if anything
    error: str | None = None  # why there was no usable answer

    @property
    def succeeded(self) -> bool:
        return succeeded(self.response_status, self.error)

    def header(self, name: str) -> str | None:
        """A response header, by case-insensitive name."""
        wanted = name.lower()
        return next(
            (v for k, v in (self.response_headers or {}).items() if k.lower() == wanted), None
        )

    def as_unstorable(self, reason: str) -> Attempt:
        """This attempt without the answer that could not be stored, failed with the reason."""
        return replace(
            self,
            response_headers=None,
            response_body=None,
            response_note=None,
            error=f"labhooks could not store this attempt's answer: {reason}",
        )


def succeeded(response_status: int | None, error: str | None) -> bool:
    """An attempt succeeded when the target answered 2xx and nothing went wrong after (an
    answer that could not be stored, say): the rule decide() and the delivery log share."""
    return error is None and response_status is not None and 200 <= response_status < 300


ATTEMPT_COLUMNS = tuple(field.name for field in fields(Attempt))


def decide(
    attempt: Attempt,
    attempts_made: int,
    schedule: Sequence[float],
    now: datetime,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Decision:
    """The one place an attempt's outcome becomes the delivery's next step. An attempt with an
    error is a failure whatever its status (an answer that could not be stored, say)."""
    if attempt.succeeded:
        return Decision(Verdict.SUCCEEDED)
    if attempt.response_status == 410:
        reason = f"The target answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC."
        return Decision(Verdict.FAILED, deactivate_reason=reason)
    retry_after = (
        parse_retry_after(attempt.header("retry-after"), now)
        if attempt.response_status in (429, 503)
        else None
    )
    delay = next_delay(attempts_made, schedule, retry_after, uniform)
    if delay is None:
        return Decision(Verdict.FAILED)
    return Decision(Verdict.RETRY, now + timedelta(seconds=delay))


@dataclass(frozen=True)
class AutoDisable:
    """A subscription whose every attempt failed for `after_days` is deactivated, with a reason
    its owner sees; one success ends the failing streak."""

    after_days: float

    def cutoff(self, now: datetime) -> datetime:
        """Failing since this moment or earlier: deactivate."""
        return now - timedelta(days=self.after_days)

    @property
    def reason(self) -> str:
        return (
            f"Deactivated automatically: every delivery attempt failed for {self.after_days:g} "
            "days. Fix the target, then activate it again."
        )
