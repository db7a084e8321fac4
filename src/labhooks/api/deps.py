"""What an API handler may ask for besides the session and state (labhooks.dependencies): the
caller behind the bearer token, and paging; and what the busiest routes, which resolve their
caller and body themselves (`LEAN`), use to do it the same way."""

from __future__ import annotations

import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException

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
        raise _no_token()
    return await authenticate(db, credentials.credentials)


async def _full_actor(actor: Annotated[Actor, Depends(_any_actor)]) -> Actor:
    return require_full_scope(actor)


def require_full_scope(actor: Actor) -> Actor:
    if actor.scope is not TokenScope.FULL:
        raise PermissionDenied("This token may only publish events.")
    return actor


async def bearer_actor(db: AsyncSession, request: Request) -> Actor:
    """The caller of a route that resolves it itself (the busiest routes, see `LEAN`): the
    same token, read the way HTTPBearer reads it, and the same errors as `Publisher`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _no_token()
    return await authenticate(db, token)


def _no_token() -> Unauthenticated:
    return Unauthenticated("Send an API token as 'Authorization: Bearer <token>'.")


# The busiest routes (publishing, /me) take the Request and open their session and find their
# caller themselves: FastAPI's dependency solving, a session generator's exit stack and
# response-model serialization cost a single-event publish as much CPU as storing it. They keep
# the security requirement in the API's documentation through this.
LEAN: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code, media_type="application/json")


async def json_body(request: Request) -> Any:
    """The request's body as FastAPI reads a `Body()` parameter: parsed when the content type
    is JSON, the bytes otherwise, None when empty; a body that does not parse is the same 400
    (api/problems)."""
    body = await request.body()
    if not body:
        return None
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json" and not (
        kind.startswith("application/") and kind.endswith("+json")
    ):
        return body
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}
        raise RequestValidationError([error | {"input": {}, "ctx": {"error": exc.msg}}]) from exc
    except (ValueError, RecursionError) as exc:  # not UTF-8, nested too deep
        raise HTTPException(400, "There was an error parsing the body") from exc


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
