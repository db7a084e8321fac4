"""Browser sessions: login, logout, the CSRF token.

The session is Starlette's signed cookie (it holds the user id, when the user's credentials last
changed, and the CSRF token; nothing secret): a session from before a password change ends.
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

from labhooks.dependencies import DbSession
from labhooks.domain.errors import PermissionDenied
from labhooks.domain.people import Actor
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


def _credentials(user: User) -> str:
    changed = user.credentials_changed_at
    return changed.isoformat() if changed else ""


def log_in(request: Request, user: User) -> None:
    request.session.clear()
    request.session["user_id"] = user.id
    request.session["credentials"] = _credentials(user)
    csrf_token(request)


def log_out(request: Request) -> None:
    request.session.clear()


async def _web_actor(request: Request, db: DbSession) -> Actor:
    user_id = request.session.get("user_id")
    user = await db.get(User, user_id) if user_id else None
    if user is None or request.session.get("credentials", "") != _credentials(user):
        raise LoginRequired
    return actor_for(user)


async def _checked_csrf(
    request: Request, csrf_token_field: Annotated[str | None, Form(alias="csrf_token")] = None
) -> None:
    expected = request.session.get("csrf", "")
    presented = request.headers.get(CSRF_HEADER) or csrf_token_field or ""
    if not expected or not hmac.compare_digest(str(expected), presented):
        raise PermissionDenied(
            "The form expired or came from another site; reload the page and try again."
        )


WebActor = Annotated[Actor, Depends(_web_actor)]
CsrfChecked = Depends(_checked_csrf)
