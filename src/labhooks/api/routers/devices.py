from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from labhooks.api.deps import CurrentActor, PageOut, Paging, page_out
from labhooks.dependencies import DbSession
from labhooks.domain.catalogue import EVENT_TYPES
from labhooks.services import devices as service
from labhooks.services.devices import DeviceCreate, DeviceUpdate, GrantCreate

router = APIRouter(tags=["devices and channels"])


class ChannelPublic(BaseModel):
    id: str
    key: str
    name: str
    unit: str | None
    trigger_events: list[str]


class DevicePublic(BaseModel):
    id: str
    name: str
    model: str | None
    channels: list[ChannelPublic]
    created_at: datetime
    heartbeat_s: float | None
    liveness: Literal["online", "offline"] | None = None
    last_seen_at: datetime | None


class DeviceSummary(BaseModel):
    id: str
    name: str
    model: str | None


class AccessibleChannel(ChannelPublic):
    device: DeviceSummary


class GrantPublic(BaseModel):
    id: str
    user_id: str
    channel_id: str
    created_at: datetime


class EventTypePublic(BaseModel):
    name: str
    description: str
    data_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of `data`")


@router.get("/devices", response_model=PageOut[DevicePublic])
async def list_devices(
    db: DbSession, actor: CurrentActor, paging: Paging, q: str | None = None
) -> object:
    """The organisation's devices; `q` finds devices whose name contains it (any case)."""
    return page_out(await service.list_devices(db, actor, paging, q), DevicePublic)


@router.post("/devices", status_code=201, response_model=DevicePublic)
async def create_device(db: DbSession, actor: CurrentActor, body: DeviceCreate) -> object:
    return await service.create_device(db, actor, body)


@router.get("/devices/{device_id}", response_model=DevicePublic)
async def get_device(db: DbSession, actor: CurrentActor, device_id: str) -> object:
    return await service.get_device(db, actor, device_id)


@router.patch("/devices/{device_id}", response_model=DevicePublic)
async def update_device(
    db: DbSession, actor: CurrentActor, device_id: str, body: DeviceUpdate
) -> object:
    return await service.update_device(db, actor, device_id, body)


@router.delete("/devices/{device_id}", status_code=204)
async def delete_device(db: DbSession, actor: CurrentActor, device_id: str) -> Response:
    await service.delete_device(db, actor, device_id)
    return Response(status_code=204)


@router.get("/channels", response_model=PageOut[AccessibleChannel])
async def list_channels(
    db: DbSession, actor: CurrentActor, paging: Paging, device_q: str | None = None
) -> object:
    """The channels the caller may subscribe to, with their trigger events and device."""
    page = await service.list_accessible_channels(db, actor, paging, device_q)
    return page_out(page, AccessibleChannel)


@router.get("/channel-grants", response_model=PageOut[GrantPublic])
async def list_grants(
    db: DbSession, actor: CurrentActor, paging: Paging, user_id: str | None = None
) -> object:
    return page_out(await service.list_grants(db, actor, paging, user_id), GrantPublic)


@router.post("/channel-grants", status_code=201, response_model=GrantPublic)
async def create_grant(db: DbSession, actor: CurrentActor, body: GrantCreate) -> object:
    return await service.create_grant(db, actor, body)


@router.delete("/channel-grants/{grant_id}", status_code=204)
async def delete_grant(db: DbSession, actor: CurrentActor, grant_id: str) -> Response:
    await service.delete_grant(db, actor, grant_id)
    return Response(status_code=204)


@router.get("/event-types", response_model=PageOut[EventTypePublic])
async def list_event_types(actor: CurrentActor) -> object:
    """The event catalogue: every trigger event type and the JSON Schema of its `data`."""
    items = [
        {"name": t.name, "description": t.description, "schema": t.schema}
        for t in EVENT_TYPES.values()
    ]
    return {"items": items, "next_cursor": None}
