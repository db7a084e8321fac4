"""The audit log (services.audit): read-only, newest first. No route changes or removes an
entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from labhooks.api.deps import CurrentActor, PageOut, Paging, page_out
from labhooks.dependencies import DbSession
from labhooks.services import audit as service
from labhooks.services.audit import AuditFilter

router = APIRouter(prefix="/audit-log", tags=["audit log"])


class AuditEntryPublic(BaseModel):
    id: str
    created_at: datetime
    organization_id: str | None = Field(
        description="None: the server's own entry (an organisation created)"
    )
    actor: str = Field(description="Who acted, as they were named then: 'Ana <ana@lab.org>'")
    actor_user_id: str | None = Field(description="None once that user was removed")
    token_id: str | None = Field(description="The API token acted with; None: the web UI or CLI")
    action: str = Field(examples=["subscription.updated"])
    target_type: str = Field(examples=["subscription"])
    target_id: str | None
    summary: str
    changes: dict[str, Any] | None = Field(
        description=f"field → [before, after]; a secret's value reads {service.HIDDEN!r}",
        examples=[{"active": [True, False], "header:X-Api-Key": [service.HIDDEN, service.HIDDEN]}],
    )


def _filter(text: str) -> Any:
    return Query(max_length=100, description=text)


@router.get("", response_model=PageOut[AuditEntryPublic])
async def list_audit_log(
    db: DbSession,
    actor: CurrentActor,
    paging: Paging,
    organization_id: Annotated[
        str | None, _filter("Server administrators: one organisation's entries only")
    ] = None,
    action: Annotated[str | None, _filter("e.g. subscription.deleted")] = None,
    target_type: Annotated[str | None, _filter("e.g. subscription, user, target_url")] = None,
    target_id: Annotated[str | None, _filter("Entries about this one thing")] = None,
    actor_user_id: Annotated[str | None, _filter("Entries of what this user did")] = None,
) -> object:
    """Who changed what, newest first. Organisation administrators read their organisation's
    entries; server administrators every organisation's and the server's own."""
    narrow = AuditFilter(organization_id, action, target_type, target_id, actor_user_id)
    return page_out(await service.list_entries(db, actor, paging, narrow), AuditEntryPublic)
