"""Browser sessions: login, logout, the CSRF token, and a limit on failed logins.

The session is Starlette's signed cookie (it holds the user id and the CSRF token; nothing
secret). Every form carries the token as a hidden field, every htmx request as a header; a POST
without the session's token is refused. That is the synchronizer-token pattern, written here
because the CSRF middlewares on PyPI only read headers, which plain HTML forms cannot send.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict, deque
from typing import Annotated

from fastapi import Depends, Form, Request

from labhooks.dependencies import DbSession
from labhooks.domain.errors import PermissionDenied
from labhooks.domain.people import Actor
from labhooks.services.tokens import actor_for
from labhooks.storage.models import User

MAX_FAILURES = 5
FAILURE_WINDOW_S = 15 * 60
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """Raised for a page that needs a logged-in user; answered with a redirect to /login."""


class LoginThrottle:
    """At most MAX_FAILURES failed logins per e-mail address in FAILURE_WINDOW_S, per process."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, email: str) -> deque[float]:
        failures = self._failures[email.strip().lower()]
        while failures and failures[0] < time.monotonic() - FAILURE_WINDOW_S:
            failures.popleft()
        return failures

    def wait_minutes(self, email: str) -> int:
        failures = self._recent(email)
        if len(failures) < MAX_FAILURES:
            return 0
        return int((failures[0] + FAILURE_WINDOW_S - time.monotonic()) // 60) + 1

    def failed(self, email: str) -> None:
        self._recent(email).append(time.monotonic())

    def succeeded(self, email: str) -> None:
        self._failures.pop(email.strip().lower(), None)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def log_in(request: Request, user: User) -> None:
    request.session.clear()
    request.session["user_id"] = user.id
    csrf_token(request)


def log_out(request: Request) -> None:
    request.session.clear()


async def _web_actor(request: Request, db: DbSession) -> Actor:
    user_id = request.session.get("user_id")
    user = await db.get(User, user_id) if user_id else None
    if user is None:
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
