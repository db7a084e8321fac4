"""Deliveries one at a time, and the actions on them: resend, replay, the test event. The log
as people read it (its lines, filters and search) is services.delivery_log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from labhooks.domain.catalogue import (
    EVENT_TYPES,
    PING,
    as_utc,
    ping_payload,
    webhook_payload,
)
from labhooks.domain.errors import Conflict, InvalidInput, NotFound
from labhooks.domain.ids import new_id
from labhooks.domain.outcomes import DeliveryStatus
from labhooks.domain.people import Actor
from labhooks.services.fanout import references
from labhooks.services.inputs import Input
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.services.subscriptions import SubscriptionService
from labhooks.storage import queue
from labhooks.storage.models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    Event,
    SubscriptionSelection,
    WebhookSubscription,
    utcnow,
)


class ReplayIn(Input):
    since: datetime = Field(description="A time without an offset is UTC")

    @field_validator("since", mode="after")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        try:
            return as_utc(moment)
        except ValueError as exc:
            raise PydanticCustomError("since_out_of_range", str(exc)) from None


class TestEventIn(Input):
    event_type: str | None = Field(
        None,
        description="`ping` (the default): a test event about no device; or one of the event "
        "types the subscription selects: a sample of it, marked `test`, for its first channel",
    )


async def _of_subscription(
    db: AsyncSession,
    actor: Actor,
    subscriptions: SubscriptionService,
    subscription_id: str,
    status: str | None,
) -> Select[Delivery]:
    await subscriptions.get(db, actor, subscription_id)
    statement = select(Delivery).where(Delivery.subscription_id == subscription_id)
    if status:
        if status not in list(DeliveryStatus):
            raise InvalidInput.single("status", f"must be one of {', '.join(DeliveryStatus)}")
        statement = statement.where(Delivery.status == status)
    return statement


async def list_deliveries(
    db: AsyncSession,
    actor: Actor,
    subscriptions: SubscriptionService,
    subscription_id: str,
    page: PageRequest,
    status: str | None,
) -> Page[Delivery]:
    statement = await _of_subscription(db, actor, subscriptions, subscription_id, status)
    return await fetch_page(db, statement, Delivery.id, page)


async def get_delivery(
    db: AsyncSession, actor: Actor, delivery_id: str
) -> tuple[Delivery, list[DeliveryAttempt], Event]:
    """Readable also after its subscription was deleted, by whoever could read that."""
    organization_id = actor.require_organization()
    row = (
        await db.execute(
            select(Delivery, WebhookSubscription.owner_id, Event)
            .join(WebhookSubscription, WebhookSubscription.id == Delivery.subscription_id)
            .join(Event, Event.id == Delivery.event_id)
            .where(Delivery.id == delivery_id)
        )
    ).first()
    if row is None:
        raise NotFound("Delivery")
    delivery, owner_id, event = row
    if delivery.organization_id != organization_id or not (
        actor.is_org_admin or owner_id == actor.user_id
    ):
        raise NotFound("Delivery")
    attempts = await db.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id == delivery_id)
        .order_by(DeliveryAttempt.number, DeliveryAttempt.id)
    )
    return delivery, list(attempts), event


async def subscription_of(db: AsyncSession, delivery: Delivery) -> WebhookSubscription:
    """The subscription of a delivery get_delivery returned (its permission check), also after
    the subscription was deleted: its retry schedule is the one the delivery follows."""
    subscription = await db.get(WebhookSubscription, delivery.subscription_id)
    assert subscription is not None  # a delivery goes with its subscription (FK cascade)
    return subscription


async def resend(db: AsyncSession, actor: Actor, delivery_id: str) -> Delivery:
    """Queues the delivery again with a fresh retry schedule; same webhook-id."""
    delivery, _, _ = await get_delivery(db, actor, delivery_id)
    if delivery.status == DeliveryStatus.PENDING:
        raise Conflict("This delivery is still pending; it goes out on its own.")
    if delivery.status == DeliveryStatus.CANCELLED:
        raise Conflict("This delivery was cancelled with its subscription.")
    if not await queue.requeue(db, delivery_id):
        raise Conflict("This delivery's subscription was deleted; nothing more is sent to it.")
    await db.commit()
    await db.refresh(delivery)
    return delivery


async def retry_now(db: AsyncSession, actor: Actor, delivery_id: str) -> Delivery:
    """A delivery waiting for its next retry goes out now; same webhook-id."""
    delivery, _, _ = await get_delivery(db, actor, delivery_id)
    if delivery.status != DeliveryStatus.PENDING:
        raise Conflict(f"This delivery is {delivery.status}: only a pending one waits to retry.")
    if not await queue.retry_now(db, delivery_id):
        raise Conflict("This delivery is being sent right now.")
    await db.commit()
    await db.refresh(delivery)
    return delivery


async def replay_failed(
    db: AsyncSession,
    actor: Actor,
    subscriptions: SubscriptionService,
    subscription_id: str,
    since: datetime,
) -> int:
    """Queues again every failed delivery of the subscription created since `since`."""
    await subscriptions.get(db, actor, subscription_id)
    count = await queue.requeue_failed(db, subscription_id, since)
    await db.commit()
    return count


@dataclass(frozen=True)
class TestEvent:
    """What a test delivery sends: its type, the body, and what the body names."""

    event_id: str
    event_type: str
    device_id: str | None
    channel_id: str | None
    payload: str


async def test_event(
    db: AsyncSession,
    actor: Actor,
    subscriptions: SubscriptionService,
    subscription_id: str,
    event_type: str | None,
) -> TestEvent:
    """The test event a subscription would be sent: a `ping` by default, else a sample of a
    type it selects (the same body is shown before sending and then sent)."""
    subscription = await subscriptions.get(db, actor, subscription_id)
    now, event_id = utcnow(), new_id("evt")
    if event_type in (None, PING):
        payload = ping_payload(event_id=event_id, occurred_at=now, subscription_id=subscription.id)
        return TestEvent(event_id, PING, None, None, payload)
    selections = await db.scalars(
        select(SubscriptionSelection)
        .options(selectinload(SubscriptionSelection.channel).selectinload(Channel.device))
        .where(SubscriptionSelection.subscription_id == subscription_id)
        .order_by(SubscriptionSelection.id)
    )
    chosen = next((s for s in selections if s.event_type == event_type), None)
    if chosen is None:
        raise InvalidInput.single(
            "event_type", f"the subscription does not select this event type; try {PING!r}"
        )
    channel = chosen.channel
    device, channel_ref = references(channel.device, channel)
    payload = webhook_payload(
        event_id=event_id,
        event_type=chosen.event_type,
        occurred_at=now,
        device=device,
        channel=channel_ref,
        data=EVENT_TYPES[chosen.event_type].example,
        test=True,
    )
    return TestEvent(event_id, chosen.event_type, channel.device.id, channel.id, payload)


def test_event_choices(subscription: WebhookSubscription) -> list[str]:
    """`ping`, then each event type the subscription selects, once: what a test event may be,
    and what the delivery log is filtered by."""
    return [PING, *dict.fromkeys(s.event_type for s in subscription.selections)]


async def send_test_event(
    db: AsyncSession,
    actor: Actor,
    subscriptions: SubscriptionService,
    subscription_id: str,
    event_type: str | None,
) -> Delivery:
    """The test event, stored (marked as a test) and delivered to this subscription alone."""
    chosen = await test_event(db, actor, subscriptions, subscription_id, event_type)
    organization_id = actor.require_organization()
    now = utcnow()
    db.add(
        Event(
            id=chosen.event_id,
            organization_id=organization_id,
            device_id=chosen.device_id,
            channel_id=chosen.channel_id,
            type=chosen.event_type,
            occurred_at=now,
            payload=chosen.payload,
            is_test=True,
            created_at=now,
        )
    )
    await db.flush()
    [(delivery_id, _)] = await queue.enqueue(
        db, organization_id, [(subscription_id, chosen.event_id)]
    )
    await db.commit()
    delivery = await db.get(Delivery, delivery_id)
    assert delivery is not None
    return delivery


async def latest_by_subscription(
    db: AsyncSession, subscription_ids: list[str]
) -> dict[str, Delivery]:
    """Each subscription's newest delivery (ids are time-ordered, so the greatest id)."""
    if not subscription_ids:
        return {}
    newest = (
        select(func.max(Delivery.id))
        .where(Delivery.subscription_id.in_(subscription_ids))
        .group_by(Delivery.subscription_id)
    )
    rows = await db.scalars(select(Delivery).where(Delivery.id.in_(newest)))
    return {d.subscription_id: d for d in rows}
