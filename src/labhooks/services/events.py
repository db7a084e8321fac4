"""Publishing events: validate, fan out to matching subscriptions, queue, in one transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import exists, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from labhooks.domain.catalogue import EVENT_TYPES, webhook_payload
from labhooks.domain.errors import FieldError, InvalidInput, NotFound, PermissionDenied
from labhooks.domain.ids import new_id
from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.services.devices import accessible_channels
from labhooks.services.organizations import load_organization
from labhooks.signals import Signal
from labhooks.storage import events as events_table
from labhooks.storage import queue
from labhooks.storage.models import (
    Channel,
    ChannelGrant,
    Delivery,
    DeliveryAttempt,
    Device,
    Event,
    SubscriptionSelection,
    User,
    WebhookSubscription,
    utcnow,
)

MAX_BATCH = 1000
MAX_WAIT_S = 30.0


class EventIn(BaseModel):
    device_id: str = Field(max_length=40)
    channel_key: str | None = Field(None, max_length=100)
    channel_id: str | None = Field(None, max_length=40)
    type: str = Field(max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = Field(None, description="When it happened; default: now")
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200, description="Publishing the same key again is a no-op"
    )


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


def references(device: Device, channel: Channel) -> tuple[dict[str, Any], dict[str, Any]]:
    """The device and the channel as every webhook body names them."""
    return (
        {"id": device.id, "name": device.name},
        {"id": channel.id, "key": channel.key, "name": channel.name, "unit": channel.unit},
    )


def require_publisher(actor: Actor) -> str:
    organization_id = actor.require_organization()
    if actor.scope is not TokenScope.PUBLISH and actor.role is not Role.ADMIN:
        raise PermissionDenied(
            "Only device gateways (publishing tokens) and organisation administrators publish."
        )
    return organization_id


async def publish(
    db: AsyncSession, actor: Actor, events: Sequence[EventIn], indexed: bool
) -> Published:
    """Publishes all events or none. `indexed`: field errors start with the event's index."""
    organization_id = require_publisher(actor)
    if len(events) > MAX_BATCH:
        raise InvalidInput.single("body", f"at most {MAX_BATCH} events per request")
    valid = await _validate(db, organization_id, events, indexed)
    return await _store(db, organization_id, valid)


async def _validate(
    db: AsyncSession, organization_id: str, events: Sequence[EventIn], indexed: bool
) -> list[_Valid]:
    device_ids = {e.device_id for e in events}
    devices = {
        d.id: d
        for d in await db.scalars(
            select(Device)
            .options(selectinload(Device.channels))
            .where(Device.id.in_(device_ids), Device.organization_id == organization_id)
        )
    }
    errors: list[FieldError] = []
    valid: list[_Valid] = []
    for index, event in enumerate(events):
        at = f"{index}." if indexed else ""
        device = devices.get(event.device_id)
        if device is None:
            errors.append(
                FieldError(f"{at}device_id", "no device with this id in your organisation")
            )
            continue
        channel = next(
            (
                c
                for c in device.channels
                if c.id == event.channel_id
                or (event.channel_id is None and c.key == event.channel_key)
            ),
            None,
        )
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
        valid.append(_Valid(event, *references(device, channel), data))
    if errors:
        raise InvalidInput(errors)
    return valid


async def _store(db: AsyncSession, organization_id: str, valid: list[_Valid]) -> Published:
    """The new events and their deliveries in one transaction. A key stored before, earlier in
    the batch, or by a request that committed it while this one ran, makes a duplicate."""
    keys = {v.event.idempotency_key for v in valid if v.event.idempotency_key}
    known = await events_table.ids_by_key(db, organization_id, keys)
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}  # event id → row, for events new to this request
    event_ids: list[str] = []
    duplicate: list[bool] = []
    for item in valid:
        key = item.event.idempotency_key
        if key and key in known:
            event_ids.append(known[key])
            duplicate.append(True)
            continue
        event_id = new_id("evt")
        if key:
            known[key] = event_id
        event_ids.append(event_id)
        duplicate.append(False)
        occurred_at = _aware(item.event.occurred_at) or now
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
            "is_test": False,
            "created_at": now,
        }
    stored = await events_table.insert_new(db, list(rows.values()))
    if lost := {i: row["idempotency_key"] for i, row in rows.items() if i not in stored}:
        # another request committed these keys after we looked: its events are the ones
        winners = await events_table.ids_by_key(db, organization_id, lost.values())
        for index, event_id in enumerate(event_ids):
            if event_id in lost:
                event_ids[index], duplicate[index] = winners[lost[event_id]], True
    fresh = [row for i, row in rows.items() if i in stored]
    deliveries: list[tuple[str, str]] = []
    if fresh and (await load_organization(db, organization_id)).webhooks_enabled:
        targets = await _matching_subscriptions(db, organization_id, fresh)
        pairs = [
            (subscription_id, row["id"])
            for row in fresh
            for subscription_id in targets.get((row["channel_id"], row["type"]), [])
        ]
        deliveries = await queue.enqueue(db, organization_id, pairs)
    await db.commit()
    return Published(event_ids, duplicate, deliveries)


async def _matching_subscriptions(
    db: AsyncSession, organization_id: str, events: list[dict[str, Any]]
) -> dict[tuple[str, str], list[str]]:
    """(channel id, event type) → active subscriptions whose owner may access the channel.

    One indexed query for the whole batch, whatever its size."""
    pairs = {(e["channel_id"], e["type"]) for e in events}
    if not pairs:
        return {}
    selection = SubscriptionSelection
    owner_may_access = or_(
        User.role == Role.ADMIN.value,
        exists().where(
            ChannelGrant.user_id == User.id, ChannelGrant.channel_id == selection.channel_id
        ),
    )
    rows = await db.execute(
        select(selection.channel_id, selection.event_type, WebhookSubscription.id)
        .join(WebhookSubscription, WebhookSubscription.id == selection.subscription_id)
        .join(User, User.id == WebhookSubscription.owner_id)
        .where(
            tuple_(selection.channel_id, selection.event_type).in_(pairs),
            WebhookSubscription.organization_id == organization_id,
            WebhookSubscription.active.is_(True),
            WebhookSubscription.deleted_at.is_(None),
            owner_may_access,
        )
        .order_by(WebhookSubscription.id)
    )
    targets: dict[tuple[str, str], list[str]] = {}
    for channel_id, event_type, subscription_id in rows:
        targets.setdefault((channel_id, event_type), []).append(subscription_id)
    return targets


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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


async def wait_for_first_answers(
    sessions: Callable[[], AsyncSession],
    delivery_ids: Sequence[str],
    seconds: float,
    recorded: Signal,
) -> dict[str, FirstAnswer]:
    """Polls until every delivery made its first attempt or `seconds` pass. `recorded` is set
    when this process's worker recorded attempts, so an in-process worker answers at once and a
    remote one within a quarter second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(seconds, MAX_WAIT_S)
    while True:
        seen = recorded.generation
        async with sessions() as db:
            answers = await first_answers(db, delivery_ids)
        remaining = deadline - loop.time()
        if len(answers) == len(delivery_ids) or remaining <= 0:
            return answers
        await recorded.wait(min(remaining, 0.25), seen)


async def get_event(db: AsyncSession, actor: Actor, event_id: str) -> tuple[Event, list[Delivery]]:
    """Its publishers (administrators, gateway tokens) see the event and every delivery of it;
    a member sees it only for a channel it may access, with its own subscriptions' deliveries."""
    organization_id = actor.require_organization()
    event = await db.get(Event, event_id)
    if event is None or event.organization_id != organization_id:
        raise NotFound("Event")
    deliveries = select(Delivery).where(Delivery.event_id == event_id).order_by(Delivery.id)
    if not actor.is_org_admin and actor.scope is TokenScope.FULL:
        may_access = accessible_channels(actor).where(Channel.id == event.channel_id)
        if event.channel_id is None or await db.scalar(may_access) is None:
            raise NotFound("Event")
        deliveries = deliveries.join(
            WebhookSubscription, WebhookSubscription.id == Delivery.subscription_id
        ).where(WebhookSubscription.owner_id == actor.user_id)
    return event, list(await db.scalars(deliveries))
