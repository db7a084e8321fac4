from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from labhooks.api.deps import CurrentActor, PageOut, Paging, page_out
from labhooks.dependencies import DbSession
from labhooks.services import organizations as service
from labhooks.services.organizations import OrganizationCreate, OrganizationUpdate

router = APIRouter(prefix="/organizations", tags=["organisations"])


class OrganizationPublic(BaseModel):
    id: str
    name: str
    webhooks_enabled: bool
    created_at: datetime


@router.get("", response_model=PageOut[OrganizationPublic])
async def list_organizations(db: DbSession, actor: CurrentActor, paging: Paging) -> object:
    return page_out(await service.list_organizations(db, actor, paging), OrganizationPublic)


@router.post("", status_code=201, response_model=OrganizationPublic)
async def create_organization(
    db: DbSession, actor: CurrentActor, body: OrganizationCreate
) -> object:
    return await service.create_organization(db, actor, body)


@router.get("/{organization_id}", response_model=OrganizationPublic)
async def get_organization(db: DbSession, actor: CurrentActor, organization_id: str) -> object:
    return await service.get_organization(db, actor, organization_id)


@router.patch("/{organization_id}", response_model=OrganizationPublic)
async def update_organization(
    db: DbSession, actor: CurrentActor, organization_id: str, body: OrganizationUpdate
) -> object:
    return await service.update_organization(db, actor, organization_id, body)
