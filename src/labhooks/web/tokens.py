"""The Tokens page: the caller's API tokens (and, for organisation administrators, the
organisation's gateway tokens), making one, which is shown once, and revoking one."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from labhooks.dependencies import DbSession
from labhooks.domain.errors import FieldError, InvalidInput
from labhooks.domain.people import Actor, TokenScope
from labhooks.services import devices, tokens
from labhooks.services.pages import every_item
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.forms import labelled, validated
from labhooks.web.paging import back, listing
from labhooks.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)
TOKENS = "/tokens"
LABELS = {
    "name": "The name",
    "scope": "The scope",
    "device_id": "The device",
    "expires_in_days": "The expiry",
}


def _errors(exc: InvalidInput) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors:
        name = error.field.split(".")[0]
        found.setdefault(name, labelled(name, error.message, LABELS))
    return found or {"form": exc.detail}


async def _page(
    request: Request, db: DbSession, actor: Actor, status_code: int = 200, **context: Any
) -> Response:
    device_choices = (
        sorted(
            await every_item(partial(devices.list_devices, db, actor)),
            key=lambda d: d.name.lower(),
        )
        if actor.is_org_admin
        else []
    )
    scopes = [TokenScope.PUBLISH, TokenScope.FULL] if actor.is_org_admin else [TokenScope.FULL]
    return render(
        request,
        "tokens.html",
        actor,
        status_code=status_code,
        title="API Tokens",
        tokens=await listing(request, TOKENS, "after", partial(tokens.list_api_tokens, db, actor)),
        devices=device_choices,
        scopes=scopes,
        **context,
    )


@router.get(TOKENS)
async def tokens_page(request: Request, db: DbSession, actor: WebActor) -> Response:
    return await _page(request, db, actor)


def _input(data: dict[str, Any]) -> tokens.ApiTokenCreate:
    """The form as the service's input, every field's mistake at once (days in words too)."""
    days = data["expires_in_days"]
    wrong_days = days is not None and not (days.isascii() and days.isdigit())
    found: list[FieldError] = []
    try:
        body = validated(
            tokens.ApiTokenCreate, data | ({"expires_in_days": None} if wrong_days else {})
        )
    except InvalidInput as exc:
        found = exc.errors
    if wrong_days:
        found.append(FieldError("expires_in_days", "must be a whole number of days"))
    if found:
        raise InvalidInput(found)
    return body


@router.post(TOKENS, dependencies=[CsrfChecked])
async def create_token(request: Request, db: DbSession, actor: WebActor) -> Response:
    """Answers with the page itself, the new token on it: it is shown this once, and never put
    in the session cookie (signed, not encrypted) to survive a redirect."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    data = {
        "name": form.get("name", ""),
        "scope": form.get("scope", ""),
        "device_id": form.get("device_id") or None,
        "expires_in_days": form.get("expires_in_days", "").strip() or None,
    }
    try:
        created, plaintext = await tokens.create_api_token(db, actor, _input(data))
    except InvalidInput as exc:
        return await _page(request, db, actor, 422, errors=_errors(exc), values=form)
    return await _page(request, db, actor, 201, created=created, plaintext=plaintext)


@router.post(TOKENS + "/{token_id}/revoke", dependencies=[CsrfChecked])
async def revoke_token(request: Request, db: DbSession, actor: WebActor, token_id: str) -> Response:
    await tokens.revoke_api_token(db, actor, token_id)
    return redirect(
        request, back(request, TOKENS), "Token revoked: it no longer works, from now on."
    )
