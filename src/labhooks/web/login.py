from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from labhooks.dependencies import DbSession, State
from labhooks.domain.errors import TooManyRequests, Unauthenticated
from labhooks.services.tokens import check_password
from labhooks.web.auth import CsrfChecked, log_in, log_out
from labhooks.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)


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
    address = request.client.host if request.client else None
    try:
        user = await check_password(
            db, email, password, state.passwords, address, state.login_limits
        )
    except (Unauthenticated, TooManyRequests) as exc:
        throttled = isinstance(exc, TooManyRequests)
        page = render(
            request,
            "login.html",
            None,
            status_code=429 if throttled else 401,
            title="Log in",
            next=_safe_next(next),
            email=email,
            error=exc.detail,
        )
        if isinstance(exc, TooManyRequests):
            page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    await log_in(request, db, user)
    return redirect(request, _safe_next(next))


@router.post("/logout", dependencies=[CsrfChecked])
async def logout(request: Request, db: DbSession) -> Response:
    await log_out(request, db)
    return redirect(request, "/login", "You are logged out.")
