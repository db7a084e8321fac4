from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from labhooks.dependencies import DbSession, State
from labhooks.domain.errors import Unauthenticated
from labhooks.services.tokens import check_password
from labhooks.web.auth import CsrfChecked, LoginThrottle, log_in, log_out
from labhooks.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)
throttle = LoginThrottle()


def _safe_next(target: str | None) -> str:
    """Only paths on this site, so a crafted link cannot send a user elsewhere after login."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", None, title="Log in", next=_safe_next(next), email="")


@router.post("/login", dependencies=[CsrfChecked])
async def login(
    request: Request,
    state: State,
    db: DbSession,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    wait = throttle.wait_minutes(email)
    error = None
    if wait:
        error = f"Too many failed attempts for this address. Try again in {wait} minutes."
    else:
        try:
            user = await check_password(db, email, password, state.passwords)
        except Unauthenticated as exc:
            throttle.failed(email)
            error = exc.detail
        else:
            throttle.succeeded(email)
            log_in(request, user)
            return redirect(request, _safe_next(next))
    return render(
        request,
        "login.html",
        None,
        status_code=429 if wait else 401,
        title="Log in",
        next=_safe_next(next),
        email=email,
        error=error,
    )


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request) -> Response:
    log_out(request)
    return redirect(request, "/login", "You are logged out.")
