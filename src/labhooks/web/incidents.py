"""The incidents page: every member of an organisation reads its incidents, newest first, a page
at a time, filtered by status, device and level with a plain GET form; organisation
administrators acknowledge them with a note. Also what a device's page shows of its open
incidents (devices.py), and the rows both pages are made of."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from labhooks.dependencies import DbSession
from labhooks.domain.errors import FieldError, InvalidInput
from labhooks.domain.people import Actor
from labhooks.domain.thresholds import LEVELS, Level
from labhooks.services import devices, lab_rules
from labhooks.services.lab_rules import Acknowledgement
from labhooks.services.pages import every_item
from labhooks.storage.models import Device, Incident
from labhooks.web.auth import CsrfChecked, WebActor
from labhooks.web.forms import labelled, validated
from labhooks.web.paging import back, listing
from labhooks.web.rendering import redirect, render
from labhooks.web.threshold_form import limit_in_words

router = APIRouter(include_in_schema=False)
INCIDENTS = "/incidents"
STATUSES = {"open": "Open", "closed": "Closed", "all": "All"}  # the first is the default
_NOTE = {"note": "The note"}


@dataclass(frozen=True)
class IncidentRow:
    """One incident as the pages show it, with the names of what it is about."""

    incident: Incident
    device: str
    channel: str
    unit: str | None
    limit: str  # the threshold's, as it was: "> 8.5"
    acknowledged_by: str | None  # None: not acknowledged, or by a user removed since

    @property
    def what(self) -> str:
        return f"{self.device} · {self.channel}"

    def reading(self, value: float | None) -> str:
        text = f"{value:.10g}"
        return f"{text} {self.unit}" if self.unit else text


async def incident_rows(
    db: AsyncSession, incidents: Sequence[Incident], known: Sequence[Device]
) -> list[IncidentRow]:
    """`known`: the organisation's devices (with their channels), for the names."""
    channels = {c.id: (d.name, c.name, c.unit) for d in known for c in d.channels}
    names = await lab_rules.acknowledgers(db, incidents)
    # an incident goes with its device, but one may go between the two reads
    gone = ("a removed device", "a removed channel", None)
    return [
        IncidentRow(
            incident,
            *channels.get(incident.channel_id or "", gone),
            limit_in_words(incident),
            names.get(incident.acknowledged_by or ""),
        )
        for incident in incidents
    ]


@dataclass(frozen=True)
class Filters:
    status: str
    device_id: str
    level: str

    @classmethod
    def of(cls, request: Request) -> Filters:
        """The filters a page's address asks for; a value the form does not offer is refused."""
        query = request.query_params
        found = cls(
            query.get("status") or next(iter(STATUSES)),
            query.get("device_id", "").strip(),
            query.get("level", ""),
        )
        errors = []
        if found.status not in STATUSES:
            errors.append(FieldError("status", f"must be one of {', '.join(STATUSES)}"))
        if found.level and found.level not in LEVELS:
            errors.append(FieldError("level", f"must be one of {', '.join(LEVELS)}"))
        if errors:
            raise InvalidInput(errors)
        return found

    def words(self, device_names: dict[str, str]) -> str:
        """What is listed: "open critical incidents of pH meter"."""
        status = "" if self.status == "all" else f"{self.status} "
        level = f"{self.level} " if self.level else ""
        device = device_names.get(self.device_id, "a device no longer there")
        return f"{status}{level}incidents" + (f" of {device}" if self.device_id else "")


async def incidents_page(
    request: Request,
    db: AsyncSession,
    actor: Actor,
    status_code: int = 200,
    notes: dict[str, str] | None = None,
    note_errors: dict[str, str] | None = None,
) -> Response:
    """`notes`, `note_errors`: a refused acknowledgement's note as typed, and why, by incident."""
    shown = Filters.of(request)
    known = sorted(
        await every_item(partial(devices.list_devices, db, actor)), key=lambda d: d.name.lower()
    )
    level: Level | None = shown.level or None  # type: ignore[assignment]  # checked by Filters
    list_page = partial(
        lab_rules.list_incidents,
        db,
        actor,
        status=None if shown.status == "all" else shown.status,  # type: ignore[arg-type]
        device_id=shown.device_id or None,
        level=level,
        newest_first=True,
    )
    found = await listing(request, INCIDENTS, "before", list_page)
    return render(
        request,
        "incidents.html",
        actor,
        status_code=status_code,
        title="Incidents",
        rows=await incident_rows(db, found.items, known),
        links=found.links,
        filters=shown,
        summary=shown.words({d.id: d.name for d in known}),
        statuses=STATUSES,
        levels=LEVELS,
        devices=known,
        notes=notes or {},
        note_errors=note_errors or {},
    )


@router.get(INCIDENTS)
async def incidents(request: Request, db: DbSession, actor: WebActor) -> Response:
    return await incidents_page(request, db, actor)


@router.post(f"{INCIDENTS}/{{incident_id}}/acknowledge", dependencies=[CsrfChecked])
async def acknowledge(
    request: Request, db: DbSession, actor: WebActor, incident_id: str
) -> Response:
    """Back to the same filtered page (the form's action carries its query)."""
    actor.require_org_admin()  # a member is refused whatever the note says
    note = str((await request.form()).get("note", ""))
    try:
        data = validated(Acknowledgement, {"note": note.strip() or None})
        incident = await lab_rules.acknowledge(db, actor, incident_id, data)
    except InvalidInput as exc:
        why = labelled("note", exc.errors[0].message, _NOTE)
        return await incidents_page(
            request, db, actor, 422, notes={incident_id: note}, note_errors={incident_id: why}
        )
    what = "a removed device"
    if incident.device_id is not None:
        device = await devices.get_device(db, actor, incident.device_id)
        named = (c.name for c in device.channels if c.id == incident.channel_id)
        what = f"{device.name} · {next(named, 'a removed channel')}"
    return redirect(request, back(request, INCIDENTS), f"Incident on {what} acknowledged.")
