"""The delivery log as people read it: one line per delivery saying what it was and how it went,
the states the log shows, its filters and search, and an attempt's outcome in words. Reading
only: deliveries change in storage.queue alone."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.catalogue import EVENT_TYPES, ORGANIZATION_EVENT_TYPES, PING
from labhooks.domain.errors import FieldError, InvalidInput
from labhooks.domain.outcomes import DeliveryStatus, succeeded
from labhooks.domain.people import Actor
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.services.subscriptions import SubscriptionService
from labhooks.storage.models import Delivery, Event

SUMMARY_CHARACTERS = 80  # a line's summary of the event; the body is in its details


class LogState(enum.StrEnum):
    """What the log calls a delivery: its stored status, except that a pending delivery whose
    last attempt failed is failing (it is retried later), not a calm pending."""

    PENDING = "pending"  # not tried yet (or queued again after a success)
    FAILING = "failing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # given up: the schedule is spent, or 410 Gone
    CANCELLED = "cancelled"


FAILING_OR_FAILED = "failing-or-failed"
# the status filter's choices, in the order offered, with how they read
STATUS_CHOICES: dict[str, str] = {
    FAILING_OR_FAILED: "failing or failed",
    LogState.FAILING: "failing (retried later)",
    LogState.FAILED: "failed (given up)",
    LogState.PENDING: "pending",
    LogState.SUCCEEDED: "succeeded",
    LogState.CANCELLED: "cancelled",
}
_ID = re.compile(r"(evt|dlv)_[0-9a-f]{32}")


def state_of(delivery: Delivery) -> LogState:
    if delivery.status != DeliveryStatus.PENDING:
        return LogState(delivery.status)
    tried = delivery.attempt_count > 0
    if tried and not succeeded(delivery.last_status_code, delivery.last_error):
        return LogState.FAILING
    return LogState.PENDING


def _last_attempt_failed() -> ColumnElement[bool]:
    """state_of's rule (domain.outcomes.succeeded, negated) in SQL; never NULL, so that NOT
    of it is its opposite."""
    code = Delivery.last_status_code
    return and_(
        Delivery.attempt_count > 0,
        or_(Delivery.last_error.is_not(None), code.is_(None), code < 200, code >= 300),
    )


def _in_state(status: str) -> ColumnElement[bool]:
    pending = Delivery.status == DeliveryStatus.PENDING.value
    failing = and_(pending, _last_attempt_failed())
    if status == FAILING_OR_FAILED:
        return or_(failing, Delivery.status == DeliveryStatus.FAILED.value)
    if status == LogState.FAILING:
        return failing
    if status == LogState.PENDING:
        return and_(pending, not_(_last_attempt_failed()))
    return Delivery.status == status


@dataclass(frozen=True)
class LogFilter:
    """Which deliveries the log shows; `until` is exclusive."""

    status: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None  # an event id or a delivery id (the webhook-id), whole

    @property
    def narrows(self) -> bool:
        return any((self.status, self.event_type, self.since, self.until, self.search))


def log_filter(
    status: str = "",
    event_type: str = "",
    search: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> LogFilter:
    """The filter from what a person entered; InvalidInput names every field that is wrong."""
    errors = []
    if status and status not in STATUS_CHOICES:
        errors.append(FieldError("status", f"must be one of {', '.join(STATUS_CHOICES)}"))
    known = event_type == PING or event_type in EVENT_TYPES
    if event_type and not known and event_type not in ORGANIZATION_EVENT_TYPES:
        errors.append(FieldError("event_type", "is not an event type labhooks sends"))
    wanted = search.strip().strip("\"'").strip().lower()
    if wanted and not _ID.fullmatch(wanted):
        errors.append(
            FieldError(
                "q",
                "Enter a whole event id (evt_ and 32 hexadecimal digits) or delivery id (dlv_…, "
                "as the webhook-id header carries it).",
            )
        )
    if since and until and until <= since:
        errors.append(FieldError("until", "must be later than From"))
    if errors:
        raise InvalidInput(errors)
    return LogFilter(status or None, event_type or None, since, until, wanted or None)


@dataclass(frozen=True)
class LogLine:
    """One delivery as the log lists it."""

    delivery: Delivery
    state: LogState
    event_type: str
    event_id: str
    is_test: bool
    source: str | None  # "device · channel" as the body names them; None: about no device
    summary: str


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _joined(*parts: Any) -> str:
    return " ".join(text for part in parts if (text := _text(part)))


# a few words per event type on what the event says; the body is in the details
_SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    PING: lambda d: "about no device",
    "data_point.created": lambda d: _joined(d.get("value"), d.get("unit")),
    "device.status_changed": lambda d: (
        f"{_text(d.get('previous_status'))} → {_text(d.get('status'))}"
        if d.get("previous_status")
        else _text(d.get("status"))
    ),
    "incident.opened": lambda d: _joined(
        d.get("value"), d.get("comparator"), d.get("threshold"), f"({_text(d.get('level'))})"
    ),
    "command.completed": lambda d: f"{_text(d.get('command'))}: {_text(d.get('result'))}",
    "command.failed": lambda d: f"{_text(d.get('command'))} failed: {_text(d.get('error'))}",
    "run.started": lambda d: _joined(d.get("run_id"), d.get("program")),
    "run.completed": lambda d: (
        f"{_joined(d.get('run_id'), d.get('program'))}: {_text(d.get('outcome'))}"
    ),
}
_SUMMARIES["incident.closed"] = _SUMMARIES["incident.opened"]


def line_of(delivery: Delivery, event: Event) -> LogLine:
    try:
        body = json.loads(event.payload)
        data = body["data"] if isinstance(body.get("data"), dict) else {}
    except (ValueError, AttributeError, RecursionError):  # a damaged body still lists
        data = {}
    device, channel = data.get("device"), data.get("channel")
    source = None
    if isinstance(device, dict) and isinstance(channel, dict):
        source = f"{_text(device.get('name'))} · {_text(channel.get('name'))}"
    summarize = _SUMMARIES.get(event.type)
    summary = summarize(data) if summarize else ""
    if len(summary) > SUMMARY_CHARACTERS:
        summary = summary[: SUMMARY_CHARACTERS - 1] + "…"
    return LogLine(
        delivery=delivery,
        state=state_of(delivery),
        event_type=event.type,
        event_id=event.id,
        is_test=event.is_test,
        source=source,
        summary=summary,
    )


async def delivery_log(
    db: AsyncSession,
    actor: Actor,
    subscriptions: SubscriptionService,
    subscription_id: str,
    wanted: LogFilter,
    page: PageRequest,
) -> Page[LogLine]:
    """The subscription's deliveries that `wanted` lets through, newest first, as log lines."""
    await subscriptions.get(db, actor, subscription_id)
    statement = select(Delivery).where(Delivery.subscription_id == subscription_id)
    if wanted.status:
        statement = statement.where(_in_state(wanted.status))
    if wanted.event_type:
        statement = statement.join(Event, Event.id == Delivery.event_id).where(
            Event.type == wanted.event_type
        )
    if wanted.since:
        statement = statement.where(Delivery.created_at >= wanted.since)
    if wanted.until:
        statement = statement.where(Delivery.created_at < wanted.until)
    if wanted.search:
        statement = statement.where(
            or_(Delivery.id == wanted.search, Delivery.event_id == wanted.search)
        )
    found = await fetch_page(db, statement, Delivery.id, page, descending=True)
    event_ids = {d.event_id for d in found.items}
    events = {e.id: e for e in await db.scalars(select(Event).where(Event.id.in_(event_ids)))}
    return Page([line_of(d, events[d.event_id]) for d in found.items], found.next_cursor)


def outcome_in_words(status: int | None, error: str | None) -> str:
    """What an attempt's answer, or its lack of one, means for the person reading the log."""
    if error:
        said = error[0].upper() + error[1:]
        if error.startswith("timed out"):
            return (
                f"No answer in time. {said}. A receiver should answer at once and do slow work "
                "afterwards (the limit is LABHOOKS_DELIVERY_TIMEOUT)."
            )
        if error.startswith("could not connect"):
            return f"The target could not be reached. {said}. Is the receiver running there?"
        if status is not None and 200 <= status < 300:
            return f"The target answered {status}, but the answer could not be kept. {said}."
        return f"{said}."
    if status is None:
        return "No answer."
    phrase = _phrase(status)
    if 200 <= status < 300:
        return f"Delivered: the target answered {phrase}."
    if status == 410:
        return (
            f"The target answered {phrase}: labhooks stopped retrying and deactivated the "
            "subscription. Activate it again once the target wants deliveries."
        )
    if status == 429:
        return (
            f"The target answered {phrase}: it asks for fewer requests. Retried no sooner than "
            "its Retry-After says."
        )
    if status in (401, 403):
        return (
            f"The target refused the request ({phrase}): check the headers it needs, such as an "
            "API key, on this subscription's form."
        )
    if status == 404:
        return f"The target answered {phrase}: is the target URL's path right?"
    if 400 <= status < 500:
        return f"The target refused the request ({phrase}); its answer below may say why."
    if 500 <= status < 600:
        return (
            f"The target failed while handling the request ({phrase}): an error on the "
            "receiving side; its answer below may say why."
        )
    return f"The target answered {phrase}."


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
