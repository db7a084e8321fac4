"""Channel thresholds and the incidents they open (services.lab_rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from labhooks.api.deps import CurrentActor, PageOut, Paging, page_out
from labhooks.dependencies import DbSession
from labhooks.domain.thresholds import Comparator, Level
from labhooks.services import lab_rules as service
from labhooks.services.lab_rules import Acknowledgement, ThresholdIn

router = APIRouter(tags=["lab rules"])


class ThresholdPublic(BaseModel):
    id: str
    device_id: str
    channel_id: str
    level: Level
    comparator: Comparator
    value: float
    upper: float | None
    hysteresis: float
    hold_s: float
    status: Literal["normal", "holding", "open"]
    since: datetime | None
    created_at: datetime


class IncidentPublic(BaseModel):
    id: str
    threshold_id: str | None
    device_id: str | None  # None once the device (or the channel) was removed
    channel_id: str | None
    level: Level
    comparator: Comparator
    threshold_value: float
    upper: float | None
    opened_at: datetime
    opened_value: float
    closed_at: datetime | None
    closed_value: float | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledgement_note: str | None


THRESHOLDS = "/devices/{device_id}/channels/{channel_id}/thresholds"


@router.get(THRESHOLDS, response_model=list[ThresholdPublic])
async def list_thresholds(
    db: DbSession, actor: CurrentActor, device_id: str, channel_id: str
) -> object:
    return await service.list_thresholds(db, actor, device_id, channel_id)


@router.post(THRESHOLDS, status_code=201, response_model=ThresholdPublic)
async def create_threshold(
    db: DbSession, actor: CurrentActor, device_id: str, channel_id: str, body: ThresholdIn
) -> object:
    """Organisation administrators only. The channel offers incident.opened and
    incident.closed from then on, for subscriptions to select."""
    return await service.create_threshold(db, actor, device_id, channel_id, body)


@router.delete("/thresholds/{threshold_id}", status_code=204)
async def delete_threshold(db: DbSession, actor: CurrentActor, threshold_id: str) -> Response:
    """Its open incident, if any, closes with the last value seen."""
    await service.delete_threshold(db, actor, threshold_id)
    return Response(status_code=204)


@router.get("/incidents", response_model=PageOut[IncidentPublic])
async def list_incidents(
    db: DbSession,
    actor: CurrentActor,
    paging: Paging,
    status: Literal["open", "closed"] | None = None,
    device_id: str | None = None,
    level: Level | None = None,
) -> object:
    page = await service.list_incidents(db, actor, paging, status, device_id, level)
    return page_out(page, IncidentPublic)


@router.get("/incidents/{incident_id}", response_model=IncidentPublic)
async def get_incident(db: DbSession, actor: CurrentActor, incident_id: str) -> object:
    return await service.get_incident(db, actor, incident_id)


@router.post("/incidents/{incident_id}/acknowledge", response_model=IncidentPublic)
async def acknowledge_incident(
    db: DbSession, actor: CurrentActor, incident_id: str, body: Acknowledgement
) -> object:
    """Organisation administrators say who is on it, with a note."""
    return await service.acknowledge(db, actor, incident_id, body)
