"""Browser sessions: login, logout, the CSRF token.

The session is Starlette's signed cookie: it holds the key of a session kept on the server
(services.sessions: logging out, a new password or deleting the user ends it) and the CSRF
token.
Every form carries the token as a hidden field, every htmx request as a header; a POST without
the session's token is refused. That is the synchronizer-token pattern, written here because the
CSRF middlewares on PyPI only read headers, which plain HTML forms cannot send. Failed logins
are limited by services.tokens.check_password, for the API and the form alike.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Form, Request
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.dependencies import DbSession
from labhooks.domain.errors import PermissionDenied
from labhooks.domain.people import Actor
from labhooks.services.lab_rules import count_open_incidents
from labhooks.services.sessions import close_session, open_session, session_user
from labhooks.services.tokens import actor_for
from labhooks.storage.models import User

CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """Raised for a page that needs a logged-in user; answered with a redirect to /login."""


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


async def log_in(request: Request, db: AsyncSession, user: User) -> None:
    request.session.clear()
    request.session["key"] = await open_session(db, user)
    csrf_token(request)


async def log_out(request: Request, db: AsyncSession) -> None:
    if key := request.session.get("key"):
        await close_session(db, str(key))
    request.session.clear()


async def _web_actor(request: Request, db: DbSession) -> Actor:
    """The logged-in user; for an organisation administrator, the menu's count of open
    incidents too, counted here once per request for whichever page it renders."""
    key = request.session.get("key")
    user = await session_user(db, str(key)) if key else None
    if user is None:
        raise LoginRequired
    actor = actor_for(user)
    if actor.is_org_admin and actor.organization_id is not None:
        request.state.open_incidents = await count_open_incidents(db, actor.organization_id)
    return actor


async def _checked_csrf(
    request: Request, csrf_token_field: Annotated[str | None, Form(alias="csrf_token")] = None
) -> None:
    expected = request.session.get("csrf", "")
    presented = request.headers.get(CSRF_HEADER) or csrf_token_field or ""
    # compared as bytes: compare_digest refuses str that is not ASCII (any byte may be sent)
    if not expected or not hmac.compare_digest(
        str(expected).encode(), presented.encode("utf-8", "surrogatepass")
    ):
        raise PermissionDenied(
            "The form expired or came from another site; reload the page and try again."
        )


WebActor = Annotated[Actor, Depends(_web_actor)]
CsrfChecked = Depends(_checked_csrf)
