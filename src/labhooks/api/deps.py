"""What a handler may ask for: the session, the caller, paging, the shared services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import PermissionDenied, Unauthenticated
from labhooks.domain.people import Actor, TokenScope
from labhooks.security import SecretBox
from labhooks.services.pages import Page, PageRequest
from labhooks.services.subscriptions import SubscriptionService
from labhooks.services.tokens import authenticate
from labhooks.settings import Settings
from labhooks.storage.database import Database


@dataclass
class AppState:
    """Everything made once at start-up and shared by all requests."""

    settings: Settings
    database: Database
    box: SecretBox
    subscriptions: SubscriptionService
    attempts_written: Pulse


class Pulse:
    """Lets request handlers wait until this process's worker has recorded more attempts."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.labhooks
    return state


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with _state(request).database.session() as session:
        yield session


State = Annotated[AppState, Depends(_state)]
DbSession = Annotated[AsyncSession, Depends(_session)]
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


def _page(
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
