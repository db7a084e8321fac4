"""Lab rules (SPEC §3): channel thresholds open and close incidents from the data points
labhooks stores, and devices that fall silent go offline.

Both make ordinary events (`incident.opened` / `incident.closed` on the threshold's channel,
`device.status_changed` on the device's channels that offer it): they fan out, sign, retry and
log like any other, and are stored in the transaction that records what made them. Data points
are judged as they are stored (`apply`, called by publishing); what happens with no new data
point (a hold that runs out, a device that stays silent) is the timer's (`tick`, run by every
worker). A threshold's row is locked while it is judged, so two processes storing points of one
channel at once take turns, and an incident can be open only once per threshold (a unique
column) whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from labhooks.domain.catalogue import DEVICE_STATUS_CHANGED
from labhooks.domain.errors import FieldError, InvalidInput, NotFound
from labhooks.domain.ids import new_id
from labhooks.domain.people import Actor
from labhooks.domain.thresholds import Change, Comparator, Level, Rule, State, due, step
from labhooks.services import audit
from labhooks.services.fanout import OwnEvent, fan_out, references, store_own_events
from labhooks.services.inputs import Input, Number
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.storage.database import Database
from labhooks.storage.models import Channel, Device, Incident, Threshold, User, utcnow

log = logging.getLogger("labhooks.rules")
INCIDENT_EVENTS = ("incident.opened", "incident.closed")
DATA_POINT_CREATED = "data_point.created"  # the events a threshold judges
SILENT_HEARTBEATS = 2  # a device is offline once silent for this many heartbeats
MAX_THRESHOLDS_PER_CHANNEL = 20  # each is judged with every reading of its channel
_unjudgeable: set[str] = set()  # thresholds the timer could not judge, told once per process


class ThresholdIn(Input):
    level: Level = "warning"
    comparator: Comparator
    value: Number = Field(description="The limit; with `outside`, the low end of the range")
    upper: Number | None = Field(None, description="With `outside`: the high end of the range")
    hysteresis: Number = Field(
        0.0,
        description="How far back past the limit a value must come to close the incident "
        "(open above 8.5, close below 8.3: 0.2)",
    )
    hold_s: Number = Field(
        0.0,
        description="Seconds (up to a week) the value must stay past the limit before an "
        "incident opens",
    )


class Acknowledgement(Input):
    note: str | None = Field(None, max_length=2000)


def rule_of(threshold: Threshold) -> Rule:
    return Rule(
        threshold.comparator,  # type: ignore[arg-type]  # checked when it was stored
        threshold.value,
        threshold.upper,
        threshold.hysteresis,
        threshold.hold_s,
    )


# -- thresholds, as organisation administrators set them ------------------------------------


async def create_threshold(
    db: AsyncSession, actor: Actor, device_id: str, channel_id: str, data: ThresholdIn
) -> Threshold:
    """A threshold on a channel that reports data points; the channel offers the incident
    events from then on, so subscriptions can select them."""
    organization_id = actor.require_org_admin()
    channel = await _channel(db, organization_id, device_id, channel_id)
    rule = Rule(data.comparator, data.value, data.upper, data.hysteresis, data.hold_s)
    errors = [FieldError(name, message) for name, message in rule.problems().items()]
    if problem := channel_problem(channel):
        errors.append(FieldError("channel_id", problem))
    elif await _count_thresholds(db, channel.id) >= MAX_THRESHOLDS_PER_CHANNEL:
        errors.append(
            FieldError(
                "channel_id",
                f"has {MAX_THRESHOLDS_PER_CHANNEL} thresholds, the most a channel may have",
            )
        )
    if errors:  # all at once: a form shows each beside its field
        raise InvalidInput(errors)
    missing = [name for name in INCIDENT_EVENTS if name not in channel.trigger_events]
    if missing:
        channel.trigger_events = [*channel.trigger_events, *missing]
    channel.has_thresholds = True
    threshold = Threshold(
        organization_id=organization_id,
        device_id=device_id,
        channel_id=channel.id,
        level=data.level,
        comparator=data.comparator,
        value=data.value,
        upper=data.upper,
        hysteresis=data.hysteresis,
        hold_s=data.hold_s,
        status="normal",
    )
    db.add(threshold)
    await db.flush()  # its id, for the audit entry
    await audit.record(
        db,
        actor,
        "threshold.created",
        "threshold",
        threshold.id,
        f"Set a {threshold.level} threshold on the channel {channel.name} ({channel.key})",
        audit.diff({}, _audited(threshold)),
    )
    await db.commit()
    return threshold


def _audited(threshold: Threshold) -> dict[str, object]:
    return {
        "channel_id": threshold.channel_id,
        "level": threshold.level,
        "comparator": threshold.comparator,
        "value": threshold.value,
        "upper": threshold.upper,
        "hysteresis": threshold.hysteresis,
        "hold_s": threshold.hold_s,
    }


async def _count_thresholds(db: AsyncSession, channel_id: str) -> int:
    counted = select(func.count()).select_from(Threshold).where(Threshold.channel_id == channel_id)
    return int(await db.scalar(counted) or 0)


def channel_problem(channel: Channel) -> str | None:
    """Why a threshold cannot be set on the channel, if it cannot (the web UI offers only the
    channels without one)."""
    if DATA_POINT_CREATED not in channel.trigger_events:
        return (
            f"channel {channel.key!r} does not offer data_point.created; a threshold judges "
            "a channel's data points"
        )
    return None


async def list_thresholds(
    db: AsyncSession, actor: Actor, device_id: str, channel_id: str | None = None
) -> list[Threshold]:
    """Every member of the organisation may read a device's thresholds."""
    organization_id = actor.require_organization()
    statement = select(Threshold).where(
        Threshold.organization_id == organization_id, Threshold.device_id == device_id
    )
    if channel_id is not None:
        await _channel(db, organization_id, device_id, channel_id)
        statement = statement.where(Threshold.channel_id == channel_id)
    return list(await db.scalars(statement.order_by(Threshold.id)))


async def delete_threshold(db: AsyncSession, actor: Actor, threshold_id: str) -> None:
    """Its open incident, if any, closes (with the last value seen): nothing would close it."""
    organization_id = actor.require_org_admin()
    threshold = await db.scalar(
        select(Threshold)
        .where(Threshold.id == threshold_id, Threshold.organization_id == organization_id)
        .with_for_update(key_share=True)
    )
    if threshold is None:
        raise NotFound("Threshold")
    await _close_open([threshold], "threshold deleted", db)
    await audit.record(
        db,
        actor,
        "threshold.deleted",
        "threshold",
        threshold.id,
        f"Removed a {threshold.level} threshold ({rule_of(threshold).describe()})",
        audit.diff(_audited(threshold), {}),
    )
    await db.delete(threshold)
    await db.flush()
    others = select(Threshold.id).where(Threshold.channel_id == threshold.channel_id).limit(1)
    if await db.scalar(others) is None:
        channel = await db.get(Channel, threshold.channel_id)
        if channel is not None:
            channel.has_thresholds = False
    await db.commit()


async def close_incidents(db: AsyncSession, channel_ids: Sequence[str], reason: str) -> None:
    """Before channels go (removed from their device, or with it): their open incidents close,
    with `reason` and the last value seen, and say so to their subscribers; the incidents stay
    listed, their device and channel gone. In the caller's transaction."""
    if not channel_ids:
        return
    thresholds = await db.scalars(
        select(Threshold)
        .where(Threshold.channel_id.in_(channel_ids), Threshold.status == "open")
        .order_by(Threshold.id)
        .with_for_update(key_share=True)
    )
    await _close_open(list(thresholds), reason, db)


async def _close_open(thresholds: Sequence[Threshold], reason: str, db: AsyncSession) -> None:
    now = utcnow()
    for threshold in thresholds:
        if threshold.status != "open":
            continue
        value = threshold.last_value if threshold.last_value is not None else threshold.value
        made = await _record(db, threshold, Change("closed", now, value), now, reason=reason)
        _keep(threshold, State("normal", None, threshold.last_at, threshold.last_value))
        organization_id = threshold.organization_id
        await fan_out(db, organization_id, await store_own_events(db, organization_id, made))


async def _channel(
    db: AsyncSession, organization_id: str, device_id: str, channel_id: str
) -> Channel:
    channel = await db.scalar(
        select(Channel).where(
            Channel.id == channel_id,
            Channel.device_id == device_id,
            Channel.organization_id == organization_id,
        )
    )
    if channel is None:
        raise NotFound("Channel")
    return channel


# -- incidents -------------------------------------------------------------------------------


async def list_incidents(
    db: AsyncSession,
    actor: Actor,
    page: PageRequest,
    status: Literal["open", "closed"] | None = None,
    device_id: str | None = None,
    level: Level | None = None,
    newest_first: bool = False,
) -> Page[Incident]:
    statement = _incidents(actor.require_organization())
    if status == "open":
        statement = statement.where(Incident.closed_at.is_(None))
    elif status == "closed":
        statement = statement.where(Incident.closed_at.is_not(None))
    if device_id is not None:
        statement = statement.where(Incident.device_id == device_id)
    if level is not None:
        statement = statement.where(Incident.level == level)
    return await fetch_page(db, statement, Incident.id, page, descending=newest_first)


async def get_incident(db: AsyncSession, actor: Actor, incident_id: str) -> Incident:
    incident = await db.scalar(
        _incidents(actor.require_organization()).where(Incident.id == incident_id)
    )
    if incident is None:
        raise NotFound("Incident")
    return incident


async def count_open_incidents(db: AsyncSession, organization_id: str) -> int:
    return int(
        await db.scalar(
            select(func.count())
            .select_from(Incident)
            .where(Incident.organization_id == organization_id, Incident.closed_at.is_(None))
        )
        or 0
    )


async def acknowledge(
    db: AsyncSession, actor: Actor, incident_id: str, data: Acknowledgement
) -> Incident:
    """An organisation administrator says someone is on it: who, when, and a note. Again, it
    replaces the earlier acknowledgement (the latest word counts)."""
    actor.require_org_admin()
    incident = await get_incident(db, actor, incident_id)
    before = {"acknowledged_by": incident.acknowledged_by, "note": incident.acknowledgement_note}
    incident.acknowledged_by = actor.user_id
    incident.acknowledged_at = utcnow()
    incident.acknowledgement_note = (data.note or "").strip() or None
    await audit.record(
        db,
        actor,
        "incident.acknowledged",
        "incident",
        incident.id,
        f"Acknowledged a {incident.level} incident"
        + (f": {incident.acknowledgement_note}" if incident.acknowledgement_note else ""),
        audit.diff(
            before,
            {"acknowledged_by": actor.user_id, "note": incident.acknowledgement_note},
        ),
    )
    await db.commit()
    return await get_incident(db, actor, incident_id)


def _incidents(organization_id: str) -> Select[Incident]:
    return select(Incident).where(Incident.organization_id == organization_id)


async def acknowledgers(db: AsyncSession, incidents: Sequence[Incident]) -> dict[str, str]:
    """user id → name of whoever acknowledged these incidents, in one query (a page of them)."""
    ids = {i.acknowledged_by for i in incidents if i.acknowledged_by is not None}
    if not ids:
        return {}
    rows = await db.execute(select(User.id, User.name).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in rows}


# -- judging data points as they are stored --------------------------------------------------


async def apply(
    db: AsyncSession,
    organization_id: str,
    stored: Sequence[dict[str, Any]],
    now: datetime,
    watched_devices: set[str],
    judged_channels: set[str],
) -> list[dict[str, Any]]:
    """What the events just stored (rows, in this transaction) make: liveness and incident
    events, stored here too; returned for fan-out with the rest. `watched_devices` (with a
    heartbeat) and `judged_channels` (with thresholds) are known to the publisher already, so
    events of neither cost nothing more."""
    made: list[OwnEvent] = []
    if watched_devices:
        made += await _seen(db, watched_devices, now)
    points = _numeric_points([r for r in stored if r["channel_id"] in judged_channels])
    if points:
        thresholds = await db.scalars(
            select(Threshold)
            .where(Threshold.channel_id.in_(points))
            .order_by(Threshold.id)  # locked in one order: two publishers cannot deadlock
            .with_for_update(key_share=True)
        )
        for threshold in thresholds:
            state, changes = _state(threshold), []
            for at, value in points[threshold.channel_id]:
                state, change = step(rule_of(threshold), state, value, at, now)
                if change:
                    changes.append(change)
            _keep(threshold, state)
            for change in changes:
                made += await _record(db, threshold, change, now)
    return await store_own_events(db, organization_id, made) if made else []


def _numeric_points(stored: Sequence[dict[str, Any]]) -> dict[str, list[tuple[datetime, float]]]:
    """channel id → (occurred at, value) of its numeric data points, oldest first."""
    points: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for row in stored:
        if row["type"] != DATA_POINT_CREATED:
            continue
        value = json.loads(row["payload"])["data"].get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            points[row["channel_id"]].append((row["occurred_at"], float(value)))
    for series in points.values():
        series.sort(key=lambda point: point[0])
    return points


def _state(threshold: Threshold) -> State:
    return State(threshold.status, threshold.since, threshold.last_at, threshold.last_value)  # type: ignore[arg-type]


def _keep(threshold: Threshold, state: State) -> None:
    threshold.status, threshold.since = state.status, state.since
    threshold.last_at, threshold.last_value = state.last_at, state.last_value


async def _record(
    db: AsyncSession,
    threshold: Threshold,
    change: Change,
    now: datetime,
    reason: str | None = None,
) -> list[OwnEvent]:
    """The incident opened or closed, and its event."""
    if change.kind == "opened":
        incident = Incident(
            id=new_id("inc"),
            organization_id=threshold.organization_id,
            threshold_id=threshold.id,
            open_threshold_id=threshold.id,
            device_id=threshold.device_id,
            channel_id=threshold.channel_id,
            level=threshold.level,
            comparator=threshold.comparator,
            threshold_value=threshold.value,
            upper=threshold.upper,
            opened_at=change.at,
            opened_value=change.value,
        )
        db.add(incident)
    else:
        found = await db.scalar(select(Incident).where(Incident.open_threshold_id == threshold.id))
        if found is None:  # nothing open to close (it was closed by hand in the database)
            return []
        incident = found
        incident.closed_at, incident.closed_value = change.at, change.value
        incident.open_threshold_id = None
    await db.flush()
    device, channel = await _references(db, threshold.device_id, threshold.channel_id)
    data: dict[str, Any] = {
        "incident_id": incident.id,
        "incident_url": f"/api/v1/incidents/{incident.id}",
        "level": incident.level,
        "comparator": incident.comparator,
        "threshold": incident.threshold_value,
        **({"upper": incident.upper} if incident.upper is not None else {}),
        "value": change.value,
        "opened_at": _iso(incident.opened_at),
        **({"closed_at": _iso(change.at)} if change.kind == "closed" else {}),
        **({"reason": reason} if reason else {}),
    }
    log.info("incident %s %s on %s (%s)", incident.id, change.kind, channel["key"], data["value"])
    return [
        OwnEvent(
            key=f"incident:{incident.id}:{change.kind}",
            type=f"incident.{change.kind}",
            occurred_at=change.at,
            device=device,
            channel=channel,
            data=data,
            now=now,
        )
    ]


async def _references(
    db: AsyncSession, device_id: str, channel_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    device = await db.get(Device, device_id)
    channel = await db.get(Channel, channel_id)
    assert device is not None and channel is not None  # the threshold's, cascaded with them
    return references(device, channel)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- liveness --------------------------------------------------------------------------------


async def _seen(db: AsyncSession, device_ids: set[str], now: datetime) -> list[OwnEvent]:
    """Watched devices that sent something are seen now; one that was offline is online."""
    made: list[OwnEvent] = []
    for device in await db.scalars(
        _watched()
        .where(Device.id.in_(device_ids))
        .order_by(Device.id)
        # NO KEY UPDATE: the events just inserted hold KEY SHARE on the device row through
        # their foreign key; FOR UPDATE would wait on another publisher's, which waits on ours
        .with_for_update(key_share=True)
    ):
        device.last_seen_at = now
        if device.liveness == "offline":
            made += _status_events(device, "online", "offline", now, now)
        device.liveness = "online"
    return made


def _watched() -> Select[Device]:
    return (
        select(Device).options(selectinload(Device.channels)).where(Device.heartbeat_s.is_not(None))
    )


def _status_events(
    device: Device, status: str, previous: str | None, at: datetime, now: datetime
) -> list[OwnEvent]:
    """`device.status_changed` on each of the device's channels that offers it."""
    data: dict[str, Any] = {"status": status, "previous_status": previous}
    if status == "offline":
        data["message"] = f"nothing received for {SILENT_HEARTBEATS} heartbeats"
    made = []
    for channel in device.channels:
        if DEVICE_STATUS_CHANGED in channel.trigger_events:
            device_ref, channel_ref = references(device, channel)
            made.append(
                OwnEvent(
                    key=f"liveness:{channel.id}:{status}:{_iso(at)}",
                    type=DEVICE_STATUS_CHANGED,
                    occurred_at=at,
                    device=device_ref,
                    channel=channel_ref,
                    data=data,
                    now=now,
                )
            )
    return made


def offline_after(device: Device) -> datetime | None:
    """When a watched device that stays silent is offline."""
    if device.heartbeat_s is None or device.last_seen_at is None:
        return None
    return device.last_seen_at + timedelta(seconds=SILENT_HEARTBEATS * device.heartbeat_s)


# -- the timer -------------------------------------------------------------------------------


async def tick(db: AsyncSession, now: datetime) -> int:
    """What time alone changes, in every organisation: holds that ran out open their incidents,
    silent devices go offline. Returns the events made. Rows another worker is judging are
    left to it (SKIP LOCKED on PostgreSQL; SQLite has one writer)."""
    made: dict[str, list[OwnEvent]] = defaultdict(list)
    holding = await db.scalars(
        select(Threshold)
        .where(Threshold.status == "holding")
        .order_by(Threshold.id)
        .with_for_update(skip_locked=True, key_share=True)
    )
    for threshold in holding:
        try:  # one threshold that cannot be judged (a row damaged by hand) fails alone
            state, change = due(rule_of(threshold), _state(threshold), now)
        except Exception:
            if threshold.id not in _unjudgeable:  # once, not at every tick
                _unjudgeable.add(threshold.id)
                log.exception("threshold %s cannot be judged; the others are", threshold.id)
            continue
        if change:
            _keep(threshold, state)
            made[threshold.organization_id] += await _record(db, threshold, change, now)
    silent = await db.scalars(
        _watched()
        .where(Device.liveness.is_distinct_from("offline"))
        .order_by(Device.id)
        .with_for_update(skip_locked=True, key_share=True, of=Device)
    )
    for device in silent:
        deadline = offline_after(device)
        if deadline is not None and deadline <= now:
            made[device.organization_id] += _status_events(
                device, "offline", device.liveness, deadline, now
            )
            device.liveness = "offline"
    count = 0
    for organization_id, events in made.items():
        stored = await store_own_events(db, organization_id, events)
        await fan_out(db, organization_id, stored)
        count += len(stored)
    await db.commit()
    return count


async def run_timer(database: Database, stop: asyncio.Event, interval_s: float) -> None:
    """`tick` every `interval_s` until `stop`; beside every delivery worker. A failing tick (the
    database away) is logged and tried again at the next one."""
    while not stop.is_set():
        try:
            async with database.session() as db:
                await tick(db, utcnow())
        except Exception:
            log.exception("the lab rules' timer failed; trying again")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stop.wait()
