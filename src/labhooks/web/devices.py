"""The organisation's devices on the web: the device form with as many channel rows as wanted
(added on the organisation page, edited on a page of its own), turned into the service's input
and its errors filed back beside the row they belong to; editing and deleting a device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from labhooks.dependencies import DbSession
from labhooks.domain.catalogue import EVENT_TYPES
from labhooks.domain.errors import Conflict, FieldError, InvalidInput
from labhooks.domain.people import Actor
from labhooks.services import devices
from labhooks.storage.models import Device
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.forms import field_errors, sentence
from labhooks.web.paging import back
from labhooks.web.rendering import redirect, render

router = APIRouter(include_in_schema=False)
ORGANIZATION = "/organization"
EVENT_NAMES = list(EVENT_TYPES)
_LABELS = {
    "name": "The name",
    "model": "The model",
    "key": "The key",
    "unit": "The unit",
    "trigger_events": "The trigger events",
    "channels": "The channels",
}


@dataclass
class ChannelRow:
    """One channel's inputs. `token` names them on the page (a row added by the script gets a
    new one), so a row's ticked events stay its own whichever rows are removed."""

    token: str
    key: str = ""
    name: str = ""
    unit: str = ""
    events: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def blank(self) -> bool:
        return not (self.key.strip() or self.name.strip() or self.unit.strip() or self.events)


@dataclass
class DeviceForm:
    name: str = ""
    model: str = ""
    rows: list[ChannelRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def blank_form(cls) -> DeviceForm:
        return cls(rows=[ChannelRow("0")])

    @classmethod
    def of(cls, device: Device) -> DeviceForm:
        rows = [
            ChannelRow(str(i), c.key, c.name, c.unit or "", list(c.trigger_events))
            for i, c in enumerate(device.channels)
        ]
        return cls(device.name, device.model or "", rows or [ChannelRow("0")])

    @classmethod
    def parse(cls, form: FormData) -> DeviceForm:
        """Rows by position (each has a key, a name and a unit input, in that order); events as
        `<token>|<event>`. A post naming one row without tokens (`channel_key`, `channel_name`,
        plain event names), as the page sent before it had several rows, is one row."""
        keys, names, units, tokens = (
            [str(v) for v in form.getlist(name)]
            for name in ("channel_key", "channel_name", "channel_unit", "channel_row")
        )
        count = max(len(keys), len(names), len(units), len(tokens))
        rows = [
            ChannelRow(
                tokens[i] if i < len(tokens) else str(i),
                keys[i] if i < len(keys) else "",
                names[i] if i < len(names) else "",
                units[i] if i < len(units) else "",
            )
            for i in range(count)
        ]
        by_token = {row.token: row for row in rows}
        for raw in form.getlist("trigger_events"):
            token, marked, event = str(raw).partition("|")
            row = by_token.get(token) if marked else (rows[0] if rows else None)
            if row is not None:
                row.events.append(event if marked else token)
        return cls(
            name=str(form.get("name", "")),
            model=str(form.get("model", "")),
            rows=rows or [ChannelRow("0")],
        )

    @property
    def template_row(self) -> ChannelRow:
        """The row the page's script copies for "Add channel", its token filled in there."""
        return ChannelRow("__row__")

    @property
    def sent(self) -> list[ChannelRow]:
        """The rows the service gets: an untouched empty row is no channel."""
        return [row for row in self.rows if not row.blank()]

    def data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model.strip() or None,
            "channels": [
                {
                    "key": row.key.strip(),
                    "name": row.name,
                    "unit": row.unit.strip() or None,
                    "trigger_events": row.events,
                }
                for row in self.sent
            ],
        }

    def validated(self, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(self.data())
        except ValidationError as exc:
            raise InvalidInput(field_errors(exc)) from None

    def show(self, errors: list[FieldError]) -> None:
        """Each error beside its field: `channels.<i>.<field>` beside the i-th row sent."""
        sent = self.sent
        for error in errors:
            parts = error.field.split(".")
            row = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else len(sent)
            if parts[0] == "channels" and row < len(sent):
                message = sentence(_LABELS.get(parts[2], "This"), error.message)
                sent[row].errors.setdefault(parts[2], message)
                continue
            self.errors.setdefault(parts[0], sentence(_LABELS.get(parts[0], "This"), error.message))


def refusal(exc: InvalidInput | Conflict) -> list[FieldError]:
    return exc.errors or [FieldError("form", exc.detail)]


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
    stored_name = (await devices.get_device(db, actor, device_id)).name
    form = DeviceForm.parse(await request.form())
    try:
        saved = await devices.update_device(
            db, actor, device_id, form.validated(devices.DeviceUpdate)
        )
    except (InvalidInput, Conflict) as exc:
        form.show(refusal(exc))
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
