"""What an API handler may ask for besides the session and state (labhooks.dependencies): the
caller behind the bearer token, and paging."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from labhooks.dependencies import DbSession
from labhooks.domain.errors import PermissionDenied, Unauthenticated
from labhooks.domain.people import Actor, TokenScope
from labhooks.services.pages import Page, PageRequest
from labhooks.services.tokens import authenticate

_bearer = HTTPBearer(auto_error=False, description="An API token from POST /api/v1/tokens")


async def _any_actor(
    db: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None:
        raise Unauthenticated("Send an API token as 'Authorization: Bearer <token>'.")
    return await authenticate(db, credentials.credentials)


async def _full_actor(actor: Annotated[Actor, Depends(_any_actor)]) -> Actor:
    if actor.scope is not TokenScope.FULL:
        raise PermissionDenied("This token may only publish events.")
    return actor


CurrentActor = Annotated[Actor, Depends(_full_actor)]
Publisher = Annotated[Actor, Depends(_any_actor)]


async def _page(  # async: FastAPI would run a plain function in its thread pool
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor)


Paging = Annotated[PageRequest, Depends(_page)]

T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_out(page: Page[Any], model: type[BaseModel]) -> dict[str, object]:
    return {
        "items": [model.model_validate(item, from_attributes=True) for item in page.items],
        "next_cursor": page.next_cursor,
    }
