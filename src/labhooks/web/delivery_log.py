"""The delivery log on a subscription's page: one line per delivery, newest first, a page at a
time; filters by status, event type and time, search by event or delivery id; one delivery's
details, fetched when it is opened (the page would otherwise carry every attempt of 50
deliveries); and the actions on a delivery: resend, retry now."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from labhooks.dependencies import AppState, DbSession, State
from labhooks.domain.catalogue import EVENT_TYPES
from labhooks.domain.errors import Conflict, FieldError, InvalidInput
from labhooks.domain.outcomes import succeeded
from labhooks.domain.people import Actor
from labhooks.services import deliveries
from labhooks.services.delivery_log import (
    STATUS_CHOICES,
    LogFilter,
    LogLine,
    delivery_log,
    line_of,
    log_filter,
    outcome_in_words,
)
from labhooks.services.organizations import load_organization
from labhooks.storage.models import Delivery, DeliveryAttempt, WebhookSubscription
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.forms import parse_moment
from labhooks.web.paging import Links, Listing, back, listing, url_with
from labhooks.web.rendering import is_htmx, redirect, render
from labhooks.web.subscriptions import OVERVIEW

router = APIRouter(include_in_schema=False)
FILTERS = ("status", "event_type", "since", "until", "q")
_WHOLE_MINUTE = re.compile(r".*T\d\d:\d\d")  # a datetime-local value without seconds


def pretty(text: str | None) -> str:
    """JSON indented for reading; anything else as it is (a target may answer anything, JSON
    nested deeper than Python recurses too)."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


@dataclass(frozen=True)
class AttemptView:
    attempt: DeliveryAttempt
    outcome: str  # in words
    response_body: str

    @property
    def succeeded(self) -> bool:
        return succeeded(self.attempt.response_status, self.attempt.error)


@dataclass(frozen=True)
class Details:
    """What one opened delivery shows below its line."""

    line: LogLine
    attempts: list[AttemptView]
    body: str
    attempts_allowed: int  # the subscription's schedule: how many attempts at most
    subscription_deleted: datetime | None  # when; its deliveries stay readable

    @property
    def resent(self) -> bool:
        """Queued again (resend, replay) after attempts of an earlier schedule: the attempts
        in all are more than the place in the schedule in force."""
        delivery = self.line.delivery
        return delivery.attempt_count != delivery.schedule_position


@dataclass
class LogView:
    listing: Listing[LogLine]
    entered: dict[str, str]  # the filter fields as typed, shown again
    errors: dict[str, str]
    event_types: list[str]
    narrowed: bool  # a filter or search is in force
    opened: Details | None = None  # shown open: asked for by ?open=, or the one search result
    held: str | None = None  # why pending deliveries are not going out now
    statuses: dict[str, str] = field(default_factory=lambda: dict(STATUS_CHOICES))

    @property
    def description(self) -> str:
        """The filters in force, in words, for "No deliveries … yet"."""
        parts = []
        if status := self.entered.get("status"):
            parts.append(f"with status {STATUS_CHOICES.get(status, status)}")
        if event_type := self.entered.get("event_type"):
            parts.append(f"of type {event_type}")
        if self.entered.get("since") or self.entered.get("until"):
            parts.append("in the time range")
        if q := self.entered.get("q"):
            parts.append(f"with id {q}")
        return " ".join(parts)


def _entered_filter(request: Request) -> tuple[dict[str, str], LogFilter | None, dict[str, str]]:
    """The filter the query asks for; on a mistake, None and each field's message."""
    query = request.query_params
    entered = {name: query.get(name, "") for name in FILTERS}
    errors: list[FieldError] = []
    moments: dict[str, datetime] = {}
    for name in ("since", "until"):
        if not entered[name].strip():
            continue
        try:
            moments[name] = parse_moment(entered[name], query.get(f"{name}_offset", ""))
        except InvalidInput as exc:
            errors += [FieldError(name, e.message) for e in exc.errors]
    if "until" in moments and _WHOLE_MINUTE.fullmatch(entered["until"].strip()):
        with suppress(OverflowError):  # 9999-12-31T23:59 stays, and takes in all there is
            moments["until"] += timedelta(minutes=1)  # "to 10:30" takes in 10:30:59
    try:
        wanted = log_filter(
            entered["status"],
            entered["event_type"],
            entered["q"],
            moments.get("since"),
            moments.get("until"),
        )
    except InvalidInput as exc:
        errors += exc.errors
    if errors:
        return entered, None, {e.field: e.message for e in errors}
    return entered, wanted, {}


async def details_of(state: AppState, db: DbSession, actor: Actor, delivery_id: str) -> Details:
    """Readable as long as the delivery is, also after its subscription was deleted."""
    delivery, attempts, event = await deliveries.get_delivery(db, actor, delivery_id)
    subscription = await deliveries.subscription_of(db, delivery)
    schedule = subscription.retry_schedule or state.settings.schedule
    return Details(
        line=line_of(delivery, event),
        attempts=[
            AttemptView(a, outcome_in_words(a.response_status, a.error), pretty(a.response_body))
            for a in attempts
        ],
        body=pretty(event.payload),
        attempts_allowed=len(schedule),
        subscription_deleted=subscription.deleted_at,
    )


async def _held(db: DbSession, subscription: WebhookSubscription) -> str | None:
    if not subscription.active:
        return "held while the subscription is inactive"
    organization = await load_organization(db, subscription.organization_id)
    if not organization.webhooks_enabled:
        return "held while webhooks are switched off for the organisation"
    return None


async def log_view(
    request: Request,
    state: AppState,
    db: DbSession,
    actor: Actor,
    subscription: WebhookSubscription,
) -> LogView:
    entered, wanted, errors = _entered_filter(request)
    path = f"{OVERVIEW}/{subscription.id}"
    types = deliveries.test_event_choices(subscription)
    types += [t for t in subscription.organization_events or [] if t not in types]
    asked = entered["event_type"]
    if asked in EVENT_TYPES and asked not in types:
        # a type no longer selected, asked for by name (others that reached the subscription
        # before its selection changed are found by a search)
        types.append(asked)
    if wanted is None:  # nothing is listed until the filter is one
        empty: Listing[LogLine] = Listing([], Links())
        return LogView(empty, entered, errors, types, narrowed=True)
    newest_first = partial(delivery_log, db, actor, state.subscriptions, subscription.id, wanted)
    log = await listing(request, path, "before", newest_first, anchor="deliveries")
    view = LogView(log, entered, errors, types, narrowed=wanted.narrows)
    shown = {line.delivery.id for line in log.items}
    opened = request.query_params.get("open") or ""
    if wanted.search and len(shown) == 1:
        opened = next(iter(shown))  # the one delivery searched for: its details at once
    if opened in shown:
        view.opened = await details_of(state, db, actor, opened)
    view.held = await _held(db, subscription)
    return view


def open_link(request: Request, subscription_id: str, delivery_id: str) -> str:
    """The page with this delivery's details open: the way to them without JavaScript."""
    return url_with(
        request, f"{OVERVIEW}/{subscription_id}", {"open": delivery_id}, f"delivery-{delivery_id}"
    )


@router.get("/deliveries/{delivery_id}")
async def delivery_details(
    request: Request, state: State, db: DbSession, actor: WebActor, delivery_id: str
) -> Response:
    """One delivery's details, for the log line that was opened (htmx); a browser that comes
    here itself gets the subscription's page with them open, or, the subscription deleted, a
    page of their own."""
    details = await details_of(state, db, actor, delivery_id)
    subscription_id = details.line.delivery.subscription_id
    if is_htmx(request):
        return render(
            request,
            "_log_details.html",
            actor,
            details=details,
            subscription_id=subscription_id,
        )
    if details.subscription_deleted is None:
        return redirect(request, open_link(request, subscription_id, delivery_id))
    return render(request, "delivery.html", actor, title=f"Delivery {delivery_id}", details=details)


@router.post("/deliveries/{delivery_id}/resend", dependencies=[CsrfChecked])
async def resend(request: Request, db: DbSession, actor: WebActor, delivery_id: str) -> Response:
    return await _act_on_delivery(
        request, db, actor, delivery_id, deliveries.resend, "Delivery queued again."
    )


@router.post("/deliveries/{delivery_id}/retry-now", dependencies=[CsrfChecked])
async def retry_now(request: Request, db: DbSession, actor: WebActor, delivery_id: str) -> Response:
    """A failing delivery's next retry, made now instead of when the schedule says."""
    done = "Retrying now: the attempt shows here in a moment."
    return await _act_on_delivery(request, db, actor, delivery_id, deliveries.retry_now, done)


async def _act_on_delivery(
    request: Request,
    db: AsyncSession,
    actor: Actor,
    delivery_id: str,
    action: Callable[[AsyncSession, Actor, str], Awaitable[Delivery]],
    done: str,
) -> Response:
    """`action` on the delivery, then back to the page of the log the button was on, saying
    `done`, or why the delivery's state refused it."""
    try:
        delivery = await action(db, actor, delivery_id)
        said = done
    except Conflict as exc:
        delivery, _, _ = await deliveries.get_delivery(db, actor, delivery_id)
        said = exc.detail
    return redirect(request, back(request, f"{OVERVIEW}/{delivery.subscription_id}"), said)
