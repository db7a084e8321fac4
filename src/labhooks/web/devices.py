"""The organisation's devices on the web: adding one (its form is on the organisation page),
editing one on a page of its own, deleting one; on that page too, the device's thresholds
(added and deleted there) and its open incidents. The forms themselves are device_form.py and
threshold_form.py."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from labhooks.dependencies import DbSession
from labhooks.domain.errors import Conflict, FieldError, InvalidInput, NotFound
from labhooks.domain.people import Actor
from labhooks.domain.thresholds import LEVELS
from labhooks.services import devices, lab_rules
from labhooks.services.pages import PageRequest
from labhooks.storage.models import Device, Threshold
from labhooks.web.admin import ORGANIZATION, added, organization_page
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.device_form import EVENT_NAMES, DeviceForm
from labhooks.web.incidents import incident_rows
from labhooks.web.paging import PAGE_SIZE, back
from labhooks.web.rendering import redirect, render
from labhooks.web.threshold_form import COMPARATORS, ThresholdForm, judged, rule_in_words

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


@dataclass(frozen=True)
class ThresholdRow:
    threshold: Threshold
    channel: str
    rule: str  # in words: "> 8.5, clears at 8.3 or below, held 5 min"


async def device_page(
    request: Request,
    db: AsyncSession,
    actor: Actor,
    device: Device,
    device_form: DeviceForm | None = None,
    threshold_form: ThresholdForm | None = None,
    status_code: int = 200,
) -> Response:
    """A device's own page: its form, its thresholds and its open incidents."""
    names = {channel.id: channel.name for channel in device.channels}
    thresholds = await lab_rules.list_thresholds(db, actor, device.id)
    offered = judged(device.channels)
    first = offered[0].id if offered else ""
    open_now = await lab_rules.list_incidents(
        db, actor, PageRequest(PAGE_SIZE), "open", device.id, newest_first=True
    )
    return render(
        request,
        "device.html",
        actor,
        status_code=status_code,
        title=f"Edit device {device.name}",
        device_id=device.id,
        device_name=device.name,
        device_form=device_form or DeviceForm.of(device),
        event_types=EVENT_NAMES,
        thresholds=[
            ThresholdRow(t, names.get(t.channel_id, "?"), rule_in_words(t)) for t in thresholds
        ],
        judged=offered,
        threshold_form=threshold_form or ThresholdForm(channel_id=first),
        comparators=COMPARATORS,
        levels=LEVELS,
        open_incidents=await incident_rows(db, open_now.items, [device]),
        more_open=open_now.next_cursor is not None,
    )


async def _stored(db: AsyncSession, actor: Actor, device_id: str) -> Device:
    """The device as stored, for a page shown after a refusal: what the refused service call
    changed in the session is undone first."""
    await db.rollback()
    return await devices.get_device(db, actor, device_id)


@router.get(f"{ORGANIZATION}/devices/{{device_id}}")
async def edit_device(request: Request, db: DbSession, actor: WebActor, device_id: str) -> Response:
    actor.require_org_admin()
    device = await devices.get_device(db, actor, device_id)
    return await device_page(request, db, actor, device)


@router.post(f"{ORGANIZATION}/devices/{{device_id}}", dependencies=[CsrfChecked])
async def save_device(request: Request, db: DbSession, actor: WebActor, device_id: str) -> Response:
    stored = await devices.get_device(db, actor, device_id)
    form = DeviceForm.parse(await request.form())
    try:
        data = form.input(devices.DeviceUpdate, stored.channels)
        saved = await devices.update_device(db, actor, device_id, data)
    except (InvalidInput, Conflict) as exc:
        form.show(_refusal(exc))
        stored = await _stored(db, actor, device_id)
        return await device_page(request, db, actor, stored, device_form=form, status_code=422)
    return redirect(request, back(request, ORGANIZATION), f"Device {saved.name} saved.")


@router.post(f"{ORGANIZATION}/devices/{{device_id}}/thresholds", dependencies=[CsrfChecked])
async def add_threshold(
    request: Request, db: DbSession, actor: WebActor, device_id: str
) -> Response:
    actor.require_org_admin()
    device = await devices.get_device(db, actor, device_id)
    form = ThresholdForm.parse(await request.form())
    try:
        data = form.input(device.channels)
        added = await lab_rules.create_threshold(db, actor, device_id, form.channel_id, data)
    except InvalidInput as exc:
        form.show(exc.errors)
        device = await _stored(db, actor, device_id)
        return await device_page(request, db, actor, device, threshold_form=form, status_code=422)
    channel = next(c.name for c in device.channels if c.id == added.channel_id)
    page = back(request, f"{ORGANIZATION}/devices/{device_id}")
    return redirect(request, page, f"Threshold on {channel} added: {rule_in_words(added)}.")


@router.post(
    f"{ORGANIZATION}/devices/{{device_id}}/thresholds/{{threshold_id}}/delete",
    dependencies=[CsrfChecked],
)
async def delete_threshold(
    request: Request, db: DbSession, actor: WebActor, device_id: str, threshold_id: str
) -> Response:
    device = await devices.get_device(db, actor, device_id)
    thresholds = await lab_rules.list_thresholds(db, actor, device_id)
    threshold = next((t for t in thresholds if t.id == threshold_id), None)
    if threshold is None:
        raise NotFound("Threshold")
    channel = next(c.name for c in device.channels if c.id == threshold.channel_id)
    words, was_open = rule_in_words(threshold), threshold.status == "open"
    await lab_rules.delete_threshold(db, actor, threshold_id)
    closed = " Its open incident was closed." if was_open else ""
    page = back(request, f"{ORGANIZATION}/devices/{device_id}")
    return redirect(request, page, f"Threshold on {channel} deleted ({words}).{closed}")


@router.post(f"{ORGANIZATION}/devices/{{device_id}}/delete", dependencies=[CsrfChecked])
async def delete_device(
    request: Request, db: DbSession, actor: WebActor, device_id: str
) -> Response:
    device = await devices.get_device(db, actor, device_id)
    name = device.name
    await devices.delete_device(db, actor, device_id)
    return redirect(request, back(request, ORGANIZATION), f"Device {name} deleted.")
