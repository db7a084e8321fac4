"""Mounting the web UI on the app: session cookies, security headers, static files, routes, HTML
error pages."""

from __future__ import annotations

import hashlib
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from labhooks.web import (
    admin,
    audit,
    devices,
    incidents,
    login,
    subscription_page,
    subscriptions,
    tokens,
)
from labhooks.web.auth import LoginRequired
from labhooks.web.rendering import render

SESSION_HOURS = 12


def install(app: FastAPI, secret_key: str, secure_cookies: bool) -> None:
    session_key = hashlib.sha256(b"labhooks web sessions\0" + secret_key.encode()).hexdigest()
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_key,
        session_cookie="labhooks_session",
        max_age=SESSION_HOURS * 3600,
        same_site="lax",
        https_only=secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    # the overview's fixed paths (/new, /channel-search) before the subscription page's /{id}
    for module in (
        login,
        subscriptions,
        subscription_page,
        admin,
        devices,
        incidents,
        audit,
        tokens,
    ):
        app.include_router(module.router)

    async def login_required(request: Request, _: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    app.add_exception_handler(LoginRequired, login_required)


def error_page(request: Request, message: str, status: int) -> Response:
    return render(
        request,
        "error.html",
        None,
        status_code=status,
        title=HTTPStatus(status).phrase,
        message=message,
    )
