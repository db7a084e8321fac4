"""Templates, and the context every page shares (who is logged in, the menu, the CSRF token)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from labhooks import __version__
from labhooks.domain.people import Actor
from labhooks.web.auth import csrf_token

HTMX = "vendor/htmx-2.0.11.min.js"  # from the npm package htmx.org, pinned in package.json
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))


def in_utc(moment: datetime, seconds: bool = False) -> str:
    """How a time reads without JavaScript, zone named; app.js shows it in the browser's zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "")) + " UTC"


templates.env.filters["utc"] = in_utc


def render(
    request: Request, template: str, actor: Actor | None, status_code: int = 200, **context: Any
) -> Response:
    return templates.TemplateResponse(
        request,
        template,
        {
            "actor": actor,
            "csrf": csrf_token(request),
            "flash": request.session.pop("flash", None),
            "warning": request.session.pop("warning", None),
            # forms on paged pages post to their action with this, to come back to the same pages
            "here": f"?{request.url.query}" if request.url.query else "",
            "htmx": HTMX,
            "version": __version__,
            # the menu's badge, for organisation administrators (counted by auth._web_actor)
            "open_incident_count": getattr(request.state, "open_incidents", None),
            **context,
        },
        status_code=status_code,
    )


def redirect(
    request: Request, url: str, flash: str | None = None, warning: str | None = None
) -> RedirectResponse:
    """After a POST: see-other to `url`, with a message shown once on the next page, and a
    warning beside it when what was done may not work as meant (a target deliveries cannot
    reach)."""
    if flash:
        request.session["flash"] = flash
    if warning:
        request.session["warning"] = warning
    return RedirectResponse(url, status_code=303)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"
