"""Server Administration (organisations, the webhook switch) and the organisation page
(registered target URLs, users and roles, channel access, devices; adding, editing and deleting
a device is in devices.py)."""

from __future__ import annotations

from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from starlette.responses import Response

from labhooks.dependencies import DbSession, State
from labhooks.domain.errors import Conflict, InvalidInput, PermissionDenied
from labhooks.domain.people import Actor, Role
from labhooks.services import devices, organizations, target_urls, users
from labhooks.services.pages import every_item
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.device_form import EVENT_NAMES, DeviceForm
from labhooks.web.forms import labelled, validated
from labhooks.web.paging import Listing, ListPage, back, listing, showing
from labhooks.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)
ORGANIZATION = "/organization"
T = TypeVar("T")
ROLES = [Role.MEMBER.value, Role.ADMIN.value]  # "Add user" proposes the first


def _errors(exc: InvalidInput | Conflict) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors:
        name = error.field.split(".")[0]
        found.setdefault(name, labelled(name, error.message))
    return found or {"form": exc.detail}


# -- server administration ---------------------------------------------------------------


async def _admin_page(
    request: Request, db: DbSession, actor: Actor, status_code: int = 200, **form: Any
) -> Response:
    list_page = partial(organizations.list_organizations, db, actor)
    choices = sorted(await every_item(list_page), key=lambda o: o.name.lower())
    return render(
        request,
        "admin.html",
        actor,
        status_code=status_code,
        title="Server Administration",
        organizations=await listing(request, "/admin", "after", list_page),
        choices=choices,
        roles=ROLES,
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
            db, actor, validated(organizations.OrganizationCreate, data)
        )
    except (InvalidInput, Conflict) as exc:
        return await _admin_page(request, db, actor, 422, org_errors=_errors(exc), org_values=form)
    list_page = partial(organizations.list_organizations, db, actor)
    target = await showing(request, "/admin", "after", created, list_page)
    return redirect(request, target, f"Organisation {created.name} created.")


@router.post("/admin/organizations/{organization_id}/webhooks", dependencies=[CsrfChecked])
async def switch_webhooks(
    request: Request, db: DbSession, actor: WebActor, organization_id: str
) -> Response:
    enabled = (await request.form()).get("enabled") == "on"
    organization = await organizations.update_organization(
        db, actor, organization_id, organizations.OrganizationUpdate(webhooks_enabled=enabled)
    )
    state = "on" if enabled else "off"
    return redirect(
        request, back(request, "/admin"), f"Webhooks switched {state} for {organization.name}."
    )


@router.post("/admin/users", dependencies=[CsrfChecked])
async def add_user_anywhere(
    request: Request, state: State, db: DbSession, actor: WebActor
) -> Response:
    form = dict(await request.form())
    try:
        user = await users.create_user(
            db, actor, validated(users.UserCreate, form), state.passwords
        )
    except (InvalidInput, Conflict) as exc:
        return await _admin_page(
            request, db, actor, 422, user_errors=_errors(exc), user_values=form
        )
    return redirect(request, back(request, "/admin"), f"User {user.email} created.")


# -- the organisation ----------------------------------------------------------------------


async def organization_page(
    request: Request,
    db: DbSession,
    actor: Actor,
    status_code: int = 200,
    device_form: DeviceForm | None = None,
    **form: Any,
) -> Response:
    organization_id = actor.require_org_admin()
    organization = await organizations.load_organization(db, organization_id)
    people = partial(users.list_users, db, actor)
    members = [u for u in await every_item(people) if u.role == "member"]
    channels = await every_item(partial(devices.list_accessible_channels, db, actor))
    return render(
        request,
        "organization.html",
        actor,
        status_code=status_code,
        title=organization.name,
        organization=organization,
        urls=await _list(request, "urls", partial(target_urls.list_target_urls, db, actor)),
        people=await _list(request, "users", people),
        grants=await _list(request, "access", partial(devices.list_channel_access, db, actor)),
        devices=await _list(request, "devices", partial(devices.list_devices, db, actor)),
        members=sorted(members, key=lambda u: (u.name.lower(), u.email)),
        channels=sorted(channels, key=lambda c: (c.device.name.lower(), c.name.lower())),
        roles=ROLES,
        device_form=device_form or DeviceForm.blank_form(),
        event_types=EVENT_NAMES,
        **form,
    )


# Each list of the organisation page: its query parameter, and the section the links jump to.
_LISTS = {
    "urls": ("urls_after", "target-urls"),
    "users": ("users_after", "users"),
    "access": ("access_after", "channel-access"),
    "devices": ("devices_after", "devices"),
}


async def _list(request: Request, name: str, list_page: ListPage[T]) -> Listing[T]:
    param, anchor = _LISTS[name]
    return await listing(request, ORGANIZATION, param, list_page, anchor)


async def added(request: Request, name: str, item: Any, list_page: ListPage[Any]) -> str:
    """The organisation page with the list `name` on the page that shows the new `item`."""
    param, anchor = _LISTS[name]
    return await showing(request, ORGANIZATION, param, item, list_page, anchor)


@router.get(ORGANIZATION)
async def organization(request: Request, db: DbSession, actor: WebActor) -> Response:
    return await organization_page(request, db, actor)


@router.post("/organization/target-urls", dependencies=[CsrfChecked])
async def add_target_url(
    request: Request, state: State, db: DbSession, actor: WebActor
) -> Response:
    form = dict(await request.form())
    data = {"url": form.get("url", ""), "description": form.get("description") or None}
    try:
        created = await target_urls.create_target_url(
            db, actor, validated(target_urls.TargetUrlCreate, data)
        )
    except (InvalidInput, Conflict) as exc:
        return await organization_page(
            request, db, actor, 422, url_errors=_errors(exc), url_values=form
        )
    list_page = partial(target_urls.list_target_urls, db, actor)
    target = await added(request, "urls", created, list_page)
    warning = await target_urls.delivery_warning(created.url, state.policy)
    return redirect(request, target, f"{created.url} registered.", warning)


@router.post("/organization/target-urls/{target_url_id}/delete", dependencies=[CsrfChecked])
async def remove_target_url(
    request: Request, db: DbSession, actor: WebActor, target_url_id: str
) -> Response:
    count = await target_urls.delete_target_url(db, actor, target_url_id)
    note = f" {count} subscriptions using it were deactivated." if count else ""
    return redirect(request, back(request, ORGANIZATION), "Target URL removed." + note)


@router.post("/organization/users", dependencies=[CsrfChecked])
async def add_user(request: Request, state: State, db: DbSession, actor: WebActor) -> Response:
    form = dict(await request.form())
    try:
        user = await users.create_user(
            db, actor, validated(users.UserCreate, form), state.passwords
        )
    except (InvalidInput, Conflict, PermissionDenied) as exc:
        errors = _errors(exc) if not isinstance(exc, PermissionDenied) else {"form": exc.detail}
        return await organization_page(
            request, db, actor, 422, user_errors=errors, user_values=form
        )
    target = await added(request, "users", user, partial(users.list_users, db, actor))
    return redirect(request, target, f"User {user.email} added.")


@router.post("/organization/channel-grants", dependencies=[CsrfChecked])
async def add_grant(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = dict(await request.form())
    try:
        grant = await devices.create_grant(db, actor, validated(devices.GrantCreate, form))
    except (InvalidInput, Conflict) as exc:
        return await organization_page(
            request, db, actor, 422, grant_errors=_errors(exc), grant_values=form
        )
    list_page = partial(devices.list_channel_access, db, actor)
    target = await added(request, "access", grant, list_page)
    return redirect(request, target, "Channel access granted.")


@router.post("/organization/channel-grants/{grant_id}/delete", dependencies=[CsrfChecked])
async def remove_grant(request: Request, db: DbSession, actor: WebActor, grant_id: str) -> Response:
    await devices.delete_grant(db, actor, grant_id)
    return redirect(request, back(request, ORGANIZATION), "Channel access removed.")


@router.post("/organization/users/{user_id}/role", dependencies=[CsrfChecked])
async def change_role(
    request: Request, state: State, db: DbSession, actor: WebActor, user_id: str
) -> Response:
    page = back(request, ORGANIZATION)
    if user_id == actor.user_id:  # stepping down would take this page away mid-click
        return redirect(
            request, page, warning="You cannot change your own role; another administrator can."
        )
    role = str((await request.form()).get("role", ""))
    try:
        data = validated(users.UserUpdate, {"role": role})
        user = await users.update_user(db, actor, user_id, data, state.passwords)
    except (InvalidInput, Conflict, PermissionDenied) as exc:
        why = next(iter(_errors(exc).values())) if isinstance(exc, InvalidInput) else exc.detail
        return redirect(request, page, warning=why)
    return redirect(request, page, f"{user.name} is now {user.role}.")


@router.post("/organization/users/{user_id}/delete", dependencies=[CsrfChecked])
async def remove_user(request: Request, db: DbSession, actor: WebActor, user_id: str) -> Response:
    page = back(request, ORGANIZATION)
    user = await users.load_user(db, actor, user_id)
    name = user.name
    try:
        await users.delete_user(db, actor, user_id)
    except (Conflict, PermissionDenied) as exc:
        return redirect(request, page, warning=exc.detail)
    return redirect(request, page, f"User {name} removed.")
