"""Server Administration (organisations, the webhook switch) and the organisation page
(registered target URLs, users and roles, channel access, devices)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from starlette.responses import Response

from labhooks.dependencies import DbSession
from labhooks.domain.catalogue import EVENT_TYPES
from labhooks.domain.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
    field_errors_from_pydantic,
)
from labhooks.domain.people import Actor
from labhooks.services import devices, organizations, target_urls, users
from labhooks.services.pages import PageRequest
from labhooks.storage.models import Channel, ChannelGrant, User
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)
ALL = PageRequest(limit=200)


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(field_errors_from_pydantic(exc.errors())) from None


def _errors(exc: InvalidInput | Conflict) -> dict[str, str]:
    found = {e.field.split(".")[0]: e.message for e in exc.errors}
    return found or {"form": exc.detail}


# -- server administration ---------------------------------------------------------------


async def _admin_page(
    request: Request, db: DbSession, actor: Actor, status_code: int = 200, **form: Any
) -> Response:
    page = await organizations.list_organizations(db, actor, ALL)
    return render(
        request,
        "admin.html",
        actor,
        status_code=status_code,
        title="Server Administration",
        organizations=page.items,
        **form,
    )


@router.get("/admin")
async def admin(request: Request, db: DbSession, actor: WebActor) -> Response:
    actor.require_server_admin()
    return await _admin_page(request, db, actor)


@router.post("/admin/organizations", dependencies=[CsrfChecked])
async def add_organization(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = dict(await request.form())
    data = {"name": form.get("name", ""), "webhooks_enabled": form.get("webhooks_enabled") == "on"}
    try:
        created = await organizations.create_organization(
            db, actor, _validated(organizations.OrganizationCreate, data)
        )
    except (InvalidInput, Conflict) as exc:
        return await _admin_page(request, db, actor, 422, org_errors=_errors(exc), org_values=form)
    return redirect(request, "/admin", f"Organisation {created.name} created.")


@router.post("/admin/organizations/{organization_id}/webhooks", dependencies=[CsrfChecked])
async def switch_webhooks(
    request: Request, db: DbSession, actor: WebActor, organization_id: str
) -> Response:
    enabled = (await request.form()).get("enabled") == "on"
    organization = await organizations.update_organization(
        db, actor, organization_id, organizations.OrganizationUpdate(webhooks_enabled=enabled)
    )
    state = "on" if enabled else "off"
    return redirect(request, "/admin", f"Webhooks switched {state} for {organization.name}.")


@router.post("/admin/users", dependencies=[CsrfChecked])
async def add_user_anywhere(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = dict(await request.form())
    try:
        user = await users.create_user(db, actor, _validated(users.UserCreate, form))
    except (InvalidInput, Conflict) as exc:
        return await _admin_page(
            request, db, actor, 422, user_errors=_errors(exc), user_values=form
        )
    return redirect(request, "/admin", f"User {user.email} created.")


# -- the organisation ----------------------------------------------------------------------


async def _organization_page(
    request: Request, db: DbSession, actor: Actor, status_code: int = 200, **form: Any
) -> Response:
    organization_id = actor.require_org_admin()
    organization = await organizations.load_organization(db, organization_id)
    people = (await users.list_users(db, actor, ALL)).items
    device_page = await devices.list_devices(db, actor, ALL)
    grants = await db.execute(
        select(ChannelGrant, User, Channel)
        .join(User, User.id == ChannelGrant.user_id)
        .join(Channel, Channel.id == ChannelGrant.channel_id)
        .where(ChannelGrant.organization_id == organization_id)
        .order_by(User.name, ChannelGrant.id)
    )
    device_names = {d.id: d.name for d in device_page.items}
    return render(
        request,
        "organization.html",
        actor,
        status_code=status_code,
        title=organization.name,
        organization=organization,
        urls=(await target_urls.list_target_urls(db, actor, ALL)).items,
        people=people,
        devices=device_page.items,
        device_names=device_names,
        grants=list(grants),
        event_types=list(EVENT_TYPES),
        **form,
    )


@router.get("/organization")
async def organization(request: Request, db: DbSession, actor: WebActor) -> Response:
    return await _organization_page(request, db, actor)


@router.post("/organization/target-urls", dependencies=[CsrfChecked])
async def add_target_url(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = dict(await request.form())
    data = {"url": form.get("url", ""), "description": form.get("description") or None}
    try:
        created = await target_urls.create_target_url(
            db, actor, _validated(target_urls.TargetUrlCreate, data)
        )
    except (InvalidInput, Conflict) as exc:
        return await _organization_page(
            request, db, actor, 422, url_errors=_errors(exc), url_values=form
        )
    return redirect(request, "/organization", f"{created.url} registered.")


@router.post("/organization/target-urls/{target_url_id}/delete", dependencies=[CsrfChecked])
async def remove_target_url(
    request: Request, db: DbSession, actor: WebActor, target_url_id: str
) -> Response:
    count = await target_urls.delete_target_url(db, actor, target_url_id)
    note = f" {count} subscriptions using it were deactivated." if count else ""
    return redirect(request, "/organization", "Target URL removed." + note)


@router.post("/organization/users", dependencies=[CsrfChecked])
async def add_user(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = dict(await request.form())
    try:
        user = await users.create_user(db, actor, _validated(users.UserCreate, form))
    except (InvalidInput, Conflict, PermissionDenied) as exc:
        errors = _errors(exc) if not isinstance(exc, PermissionDenied) else {"form": exc.detail}
        return await _organization_page(
            request, db, actor, 422, user_errors=errors, user_values=form
        )
    return redirect(request, "/organization", f"User {user.email} added.")


@router.post("/organization/channel-grants", dependencies=[CsrfChecked])
async def add_grant(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = dict(await request.form())
    try:
        await devices.create_grant(db, actor, _validated(devices.GrantCreate, form))
    except (InvalidInput, Conflict) as exc:
        return await _organization_page(
            request, db, actor, 422, grant_errors=_errors(exc), grant_values=form
        )
    return redirect(request, "/organization", "Channel access granted.")


@router.post("/organization/channel-grants/{grant_id}/delete", dependencies=[CsrfChecked])
async def remove_grant(request: Request, db: DbSession, actor: WebActor, grant_id: str) -> Response:
    await devices.delete_grant(db, actor, grant_id)
    return redirect(request, "/organization", "Channel access removed.")


@router.post("/organization/devices", dependencies=[CsrfChecked])
async def add_device(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items()}
    data = {
        "name": values.get("name", ""),
        "model": values.get("model") or None,
        "channels": [
            {
                "key": values.get("channel_key", ""),
                "name": values.get("channel_name", ""),
                "unit": values.get("channel_unit") or None,
                "trigger_events": [str(e) for e in form.getlist("trigger_events")],
            }
        ],
    }
    try:
        created = await devices.create_device(db, actor, _validated(devices.DeviceCreate, data))
    except (InvalidInput, Conflict) as exc:
        errors: dict[str, str] = {}
        for error in getattr(exc, "errors", []):
            parts = error.field.split(".")
            key = f"channel_{parts[2]}" if parts[0] == "channels" and len(parts) > 2 else parts[0]
            errors.setdefault(key, error.message)
        return await _organization_page(
            request,
            db,
            actor,
            422,
            device_errors=errors or {"form": exc.detail},
            device_values=values,
        )
    return redirect(request, "/organization", f"Device {created.name} added.")
