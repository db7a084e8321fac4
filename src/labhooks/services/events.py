"""Publishing events: validate, fan out to matching subscriptions, queue, in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.catalogue import EVENT_TYPES, occurred_in_utc, webhook_payload
from labhooks.domain.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooManyRequests,
)
from labhooks.domain.ids import new_id
from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.services import lab_rules
from labhooks.services.devices import accessible_channels
from labhooks.services.directory import Directory, directory
from labhooks.services.fanout import fan_out
from labhooks.services.inputs import Input
from labhooks.signals import Signal
from labhooks.storage import events as events_table
from labhooks.storage.models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    Event,
    WebhookSubscription,
    utcnow,
)

MAX_BATCH = 1000
MAX_WAIT_S = 30.0
POLL_S = 1.0  # how often a waiting publisher looks again when no signal woke it


class EventIn(Input):
    device_id: str = Field(max_length=40)
    channel_key: str | None = Field(None, max_length=100)
    channel_id: str | None = Field(None, max_length=40)
    type: str = Field(max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = Field(None, description="When it happened; default: now")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Publishing the same key again with the same event is a no-op; with a "
        "different one, a 409",
    )

    @field_validator("occurred_at", mode="after")
    @classmethod
    def _in_window(cls, moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        try:
            return occurred_in_utc(moment, datetime.now(UTC))
        except ValueError as exc:
            raise PydanticCustomError("occurred_at_window", str(exc)) from None


@dataclass(frozen=True)
class Published:
    event_ids: list[str]
    duplicate: list[bool]
    deliveries: list[tuple[str, str]]  # (delivery id, subscription id)


@dataclass(frozen=True)
class _Valid:
    """An event that passed every rule, with plain values only (nothing a rollback expires)."""

    event: EventIn
    device: dict[str, Any]  # as the webhook body names it
    channel: dict[str, Any]
    data: dict[str, Any]
    watched: bool  # the device has a heartbeat (lab rules)
    judged: bool  # the channel has thresholds (lab rules)


def require_publisher(actor: Actor) -> str:
    """Organisation administrators publish, and the gateway tokens they issued, for as long as
    their issuer is one: a token is worth what its user is now."""
    organization_id = actor.require_organization()
    if actor.role is not Role.ADMIN:
        raise PermissionDenied(
            "Only organisation administrators publish, and the gateway tokens they issue; a "
            "gateway token stops publishing when its issuer is no longer one."
        )
    return organization_id


async def publish(
    db: AsyncSession, actor: Actor, events: Sequence[EventIn], indexed: bool
) -> Published:
    """Publishes all events or none. `indexed`: field errors start with the event's index."""
    organization_id = require_publisher(actor)
    if len(events) > MAX_BATCH:
        raise InvalidInput.single("body", f"at most {MAX_BATCH} events per request")
    found = await directory(db, organization_id)
    valid = _validate(found, events, indexed, actor.device_id)
    return await _store(db, actor, found, valid, indexed)


def _validate(
    found: Directory,
    events: Sequence[EventIn],
    indexed: bool,
    only_device_id: str | None = None,
) -> list[_Valid]:
    """`only_device_id`: the device a gateway token is held to; another device's event is a
    422 on its `device_id`, reported with the batch's other field errors."""
    devices = found.devices
    errors: list[FieldError] = []
    valid: list[_Valid] = []
    for index, event in enumerate(events):
        at = f"{index}." if indexed else ""
        if only_device_id is not None and event.device_id != only_device_id:
            errors.append(
                FieldError(
                    f"{at}device_id",
                    f"this token publishes only for device {only_device_id}",
                )
            )
            continue
        device = devices.get(event.device_id)
        if device is None:
            errors.append(
                FieldError(f"{at}device_id", "no device with this id in your organisation")
            )
            continue
        channel = device.channel(event.channel_id, event.channel_key)
        if channel is None:
            field = "channel_id" if event.channel_id else "channel_key"
            known = ", ".join(c.key for c in device.channels) or "none"
            message = (
                f"device {device.name!r} has no such channel (its channel keys: {known})"
                if event.channel_id or event.channel_key
                else "give channel_key or channel_id"
            )
            errors.append(FieldError(f"{at}{field}", message))
            continue
        event_type = EVENT_TYPES.get(event.type)
        if event_type is None or event.type not in channel.trigger_events:
            offered = ", ".join(channel.trigger_events) or "no events"
            errors.append(
                FieldError(
                    f"{at}type",
                    f"channel {channel.key!r} does not offer {event.type!r}; it offers {offered}",
                )
            )
            continue
        try:
            data = event_type.validate(event.data, field=f"{at}data")
        except InvalidInput as exc:
            errors += exc.errors
            continue
        valid.append(
            _Valid(
                event,
                device.reference,
                channel.reference,
                data,
                device.watched,
                channel.has_thresholds,
            )
        )
    if errors:
        raise InvalidInput(errors)
    return valid


async def _store(
    db: AsyncSession, actor: Actor, found: Directory, valid: list[_Valid], indexed: bool
) -> Published:
    """The new events and their deliveries in one transaction. A key stored before, earlier in
    the batch, or by a request that committed it while this one ran, makes a duplicate when the
    event is the same, and a 409 naming the key when it is not."""
    organization_id = actor.require_organization()
    keys = {v.event.idempotency_key for v in valid if v.event.idempotency_key}
    known = await events_table.by_key(db, organization_id, keys)
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}  # event id → row, for events new to this request
    event_ids: list[str] = []
    duplicate: list[bool] = []
    conflicts: list[FieldError] = []
    for index, item in enumerate(valid):
        key = item.event.idempotency_key
        fingerprint = _fingerprint(item)
        if key and key in known:
            event_id, stored = known[key]
            if stored is not None and stored != fingerprint:
                conflicts.append(_reused(key, index if indexed else None))
            event_ids.append(event_id)
            duplicate.append(True)
            continue
        event_id = new_id("evt")
        if key:
            known[key] = (event_id, fingerprint)
        event_ids.append(event_id)
        duplicate.append(False)
        occurred_at = item.event.occurred_at or now
        rows[event_id] = {
            "id": event_id,
            "organization_id": organization_id,
            "device_id": item.device["id"],
            "channel_id": item.channel["id"],
            "type": item.event.type,
            "occurred_at": occurred_at,
            "payload": webhook_payload(
                event_id=event_id,
                event_type=item.event.type,
                occurred_at=occurred_at,
                device=item.device,
                channel=item.channel,
                data=item.data,
            ),
            "idempotency_key": key,
            "request_fingerprint": fingerprint,
            "published_by_token_id": actor.token_id,
            "is_test": False,
            "created_at": now,
        }
    if conflicts:
        raise _conflict(conflicts)
    stored_ids = await events_table.insert_new(db, list(rows.values()))
    if lost := {i: str(row["idempotency_key"]) for i, row in rows.items() if i not in stored_ids}:
        # another request committed these keys after we looked: its events are the ones
        winners = await events_table.by_key(db, organization_id, lost.values())
        for index, event_id in enumerate(event_ids):
            if event_id in lost:
                key = lost[event_id]
                winner_id, stored = winners[key]
                if stored is not None and stored != rows[event_id]["request_fingerprint"]:
                    conflicts.append(_reused(key, index if indexed else None))
                event_ids[index], duplicate[index] = winner_id, True
        if conflicts:
            raise _conflict(conflicts)
    fresh = [row for i, row in rows.items() if i in stored_ids]
    watched = {v.device["id"] for v in valid if v.watched}
    judged = {v.channel["id"] for v in valid if v.judged}
    fresh += await lab_rules.apply(db, organization_id, fresh, now, watched, judged)
    deliveries = await fan_out(db, organization_id, fresh, found)
    await db.commit()
    return Published(event_ids, duplicate, deliveries)


def _fingerprint(item: _Valid) -> str:
    """What makes two publications under one key the same event: device, channel, type, data
    and the time it occurred if one was given (without one, "now" differs on every retry)."""
    given = item.event.occurred_at
    described = {
        "device": item.device["id"],
        "channel": item.channel["id"],
        "type": item.event.type,
        "data": item.data,
        "occurred_at": given.isoformat() if given else None,
    }
    canonical = json.dumps(described, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _reused(key: str, index: int | None) -> FieldError:
    at = f"{index}." if index is not None else ""
    return FieldError(
        f"{at}idempotency_key",
        f"{key!r} was published before with a different event (device, channel, type, data or "
        "occurred_at); publish a new event under a new key",
    )


def _conflict(errors: list[FieldError]) -> Conflict:
    return Conflict(f"{errors[0].field}: {errors[0].message}", errors=errors)


# -- reading, and request/response ---------------------------------------------------------


@dataclass(frozen=True)
class FirstAnswer:
    """How one delivery's first attempt went, for publishers that wait for answers."""

    delivery_id: str
    subscription_id: str
    status: str
    response_status: int | None
    response_body: str | None
    response_content_type: str | None
    error: str | None

    @property
    def response_json(self) -> Any:
        if self.response_body is None or "json" not in (self.response_content_type or ""):
            return None
        try:
            return json.loads(self.response_body)
        except ValueError:
            return None


async def first_answers(db: AsyncSession, delivery_ids: Sequence[str]) -> dict[str, FirstAnswer]:
    """The first attempt of each delivery that has made one."""
    rows = await db.execute(
        select(DeliveryAttempt, Delivery.status, Delivery.subscription_id)
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .where(DeliveryAttempt.delivery_id.in_(delivery_ids), DeliveryAttempt.number == 1)
    )
    answers = {}
    for attempt, status, subscription_id in rows:
        headers = {k.lower(): v for k, v in (attempt.response_headers or {}).items()}
        answers[attempt.delivery_id] = FirstAnswer(
            delivery_id=attempt.delivery_id,
            subscription_id=subscription_id,
            status=status,
            response_status=attempt.response_status,
            response_body=attempt.response_body,
            response_content_type=headers.get("content-type"),
            error=attempt.error,
        )
    return answers


class Waiters:
    """Publishers waiting for answers (`?wait=`) in this process: each holds its request open,
    so past `limit` a publisher is told to try again (429) before anything is stored."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @contextlib.contextmanager
    def seat(self) -> Iterator[None]:
        if self.count >= self.limit:
            raise TooManyRequests(
                f"{self.limit} publishers are waiting for answers already; try again in a "
                "moment, or publish without `wait` and read the answers from GET /events/{id}",
                retry_after_s=1,
            )
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


async def wait_for_first_answers(
    sessions: Callable[[], AsyncSession],
    delivery_ids: Sequence[str],
    seconds: float,
    recorded: Signal,
) -> dict[str, FirstAnswer]:
    """Until every delivery made its first attempt or `seconds` pass. `recorded` is set when
    attempts were recorded, by this process's worker or (through NOTIFY) another's; a look every
    POLL_S covers a signal that could not arrive (SQLite with a separate worker)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(seconds, MAX_WAIT_S)
    while True:
        seen = recorded.generation
        async with sessions() as db:
            answers = await first_answers(db, delivery_ids)
        remaining = deadline - loop.time()
        if len(answers) == len(delivery_ids) or remaining <= 0:
            return answers
        await recorded.wait(min(remaining, POLL_S), seen)


def as_seen_by(actor: Actor, answer: FirstAnswer) -> FirstAnswer:
    """A gateway token gets what request/response needs, never a subscription's error (which
    names its target's hosts and faults)."""
    return replace(answer, error=None) if actor.scope is TokenScope.PUBLISH else answer


@dataclass(frozen=True)
class EventView:
    event: Event
    deliveries: list[Delivery]  # none for a gateway token
    answers: list[FirstAnswer]  # the first attempt's answer of each delivery that made one


async def get_event(db: AsyncSession, actor: Actor, event_id: str) -> EventView:
    """Administrators see the event and every delivery of it; a gateway token only an event it
    published, and only the answers; a member only an event of a channel it may access, with
    its own subscriptions' deliveries."""
    organization_id = actor.require_organization()
    event = await db.get(Event, event_id)
    if event is None or event.organization_id != organization_id:
        raise NotFound("Event")
    deliveries = select(Delivery).where(Delivery.event_id == event_id).order_by(Delivery.id)
    if actor.scope is TokenScope.PUBLISH:
        if event.published_by_token_id != actor.token_id:
            raise NotFound("Event")
    elif not actor.is_org_admin:
        may_access = accessible_channels(actor).where(Channel.id == event.channel_id)
        if event.channel_id is None or await db.scalar(may_access) is None:
            raise NotFound("Event")
        deliveries = deliveries.join(
            WebhookSubscription, WebhookSubscription.id == Delivery.subscription_id
        ).where(WebhookSubscription.owner_id == actor.user_id)
    found = list(await db.scalars(deliveries))
    answers = await first_answers(db, [d.id for d in found])
    return EventView(
        event,
        [] if actor.scope is TokenScope.PUBLISH else found,
        [as_seen_by(actor, answers[d.id]) for d in found if d.id in answers],
    )
