"""The organisation's devices on the web: adding one (its form is on the organisation page),
editing one on a page of its own, deleting one. The form itself is device_form.py."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from starlette.responses import Response

from labhooks.dependencies import DbSession
from labhooks.domain.errors import Conflict, FieldError, InvalidInput
from labhooks.domain.people import Actor
from labhooks.services import devices
from labhooks.web.admin import ORGANIZATION, added, organization_page
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.device_form import EVENT_NAMES, DeviceForm
from labhooks.web.paging import back
from labhooks.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)


def _refusal(exc: InvalidInput | Conflict) -> list[FieldError]:
    return exc.errors or [FieldError("form", exc.detail)]


@router.post(f"{ORGANIZATION}/devices", dependencies=[CsrfChecked])
async def add_device(request: Request, db: DbSession, actor: WebActor) -> Response:
    form = DeviceForm.parse(await request.form())
    try:
        created = await devices.create_device(db, actor, form.input(devices.DeviceCreate))
    except (InvalidInput, Conflict) as exc:
        form.show(_refusal(exc))
        return await organization_page(request, db, actor, 422, device_form=form)
    target = await added(request, "devices", created, partial(devices.list_devices, db, actor))
    return redirect(request, target, f"Device {created.name} added.")


def _edit_page(
    request: Request,
    actor: Actor,
    device_id: str,
    stored_name: str,
    form: DeviceForm,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "device.html",
        actor,
        status_code=status_code,
        title=f"Edit device {stored_name}",
        device_id=device_id,
        device_form=form,
        event_types=EVENT_NAMES,
    )


@router.get(f"{ORGANIZATION}/devices/{{device_id}}")
async def edit_device(request: Request, db: DbSession, actor: WebActor, device_id: str) -> Response:
    actor.require_org_admin()
    device = await devices.get_device(db, actor, device_id)
    return _edit_page(request, actor, device_id, device.name, DeviceForm.of(device))


@router.post(f"{ORGANIZATION}/devices/{{device_id}}", dependencies=[CsrfChecked])
async def save_device(request: Request, db: DbSession, actor: WebActor, device_id: str) -> Response:
    stored = await devices.get_device(db, actor, device_id)
    stored_name = stored.name
    form = DeviceForm.parse(await request.form())
    try:
        data = form.input(devices.DeviceUpdate, stored.channels)
        saved = await devices.update_device(db, actor, device_id, data)
    except (InvalidInput, Conflict) as exc:
        form.show(_refusal(exc))
        return _edit_page(request, actor, device_id, stored_name, form, 422)
    return redirect(request, back(request, ORGANIZATION), f"Device {saved.name} saved.")


@router.post(f"{ORGANIZATION}/devices/{{device_id}}/delete", dependencies=[CsrfChecked])
async def delete_device(
    request: Request, db: DbSession, actor: WebActor, device_id: str
) -> Response:
    device = await devices.get_device(db, actor, device_id)
    name = device.name
    await devices.delete_device(db, actor, device_id)
    return redirect(request, back(request, ORGANIZATION), f"Device {name} deleted.")
