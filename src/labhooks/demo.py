"""`labhooks demo`: a demo organisation to click through, and a request inspector to watch
deliveries arrive. Seeding is idempotent: running the demo again reuses what exists."""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections import deque
from dataclasses import dataclass, replace
from functools import partial

import httpx
from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import HTMLResponse, JSONResponse

from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.ingestion import simulator
from labhooks.ingestion.publisher import Publisher
from labhooks.security import Passwords, SecretBox
from labhooks.services import devices, organizations, target_urls, tokens, users
from labhooks.services.devices import ChannelIn, DeviceCreate, GrantCreate
from labhooks.services.pages import every_item
from labhooks.services.subscriptions import SubscriptionService, SubscriptionUpdate
from labhooks.storage.database import Database
from labhooks.storage.models import Organization, User

DEMO_PASSWORD = "labhooks-demo"  # noqa: S105 (printed for the demo's users on purpose)
INSPECTOR_PATH = "/demo/inspector/"
INSPECTOR_NOTE = "Demo request inspector"


@dataclass(frozen=True)
class DemoLogins:
    server_admin: str
    org_admin: str
    member: str
    simulator_token: str = ""  # the lab administrator's, for the live simulated lab


@dataclass(frozen=True)
class Captured:
    at: float
    path: str
    headers: dict[str, str]
    body: str


class Inspector:
    """Keeps the last 200 requests POSTed under /demo/inspector/, and shows them."""

    def __init__(self) -> None:
        self.requests: deque[Captured] = deque(maxlen=200)

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)

        @router.post(INSPECTOR_PATH + "{path:path}")
        async def capture(request: Request, path: str) -> JSONResponse:
            body = (await request.body()).decode("utf-8", errors="replace")
            self.requests.appendleft(Captured(time.time(), path, dict(request.headers), body))
            return JSONResponse({"received": True, "path": path})

        @router.get(INSPECTOR_PATH)
        async def show() -> HTMLResponse:
            items = "".join(_item(captured) for captured in self.requests)
            page = (
                "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=3>"
                "<link rel=stylesheet href=/static/app.css><title>Request inspector</title>"
                "<main><h1>Request inspector</h1><p class=hint>Deliveries to "
                f"<code>{INSPECTOR_PATH}…</code> on this server, newest first; refreshes every 3 s."
                f"</p><ul class=log>{items or '<li>Nothing yet.</li>'}</ul></main>"
            )
            return HTMLResponse(page)

        return router


async def _move_inspector(db: AsyncSession, admin: Actor, base_url: str, box: SecretBox) -> None:
    """Registers the inspector at `base_url`, points the demo's subscriptions to an inspector of
    another port at it, and unregisters the others."""
    inspector = base_url + INSPECTOR_PATH
    registered = await every_item(partial(target_urls.list_target_urls, db, admin))
    stale = [u for u in registered if u.url.endswith(INSPECTOR_PATH) and u.url != inspector]
    if not stale:
        return
    if all(u.url != inspector for u in registered):
        await target_urls.create_target_url(
            db, admin, target_urls.TargetUrlCreate(url=inspector, description=INSPECTOR_NOTE)
        )
    service = SubscriptionService(box)
    for subscription in await every_item(partial(service.list_for, db, admin)):
        old = next((u.url for u in stale if subscription.target_url.startswith(u.url)), None)
        if old:
            moved = inspector + subscription.target_url.removeprefix(old)
            await service.update(db, admin, subscription.id, SubscriptionUpdate(target_url=moved))
    for old_registration in stale:
        await target_urls.delete_target_url(db, admin, old_registration.id)


def _item(captured: Captured) -> str:
    moment = time.strftime("%H:%M:%S", time.localtime(captured.at))
    headers = "\n".join(f"{name}: {value}" for name, value in captured.headers.items())
    return (
        f"<li><h2>{moment} /{html.escape(captured.path)}</h2>"
        f"<pre>{html.escape(headers)}</pre><pre>{html.escape(_pretty(captured.body))}</pre></li>"
    )


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


async def seed(
    database: Database, base_url: str, passwords: Passwords, box: SecretBox
) -> DemoLogins:
    """The demo organisation with webhooks on, an administrator and a member, a balance and a pH
    meter, the member's access to both, and the inspector registered as a target URL. Seeded
    before, it is kept, and its inspector moves to `base_url` (the demo may run on another
    port this time)."""
    logins = DemoLogins("admin@example.org", "lab-admin@example.org", "scientist@example.org")
    async with database.session() as db:
        root = await users.create_server_admin(db, logins.server_admin, DEMO_PASSWORD, passwords)
        root = root or await tokens.check_password(
            db, logins.server_admin, DEMO_PASSWORD, passwords
        )
        if await db.scalar(select(Organization.id).where(Organization.name == "Demo Lab")):
            admin = await db.scalar(select(User).where(User.email == logins.org_admin))
            if admin is None:
                return logins
            await _move_inspector(db, tokens.actor_for(admin), base_url, box)
            return await _with_simulator_token(db, admin, logins)
        operator = tokens.actor_for(root)
        lab = await organizations.create_organization(
            db, operator, organizations.OrganizationCreate(name="Demo Lab", webhooks_enabled=True)
        )
        for email, name, role in (
            (logins.org_admin, "Alex Admin", Role.ADMIN),
            (logins.member, "Sam Scientist", Role.MEMBER),
        ):
            await users.create_user(
                db,
                operator,
                users.UserCreate(
                    email=email,
                    name=name,
                    password=DEMO_PASSWORD,
                    role=role,
                    organization_id=lab.id,
                ),
                passwords,
            )
        admin = await db.scalar(select(User).where(User.email == logins.org_admin))
        member = await db.scalar(select(User).where(User.email == logins.member))
        assert admin is not None and member is not None
        lab_admin = tokens.actor_for(admin)
        await target_urls.create_target_url(
            db,
            lab_admin,
            target_urls.TargetUrlCreate(url=base_url + INSPECTOR_PATH, description=INSPECTOR_NOTE),
        )
        instruments = [
            DeviceCreate(
                name="Balance XS205",
                model="Mettler Toledo XS205",
                channels=[
                    ChannelIn(
                        key="weight",
                        name="Weight",
                        unit="g",
                        trigger_events=["data_point.created", "command.completed"],
                    ),
                    ChannelIn(
                        key="status", name="Status", trigger_events=["device.status_changed"]
                    ),
                ],
            ),
            DeviceCreate(
                name="pH meter SevenExcellence",
                model="Mettler Toledo S400",
                channels=[
                    ChannelIn(
                        key="ph",
                        name="pH",
                        unit="pH",
                        trigger_events=["data_point.created", "incident.opened", "incident.closed"],
                    ),
                ],
            ),
        ]
        for instrument in instruments:
            device = await devices.create_device(db, lab_admin, instrument)
            await devices.create_grant(
                db, lab_admin, GrantCreate(user_id=member.id, channel_id=device.channels[0].id)
            )
        return await _with_simulator_token(db, admin, logins)


async def _with_simulator_token(db: AsyncSession, admin: User, logins: DemoLogins) -> DemoLogins:
    """The lab administrator's token for the live simulated lab: it publishes, and makes the
    simulated devices, through the API as a gateway would."""
    _, token = await tokens.create_token(db, admin, TokenScope.FULL, "demo simulator")
    return replace(logins, simulator_token=token)


async def simulated_lab(
    base_url: str, logins: DemoLogins, rate: float, stop: asyncio.Event
) -> None:
    """The simulated devices (ingestion.simulator) in the demo lab, readable by the scientist,
    reporting `rate` readings a second through the demo's own API until `stop`."""
    api = f"{base_url}/api/v1"
    models = simulator.lab()
    device_ids = await simulator.ensure_devices(api, logins.simulator_token, models, stop)
    headers = {"Authorization": f"Bearer {logins.simulator_token}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as client:
        scientist = (await client.get("/users", params={"limit": 200})).json()["items"]
        [member] = [u for u in scientist if u["email"] == logins.member]
        for device_id in device_ids.values():
            for channel in (await client.get(f"/devices/{device_id}")).json()["channels"]:
                grant = {"user_id": member["id"], "channel_id": channel["id"]}
                await client.post("/channel-grants", json=grant)  # 409 when granted before
    async with Publisher(api, logins.simulator_token, stop=stop) as publisher:
        sink = simulator.ApiSink(publisher)
        await simulator.Simulation(models, device_ids, sink, rate).run(stop)
