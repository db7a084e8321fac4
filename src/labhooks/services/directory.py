"""What publishing reads about an organisation: its devices and their channels, and which
active subscriptions take each (channel, event type). Loaded once and kept in this process for
as long as the organisation's publishing revision stays the same; the database's triggers move
the revision on with every change to any of it (migration 0009), whichever process or tool makes
the change, so a publish costs one look at a counter instead of a look-up of its device, its
channel and its subscriptions, and still sees a change committed a moment before."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import NotFound
from labhooks.domain.people import Role
from labhooks.storage.models import (
    Channel,
    ChannelGrant,
    Device,
    Organization,
    SubscriptionSelection,
    User,
    WebhookSubscription,
)

KEPT_ORGANIZATIONS = 1024  # the least recently used beyond these is loaded again when needed


@dataclass(frozen=True)
class ChannelEntry:
    id: str
    key: str
    trigger_events: tuple[str, ...]
    has_thresholds: bool  # lab rules judge its data points
    reference: dict[str, Any]  # as every webhook body names it


@dataclass(frozen=True)
class DeviceEntry:
    id: str
    name: str
    watched: bool  # it has a heartbeat: lab rules track its liveness
    reference: dict[str, Any]  # as every webhook body names it
    channels: tuple[ChannelEntry, ...]  # by id

    def channel(self, channel_id: str | None, channel_key: str | None) -> ChannelEntry | None:
        """The channel named by id, or else by key."""
        for channel in self.channels:
            if channel.id == channel_id or (channel_id is None and channel.key == channel_key):
                return channel
        return None


@dataclass(frozen=True)
class Directory:
    organization_id: str
    revision: int
    webhooks_enabled: bool  # read fresh every time: it is not part of the revision
    devices: dict[str, DeviceEntry]
    # (channel id, event type) → the active subscriptions whose owner may access the channel
    targets: dict[tuple[str, str], tuple[str, ...]]
    versions: dict[str, datetime]  # of those subscriptions: when each last changed
    ordered: frozenset[str]  # those of them that deliver one at a time, in order


_REVISION = select(Organization.publishing_revision, Organization.webhooks_enabled).where(
    Organization.id == bindparam("organization_id")
)  # built once: every publish runs it


class DirectoryCache:
    def __init__(self, size: int = KEPT_ORGANIZATIONS) -> None:
        self._size = size
        self._kept: OrderedDict[str, Directory] = OrderedDict()

    async def get(self, db: AsyncSession, organization_id: str) -> Directory:
        """The organisation's directory as of now, in the caller's transaction."""
        connection = await db.connection()
        row = (await connection.execute(_REVISION, {"organization_id": organization_id})).first()
        if row is None:
            raise NotFound("Organisation")
        revision, enabled = row
        kept = self._kept.get(organization_id)
        if kept is None or kept.revision != revision:
            # read after the revision: what is loaded is at least as new as the number it is
            # kept under, so a change committed meanwhile makes the next call load again
            kept = await _load(db, organization_id, revision, enabled)
            self._kept[organization_id] = kept
            if len(self._kept) > self._size:
                self._kept.popitem(last=False)
        self._kept.move_to_end(organization_id)
        return kept if kept.webhooks_enabled == enabled else replace(kept, webhooks_enabled=enabled)


_cache = DirectoryCache()


async def directory(db: AsyncSession, organization_id: str) -> Directory:
    return await _cache.get(db, organization_id)


async def _load(db: AsyncSession, organization_id: str, revision: int, enabled: bool) -> Directory:
    channels: dict[str, list[ChannelEntry]] = {}
    for row in await db.execute(
        select(
            Channel.id,
            Channel.device_id,
            Channel.key,
            Channel.name,
            Channel.unit,
            Channel.trigger_events,
            Channel.has_thresholds,
        )
        .where(Channel.organization_id == organization_id)
        .order_by(Channel.id)
    ):
        channels.setdefault(row.device_id, []).append(
            ChannelEntry(
                id=row.id,
                key=row.key,
                trigger_events=tuple(row.trigger_events or ()),
                has_thresholds=bool(row.has_thresholds),
                reference={"id": row.id, "key": row.key, "name": row.name, "unit": row.unit},
            )
        )
    devices = {
        row.id: DeviceEntry(
            id=row.id,
            name=row.name,
            watched=row.heartbeat_s is not None,
            reference={"id": row.id, "name": row.name},
            channels=tuple(channels.get(row.id, ())),
        )
        for row in await db.execute(
            select(Device.id, Device.name, Device.heartbeat_s).where(
                Device.organization_id == organization_id
            )
        )
    }
    untargeted = Directory(organization_id, revision, enabled, devices, {}, {}, frozenset())
    return await _with_targets(db, untargeted)


async def _with_targets(db: AsyncSession, directory: Directory) -> Directory:
    """Which active subscriptions take each (channel, event type): those whose owner is an
    organisation administrator or holds a grant to the channel."""
    selection = SubscriptionSelection
    owner_may_access = or_(
        User.role == Role.ADMIN.value,
        exists().where(
            ChannelGrant.user_id == User.id, ChannelGrant.channel_id == selection.channel_id
        ),
    )
    rows = await db.execute(
        select(
            selection.channel_id,
            selection.event_type,
            WebhookSubscription.id,
            WebhookSubscription.updated_at,
            WebhookSubscription.ordered,
        )
        .join(WebhookSubscription, WebhookSubscription.id == selection.subscription_id)
        .join(User, User.id == WebhookSubscription.owner_id)
        .where(
            WebhookSubscription.organization_id == directory.organization_id,
            WebhookSubscription.active.is_(True),
            WebhookSubscription.deleted_at.is_(None),
            owner_may_access,
        )
        .order_by(WebhookSubscription.id)
    )
    targets: dict[tuple[str, str], list[str]] = {}
    versions: dict[str, datetime] = {}
    ordered: set[str] = set()
    for channel_id, event_type, subscription_id, version, one_at_a_time in rows:
        targets.setdefault((channel_id, event_type), []).append(subscription_id)
        versions[subscription_id] = version
        if one_at_a_time:
            ordered.add(subscription_id)
    return replace(
        directory,
        targets={pair: tuple(ids) for pair, ids in targets.items()},
        versions=versions,
        ordered=frozenset(ordered),
    )
