"""/api-tokens: gateway and script credentials made by a logged-in caller, listed, revoked. The
login route (`POST /tokens` with an e-mail and a password) stays in users.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, Field

from labhooks.api.deps import CurrentActor, PageOut, Paging
from labhooks.dependencies import DbSession
from labhooks.domain.people import TokenScope
from labhooks.services import tokens as service
from labhooks.services.tokens import ApiTokenCreate, TokenView

router = APIRouter(prefix="/api-tokens", tags=["API tokens"])


class ApiTokenPublic(BaseModel):
    id: str
    name: str | None
    scope: TokenScope
    created_at: datetime
    expires_at: datetime | None
    expired: bool
    device_id: str | None = Field(description="The one device a publish token may publish for")
    device_ids: list[str] = Field(description="The same, as a list (SPEC §7's name)")
    owner_id: str
    owner_email: str


class ApiTokenCreated(ApiTokenPublic):
    token: str = Field(description="The token itself: shown in this answer only, never again")


def _public(view: TokenView) -> ApiTokenPublic:
    return ApiTokenPublic(
        id=view.id,
        name=view.name,
        scope=TokenScope(view.scope),
        created_at=view.created_at,
        expires_at=view.expires_at,
        expired=view.expired,
        device_id=view.device_id,
        device_ids=[view.device_id] if view.device_id else [],
        owner_id=view.owner_id,
        owner_email=view.owner_email,
    )


CREATE_EXAMPLES = {
    "gateway": {
        "summary": "A gateway's publish token, held to one device, for a year",
        "value": {
            "name": "balance gateway, room 2.14",
            "scope": "publish",
            "device_id": "dev_0192f3a4b5c67d8e9f0a1b2c3d4e5f60",
            "expires_in_days": 365,
        },
    },
    "script": {
        "summary": "A script's full token until a given time",
        "value": {"name": "nightly export", "scope": "full", "expires_at": "2027-01-31T00:00:00Z"},
    },
}


@router.post("", status_code=201, response_model=ApiTokenCreated)
async def create_api_token(
    db: DbSession,
    actor: CurrentActor,
    body: Annotated[ApiTokenCreate, Body(openapi_examples=CREATE_EXAMPLES)],
) -> object:
    """Make a token for the caller. `publish` tokens (organisation administrators only) may only
    publish events, optionally for one device; `full` tokens act as the caller. The token is in
    this answer only: store it now."""
    view, plaintext = await service.create_api_token(db, actor, body)
    return ApiTokenCreated(**_public(view).model_dump(), token=plaintext)


@router.get("", response_model=PageOut[ApiTokenPublic])
async def list_api_tokens(db: DbSession, actor: CurrentActor, paging: Paging) -> object:
    """The caller's tokens, newest first; for organisation administrators also the
    organisation's publish tokens. Never a token's value."""
    page = await service.list_api_tokens(db, actor, paging)
    return {"items": [_public(v) for v in page.items], "next_cursor": page.next_cursor}


@router.delete("/{token_id}", status_code=204)
async def revoke_api_token(db: DbSession, actor: CurrentActor, token_id: str) -> Response:
    """Revoke a token: from this moment it answers 401."""
    await service.revoke_api_token(db, actor, token_id)
    return Response(status_code=204)
