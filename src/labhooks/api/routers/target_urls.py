from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel

from labhooks.api.deps import CurrentActor, PageOut, Paging, page_out
from labhooks.dependencies import DbSession
from labhooks.services import target_urls as service
from labhooks.services.target_urls import TargetUrlCreate

router = APIRouter(prefix="/target-urls", tags=["target URLs"])


class TargetUrlPublic(BaseModel):
    id: str
    url: str
    description: str | None
    created_at: datetime


@router.get("", response_model=PageOut[TargetUrlPublic])
async def list_target_urls(db: DbSession, actor: CurrentActor, paging: Paging) -> object:
    return page_out(await service.list_target_urls(db, actor, paging), TargetUrlPublic)


@router.post("", status_code=201, response_model=TargetUrlPublic)
async def register_target_url(db: DbSession, actor: CurrentActor, body: TargetUrlCreate) -> object:
    """Register an exact URL, or a prefix ending in '/' that admits URLs below it."""
    return await service.create_target_url(db, actor, body)


@router.delete("/{target_url_id}", status_code=204)
async def unregister_target_url(db: DbSession, actor: CurrentActor, target_url_id: str) -> Response:
    """Subscriptions that no remaining registered URL admits are deactivated, with a reason."""
    await service.delete_target_url(db, actor, target_url_id)
    return Response(status_code=204)
