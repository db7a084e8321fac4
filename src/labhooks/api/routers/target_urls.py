from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from labhooks.api.deps import CurrentActor, PageOut, Paging, page_out
from labhooks.dependencies import DbSession, State
from labhooks.services import target_urls as service
from labhooks.services.target_urls import TargetUrlCreate

router = APIRouter(prefix="/target-urls", tags=["target URLs"])


class TargetUrlPublic(BaseModel):
    id: str
    url: str
    description: str | None
    created_at: datetime


class RegisteredTargetUrl(TargetUrlPublic):
    warning: str | None = Field(
        None, description="Why deliveries to it would be refused as the server is configured"
    )


@router.get("", response_model=PageOut[TargetUrlPublic])
async def list_target_urls(db: DbSession, actor: CurrentActor, paging: Paging) -> object:
    return page_out(await service.list_target_urls(db, actor, paging), TargetUrlPublic)


@router.post("", status_code=201, response_model=RegisteredTargetUrl)
async def register_target_url(
    state: State, db: DbSession, actor: CurrentActor, body: TargetUrlCreate
) -> object:
    """Register an exact URL, or a prefix ending in '/' that admits URLs below it. `warning`
    says when deliveries to its host would be refused as the server is configured."""
    created = await service.create_target_url(db, actor, body)
    return RegisteredTargetUrl(
        **TargetUrlPublic.model_validate(created, from_attributes=True).model_dump(),
        warning=await service.delivery_warning(created.url, state.policy),
    )


@router.delete("/{target_url_id}", status_code=204)
async def unregister_target_url(db: DbSession, actor: CurrentActor, target_url_id: str) -> Response:
    """Subscriptions that no remaining registered URL admits are deactivated, with a reason."""
    await service.delete_target_url(db, actor, target_url_id)
    return Response(status_code=204)
