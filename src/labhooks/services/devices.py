"""Devices, their channels, and which users may access which channel."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from sqlalchemy import ColumnElement, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from labhooks.domain.catalogue import DEVICE_STATUS_CHANGED, EVENT_TYPES
from labhooks.domain.errors import Conflict, FieldError, InvalidInput, NotFound
from labhooks.domain.people import Actor
from labhooks.services import audit, lab_rules
from labhooks.services.inputs import Input, Name, Number
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.storage.models import (
    Channel,
    ChannelGrant,
    Device,
    SubscriptionSelection,
    User,
    utcnow,
)


class ChannelIn(Input):
    key: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: Name
    unit: str | None = Field(None, max_length=50)
    trigger_events: list[str] = Field(default_factory=list)


HEARTBEAT = Field(
    None,
    ge=1,  # a heartbeat under a second would flap between online and offline
    le=7 * 24 * 3600,
    description="Seconds between the device's reports at the longest; silent for twice this, "
    "it goes offline (device.status_changed on its channels that offer it). null: not watched",
)


class DeviceCreate(Input):
    name: Name
    model: str | None = Field(None, max_length=200)
    channels: list[ChannelIn] = Field(default_factory=list, max_length=500)
    heartbeat_s: Number | None = HEARTBEAT


class DeviceUpdate(Input):
    name: Name | None = None
    model: str | None = Field(None, max_length=200)
    heartbeat_s: Number | None = HEARTBEAT
    channels: list[ChannelIn] | None = Field(
        None,
        max_length=500,
        description="The full list; channels keep their id by key, missing keys are removed",
    )


class GrantCreate(Input):
    user_id: str
    channel_id: str


def _check_channels(channels: list[ChannelIn]) -> None:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, channel in enumerate(channels):
        if channel.key in seen:
            errors.append(FieldError(f"channels.{i}.key", f"{channel.key!r} is used twice"))
        seen.add(channel.key)
        for j, name in enumerate(channel.trigger_events):
            if name not in EVENT_TYPES:
                errors.append(
                    FieldError(
                        f"channels.{i}.trigger_events.{j}",
                        f"{name!r} is not in the event catalogue; choose from "
                        + ", ".join(EVENT_TYPES),
                    )
                )
    if errors:
        raise InvalidInput(errors)


def _with_channels() -> Select[Device]:
    return select(Device).options(selectinload(Device.channels))


async def list_devices(
    db: AsyncSession, actor: Actor, page: PageRequest, name_query: str | None = None
) -> Page[Device]:
    statement = _with_channels().where(Device.organization_id == actor.require_organization())
    if name_query:
        statement = statement.where(_name_contains(Device.name, name_query))
    return await fetch_page(db, statement, Device.id, page)


def _name_contains(column: InstrumentedAttribute[str], text: str) -> ColumnElement[bool]:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


async def get_device(db: AsyncSession, actor: Actor, device_id: str) -> Device:
    device = await db.scalar(_with_channels().where(Device.id == device_id))
    if device is None or device.organization_id != actor.require_organization():
        raise NotFound("Device")
    return device


def _new_channel(organization_id: str, data: ChannelIn) -> Channel:
    return Channel(
        organization_id=organization_id,
        key=data.key,
        name=data.name,
        unit=data.unit,
        trigger_events=list(dict.fromkeys(data.trigger_events)),
    )


def _watch(device: Device, heartbeat_s: float | None) -> None:
    """Liveness (services.lab_rules): a watched device reports its status on a channel that
    offers device.status_changed; silence is counted from now until it sends something."""
    if heartbeat_s is None:
        device.heartbeat_s = device.last_seen_at = device.liveness = None
        return
    if not any(DEVICE_STATUS_CHANGED in channel.trigger_events for channel in device.channels):
        raise InvalidInput.single(
            "heartbeat_s",
            f"a device whose liveness is watched needs a channel offering {DEVICE_STATUS_CHANGED}, "
            "where going offline and online is published",
        )
    if device.heartbeat_s is None:
        device.last_seen_at = utcnow()
    device.heartbeat_s = heartbeat_s


async def create_device(db: AsyncSession, actor: Actor, data: DeviceCreate) -> Device:
    organization_id = actor.require_org_admin()
    _check_channels(data.channels)
    device = Device(
        organization_id=organization_id,
        name=data.name.strip(),
        model=data.model,
        channels=[_new_channel(organization_id, c) for c in data.channels],
    )
    _watch(device, data.heartbeat_s)
    db.add(device)
    await db.flush()  # its id, for the audit entry
    await audit.record(
        db,
        actor,
        "device.created",
        "device",
        device.id,
        f"Added the device {device.name}",
        audit.diff({}, _audited(device)),
    )
    await db.commit()
    return await get_device(db, actor, device.id)


async def update_device(
    db: AsyncSession, actor: Actor, device_id: str, data: DeviceUpdate
) -> Device:
    organization_id = actor.require_org_admin()
    device = await get_device(db, actor, device_id)
    before = _audited(device)
    if data.name is not None:
        device.name = data.name.strip()
    if "model" in data.model_fields_set:
        device.model = data.model
    if data.channels is not None:
        _check_channels(data.channels)
        existing = {c.key: c for c in device.channels}
        kept: list[Channel] = []
        for incoming in data.channels:
            channel = existing.get(incoming.key)
            if channel is None:
                kept.append(_new_channel(organization_id, incoming))
                continue
            channel.name, channel.unit = incoming.name, incoming.unit
            channel.trigger_events = _offered(channel, incoming, len(kept))
            # Subscriptions cannot keep an event the channel no longer offers.
            await db.execute(
                delete(SubscriptionSelection).where(
                    SubscriptionSelection.channel_id == channel.id,
                    SubscriptionSelection.event_type.not_in(channel.trigger_events),
                )
            )
            kept.append(channel)
        removed = [c.id for c in device.channels if c not in kept]
        await lab_rules.close_incidents(db, removed, "channel removed")
        device.channels = kept
    if "heartbeat_s" in data.model_fields_set:
        _watch(device, data.heartbeat_s)
    elif device.heartbeat_s is not None:
        _watch(device, device.heartbeat_s)  # the channels changed: one must still take it
    if changes := audit.diff(before, _audited(device)):
        await audit.record(
            db,
            actor,
            "device.updated",
            "device",
            device.id,
            f"Changed the device {device.name}: " + ", ".join(changes),
            changes,
        )
    await db.commit()
    db.expire(device)
    return await get_device(db, actor, device_id)


async def delete_device(db: AsyncSession, actor: Actor, device_id: str) -> None:
    actor.require_org_admin()
    device = await get_device(db, actor, device_id)
    await audit.record(
        db,
        actor,
        "device.deleted",
        "device",
        device.id,
        f"Removed the device {device.name}",
        audit.diff(_audited(device), {}),
    )
    await lab_rules.close_incidents(db, [c.id for c in device.channels], "device deleted")
    await db.delete(device)
    await db.commit()


def _offered(channel: Channel, incoming: ChannelIn, position: int) -> list[str]:
    """The events a stored channel offers after an edit. One with thresholds keeps offering the
    incident events (its thresholds publish them) and must keep data_point.created (what they
    judge)."""
    offered = list(dict.fromkeys(incoming.trigger_events))
    if not channel.has_thresholds:
        return offered
    if lab_rules.DATA_POINT_CREATED not in offered:
        raise InvalidInput.single(
            f"channels.{position}.trigger_events",
            f"channel {channel.key!r} has thresholds, which judge its data points: delete them "
            "before it stops offering data_point.created",
        )
    return offered + [e for e in lab_rules.INCIDENT_EVENTS if e not in offered]


def _audited(device: Device) -> dict[str, object]:
    """What the audit log shows of a device: its channels by key, with the events they offer."""
    return {
        "name": device.name,
        "model": device.model,
        "heartbeat_s": device.heartbeat_s,
        "channels": {c.key: list(c.trigger_events) for c in device.channels},
    }


def accessible_channels(actor: Actor) -> Select[Channel]:
    """Channels the actor may subscribe to: all of the organisation's for its administrators,
    the granted ones for members."""
    statement = select(Channel).where(Channel.organization_id == actor.require_organization())
    if not actor.is_org_admin:
        statement = statement.where(
            Channel.id.in_(
                select(ChannelGrant.channel_id).where(ChannelGrant.user_id == actor.user_id)
            )
        )
    return statement


async def list_accessible_channels(
    db: AsyncSession, actor: Actor, page: PageRequest, device_query: str | None = None
) -> Page[Channel]:
    statement = accessible_channels(actor).options(selectinload(Channel.device))
    if device_query:
        statement = statement.join(Device, Device.id == Channel.device_id).where(
            _name_contains(Device.name, device_query)
        )
    return await fetch_page(db, statement, Channel.id, page)


async def list_grants(
    db: AsyncSession, actor: Actor, page: PageRequest, user_id: str | None = None
) -> Page[ChannelGrant]:
    statement = select(ChannelGrant).where(
        ChannelGrant.organization_id == actor.require_org_admin()
    )
    if user_id:
        statement = statement.where(ChannelGrant.user_id == user_id)
    return await fetch_page(db, statement, ChannelGrant.id, page)


@dataclass(frozen=True)
class ChannelAccess:
    """A grant with whom and what it names, as the organisation page lists it."""

    id: str
    user: User
    channel: Channel  # its device loaded


async def list_channel_access(
    db: AsyncSession, actor: Actor, page: PageRequest
) -> Page[ChannelAccess]:
    grants = await list_grants(db, actor, page)
    user_ids = {g.user_id for g in grants.items}
    channel_ids = {g.channel_id for g in grants.items}
    users = {u.id: u for u in await db.scalars(select(User).where(User.id.in_(user_ids)))}
    channels = {
        c.id: c
        for c in await db.scalars(
            select(Channel).options(selectinload(Channel.device)).where(Channel.id.in_(channel_ids))
        )
    }
    rows = [
        ChannelAccess(g.id, users[g.user_id], channels[g.channel_id])
        for g in grants.items
        if g.user_id in users and g.channel_id in channels
    ]
    return Page(rows, grants.next_cursor)


async def create_grant(db: AsyncSession, actor: Actor, data: GrantCreate) -> ChannelGrant:
    organization_id = actor.require_org_admin()
    errors = []
    user = await db.get(User, data.user_id)
    if user is None or user.organization_id != organization_id:
        errors.append(FieldError("user_id", "no user with this id in your organisation"))
    channel = await db.get(Channel, data.channel_id)
    if channel is None or channel.organization_id != organization_id:
        errors.append(FieldError("channel_id", "no channel with this id in your organisation"))
    if errors:
        raise InvalidInput(errors)
    duplicate = await db.scalar(
        select(ChannelGrant.id).where(
            ChannelGrant.user_id == data.user_id, ChannelGrant.channel_id == data.channel_id
        )
    )
    if duplicate:
        raise Conflict("This user has access to this channel already", field="channel_id")
    grant = ChannelGrant(
        organization_id=organization_id, user_id=data.user_id, channel_id=data.channel_id
    )
    db.add(grant)
    await db.flush()  # its id, for the audit entry
    assert user is not None and channel is not None  # checked above
    await audit.record(
        db,
        actor,
        "channel_grant.created",
        "channel_grant",
        grant.id,
        f"Gave {user.name} <{user.email}> access to the channel {channel.name} ({channel.key})",
        {"user_id": [None, user.id], "channel_id": [None, channel.id]},
    )
    await db.commit()
    return grant


async def delete_grant(db: AsyncSession, actor: Actor, grant_id: str) -> None:
    organization_id = actor.require_org_admin()
    grant = await db.get(ChannelGrant, grant_id)
    if grant is None or grant.organization_id != organization_id:
        raise NotFound("Channel grant")
    user = await db.get(User, grant.user_id)
    channel = await db.get(Channel, grant.channel_id)
    whom = f"{user.name} <{user.email}>" if user else grant.user_id
    what = f"{channel.name} ({channel.key})" if channel else grant.channel_id
    await audit.record(
        db,
        actor,
        "channel_grant.deleted",
        "channel_grant",
        grant.id,
        f"Took away the access of {whom} to the channel {what}",
        {"user_id": [grant.user_id, None], "channel_id": [grant.channel_id, None]},
    )
    await db.delete(grant)
    await db.commit()
