from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from labhooks.api.deps import (
    LEAN,
    CurrentActor,
    PageOut,
    Paging,
    bearer_actor,
    json_response,
    page_out,
    require_full_scope,
)
from labhooks.dependencies import DbSession, State, app_state
from labhooks.domain.people import TokenScope
from labhooks.services import tokens, users
from labhooks.services.tokens import TokenCreate
from labhooks.services.users import UserCreate, UserUpdate

router = APIRouter(tags=["users"])


class UserPublic(BaseModel):
    id: str
    organization_id: str | None
    email: str
    name: str
    role: str | None
    is_server_admin: bool
    created_at: datetime


class TokenPublic(BaseModel):
    id: str
    token: str
    scope: TokenScope
    user_id: str


@router.get("/users", response_model=PageOut[UserPublic])
async def list_users(
    db: DbSession, actor: CurrentActor, paging: Paging, organization_id: str | None = None
) -> object:
    return page_out(await users.list_users(db, actor, paging, organization_id), UserPublic)


@router.post("/users", status_code=201, response_model=UserPublic)
async def create_user(state: State, db: DbSession, actor: CurrentActor, body: UserCreate) -> object:
    return await users.create_user(db, actor, body, state.passwords)


@router.get("/users/{user_id}", response_model=UserPublic)
async def get_user(db: DbSession, actor: CurrentActor, user_id: str) -> object:
    return await users.load_user(db, actor, user_id)


@router.patch("/users/{user_id}", response_model=UserPublic)
async def update_user(
    state: State, db: DbSession, actor: CurrentActor, user_id: str, body: UserUpdate
) -> object:
    return await users.update_user(db, actor, user_id, body, state.passwords)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(db: DbSession, actor: CurrentActor, user_id: str) -> Response:
    await users.delete_user(db, actor, user_id)
    return Response(status_code=204)


@router.get("/me", response_model=UserPublic, openapi_extra=LEAN)
async def me(request: Request) -> Response:
    async with app_state(request).database.session() as db:
        actor = require_full_scope(await bearer_actor(db, request))
        user = await users.load_user(db, actor, actor.user_id)
        return json_response(UserPublic.model_validate(user, from_attributes=True))


@router.post("/tokens", status_code=201, response_model=TokenPublic)
async def create_token(request: Request, state: State, db: DbSession, body: TokenCreate) -> object:
    """Exchange an e-mail and password for an API token. The token is shown only in this answer."""
    address = request.client.host if request.client else None
    token, plaintext = await tokens.issue_token(
        db, body, state.passwords, address, state.login_limits
    )
    return TokenPublic(id=token.id, token=plaintext, scope=body.scope, user_id=token.user_id)
