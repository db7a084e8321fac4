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
from labhooks.services.inputs import Input, Name
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
    gt=0,
    le=7 * 24 * 3600,
    description="Seconds between the device's reports at the longest; silent for twice this, "
    "it goes offline (device.status_changed on its channels that offer it). null: not watched",
)


class DeviceCreate(Input):
    name: Name
    model: str | None = Field(None, max_length=200)
    channels: list[ChannelIn] = Field(default_factory=list, max_length=500)
    heartbeat_s: float | None = HEARTBEAT


class DeviceUpdate(Input):
    name: Name | None = None
    model: str | None = Field(None, max_length=200)
    heartbeat_s: float | None = HEARTBEAT
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
    await db.commit()
    return await get_device(db, actor, device.id)


async def update_device(
    db: AsyncSession, actor: Actor, device_id: str, data: DeviceUpdate
) -> Device:
    organization_id = actor.require_org_admin()
    device = await get_device(db, actor, device_id)
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
            channel.trigger_events = list(dict.fromkeys(incoming.trigger_events))
            # Subscriptions cannot keep an event the channel no longer offers.
            await db.execute(
                delete(SubscriptionSelection).where(
                    SubscriptionSelection.channel_id == channel.id,
                    SubscriptionSelection.event_type.not_in(channel.trigger_events),
                )
            )
            kept.append(channel)
        device.channels = kept
    if "heartbeat_s" in data.model_fields_set:
        _watch(device, data.heartbeat_s)
    elif device.heartbeat_s is not None:
        _watch(device, device.heartbeat_s)  # the channels changed: one must still take it
    await db.commit()
    db.expire(device)
    return await get_device(db, actor, device_id)


async def delete_device(db: AsyncSession, actor: Actor, device_id: str) -> None:
    actor.require_org_admin()
    device = await get_device(db, actor, device_id)
    await db.delete(device)
    await db.commit()


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
    await db.commit()
    return grant


async def delete_grant(db: AsyncSession, actor: Actor, grant_id: str) -> None:
    organization_id = actor.require_org_admin()
    grant = await db.get(ChannelGrant, grant_id)
    if grant is None or grant.organization_id != organization_id:
        raise NotFound("Channel grant")
    await db.delete(grant)
    await db.commit()
