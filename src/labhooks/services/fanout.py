"""Fan-out: stored events become deliveries to the subscriptions that listen to them, in the
caller's transaction. Published events take this way, and the events labhooks makes itself
(incidents, liveness). Operational events about the organisation's subscriptions go to its
organisation-level subscriptions instead (`fan_out_to_organization`); the delivery queue emits
those it makes itself, as it records attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.catalogue import webhook_payload
from labhooks.domain.ids import new_id
from labhooks.services.directory import Directory, directory
from labhooks.storage import events as events_table
from labhooks.storage import queue
from labhooks.storage.models import (
    Channel,
    Device,
    WebhookSubscription,
    utcnow,
)
from labhooks.storage.queue import OrganizationEvent


def references(device: Device, channel: Channel) -> tuple[dict[str, Any], dict[str, Any]]:
    """The device and the channel as every webhook body names them."""
    return (
        {"id": device.id, "name": device.name},
        {"id": channel.id, "key": channel.key, "name": channel.name, "unit": channel.unit},
    )


async def fan_out(
    db: AsyncSession,
    organization_id: str,
    events: list[dict[str, Any]],
    found: Directory | None = None,
) -> list[tuple[str, str]]:
    """Queues a delivery of each event (stored rows) to each matching subscription, if the
    organisation's webhooks are on; returns (delivery id, subscription id) pairs. `found`: the
    organisation's directory, when the caller read it in this transaction already."""
    if not events:
        return []
    found = found or await directory(db, organization_id)
    if not found.webhooks_enabled:
        return []
    pairs = [
        (subscription_id, row["id"])
        for row in events
        for subscription_id in found.targets.get((row["channel_id"], row["type"]), [])
    ]
    # an ordered subscription's delivery waits for its elders: only a claim knows when
    payloads = {row["id"]: row["payload"] for row in events}
    sendable = {
        (subscription_id, event_id): (payloads[event_id], found.versions[subscription_id])
        for subscription_id, event_id in pairs
        if subscription_id not in found.ordered
    }
    return await queue.enqueue(db, organization_id, pairs, sendable)


async def fan_out_to_organization(db: AsyncSession, events: list[OrganizationEvent]) -> int:
    """Stores operational events and queues them to the organisation-level subscriptions that
    take their types, in the caller's transaction; the workers wake when it commits. Returns
    how many deliveries were queued."""
    queued = await queue.publish_organization_events(await db.connection(), events, utcnow())
    if queued:
        await queue.wake(db)
    return queued


def about_subscription(subscription: WebhookSubscription) -> dict[str, Any]:
    """A subscription as operational events name it."""
    return {
        "id": subscription.id,
        "target_url": subscription.target_url,
        "description": subscription.description,
        "owner_id": subscription.owner_id,
    }


async def store_own_events(
    db: AsyncSession, organization_id: str, made: list[OwnEvent]
) -> list[dict[str, Any]]:
    """Stores events labhooks makes itself, each under its idempotency key (made twice, stored
    once); returns the rows stored now, for fan_out."""
    rows = [event.row(organization_id) for event in made]
    stored = await events_table.insert_new(db, rows)
    return [row for row in rows if row["id"] in stored]


@dataclass(frozen=True)
class OwnEvent:
    """An event labhooks publishes itself about a device's channel, under a key that makes it
    once however often it is made."""

    key: str
    type: str
    occurred_at: datetime
    device: dict[str, Any]  # as the webhook body names it (references)
    channel: dict[str, Any]
    data: dict[str, Any]
    now: datetime

    def row(self, organization_id: str) -> dict[str, Any]:
        event_id = new_id("evt")
        return {
            "id": event_id,
            "organization_id": organization_id,
            "device_id": self.device["id"],
            "channel_id": self.channel["id"],
            "type": self.type,
            "occurred_at": self.occurred_at,
            "payload": webhook_payload(
                event_id=event_id,
                event_type=self.type,
                occurred_at=self.occurred_at,
                device=self.device,
                channel=self.channel,
                data=self.data,
            ),
            "idempotency_key": self.key,
            "request_fingerprint": None,
            "published_by_token_id": None,
            "is_test": False,
            "created_at": self.now,
        }
