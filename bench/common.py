"""What the benchmarks share: a fresh database of either kind, a lab set up through the service
layer, receivers in processes of their own, `labhooks` commands as processes, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.security import Passwords, SecretBox
from labhooks.services import devices, organizations, target_urls, tokens, users
from labhooks.services.subscriptions import SubscriptionCreate, SubscriptionService
from labhooks.storage.database import Database

POSTGRES = os.environ.get("LABHOOKS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LABHOOKS = [sys.executable, "-m", "labhooks"]
SECRET_KEY = "bench secret key"
EVENT_TYPE = "data_point.created"


async def fresh_database(kind: str, folder: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}", None
    name = f"labhooks_bench_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(POSTGRES)
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return POSTGRES.rsplit("/", 1)[0] + "/" + name, name


@contextlib.asynccontextmanager
async def autovacuum_on() -> AsyncIterator[bool]:
    """PostgreSQL as production runs it: with autovacuum, which keeps the statistics the
    queue's and the purge's plans rely on, and the dead rows of a busy queue in check. Some
    machines (this one) turn it off; it is turned on for the run and the server's own setting
    restored after. Yields whether it had to be turned on."""
    connection = await asyncpg.connect(POSTGRES)
    try:
        was_off = await connection.fetchval("SHOW autovacuum") == "off"
        if was_off:
            await connection.execute("ALTER SYSTEM SET autovacuum = on")
            await connection.execute("SELECT pg_reload_conf()")
        try:
            yield was_off
        finally:
            if was_off:
                await connection.execute("ALTER SYSTEM RESET autovacuum")
                await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


async def drop_database(name: str | None) -> None:
    if name:
        connection = await asyncpg.connect(POSTGRES)
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await connection.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def wait_until_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Waits until `url` answers a GET, while `process` (what serves it) runs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited ({process.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer in {timeout:g} s") from None
            time.sleep(0.1)


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


# -- the receiver ------------------------------------------------------------------------------

_EVENT_ID = b'"event_id":"'


def serve_receiver(port: int, delay: float = 0.0) -> None:
    """An aiohttp server on uvloop answering every POST 200 `{"ok":true}`, after `delay` seconds
    if given. It keeps (event id, wall-clock time of arrival) of each POST, the event id read
    from the webhook body's data.event_id ("" when there is none), and tells them over GET:
    /_count, /_arrivals?since=N (a JSON list of [event id, time])."""
    import uvloop
    from aiohttp import web

    arrivals: list[tuple[str, float]] = []
    answer = b'{"ok":true}'

    async def receive(request: web.Request) -> web.Response:
        at = time.time()
        body = await request.read()
        start = body.find(_EVENT_ID)
        if start >= 0:
            start += len(_EVENT_ID)
            event_id = body[start : body.find(b'"', start)].decode()
        else:
            event_id = ""
        arrivals.append((event_id, at))
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=answer, content_type="application/json")

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"count": len(arrivals)})

    async def since(request: web.Request) -> web.Response:
        return web.json_response(arrivals[int(request.query.get("since", "0")) :])

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/_count", count)
    app.router.add_get("/_arrivals", since)
    app.router.add_post("/{tail:.*}", receive)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


class Receiver:
    """A receiver (serve_receiver) in a process of its own, while the block lasts; enter it
    before any event loop or thread starts."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._process: Any = None

    def __enter__(self) -> Receiver:
        # forked, so that it starts at once with what this process imported: before any event
        # loop or thread of this process starts
        fork = multiprocessing.get_context("fork")
        self._process = fork.Process(
            target=serve_receiver, args=(self.port, self.delay), daemon=True
        )
        self._process.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *_: object) -> None:
        self._process.terminate()
        self._process.join(timeout=10)

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as answer:
            return json.load(answer)

    def count(self) -> int:
        return int(self._get("_count")["count"])

    def arrivals(self, since: int = 0) -> list[tuple[str, float]]:
        return [(str(i), float(t)) for i, t in self._get(f"_arrivals?since={since}")]

    def wait_for_count(self, count: int, timeout: float) -> float:
        """Waits until the receiver has had `count` POSTs in all; returns the wall-clock time
        of the last of them."""
        deadline = time.monotonic() + timeout
        while (seen := self.count()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the receiver saw {seen} of {count} POSTs in {timeout:g} s")
            time.sleep(0.02)
        return self.arrivals(count - 1)[0][1]

    def arrived(self, ids: Sequence[str], since: int = 0, timeout: float = 60) -> dict[str, float]:
        """The wall-clock arrival time of each of `ids`, waiting up to `timeout` s for all;
        only arrivals from the `since`-th on are looked at."""
        wanted, arrived = set(ids), dict[str, float]()
        deadline = time.monotonic() + timeout
        while True:
            for event_id, at in self.arrivals(since):
                since += 1
                if event_id in wanted:
                    arrived.setdefault(event_id, at)
            missing = wanted - arrived.keys()
            if not missing:
                return arrived
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} of {len(wanted)} events never arrived")
            time.sleep(0.1)


# -- a lab through the service layer -----------------------------------------------------------


@dataclass
class Wired:
    """A device with one channel ("weight"), and the subscription to it if any."""

    device_id: str
    channel_id: str
    subscription_id: str | None


@dataclass
class Lab:
    token: str
    organization_id: str
    device_id: str
    channel_id: str
    subscription_id: str
    actor: Actor


async def add_device(
    database: Database,
    actor: Actor,
    name: str,
    target_url: str | None,
    headers: Sequence[tuple[str, str]] = (),
    secret_key: str = SECRET_KEY,
) -> Wired:
    """A device with one channel and, given `target_url` (registered already), a subscription
    of its own to it."""
    async with database.session() as db:
        device = await devices.create_device(
            db,
            actor,
            devices.DeviceCreate(
                name=name,
                channels=[
                    devices.ChannelIn(
                        key="weight", name="Weight", unit="g", trigger_events=[EVENT_TYPE]
                    )
                ],
            ),
        )
        channel_id = device.channels[0].id
        if target_url is None:
            return Wired(device.id, channel_id, None)
        subscription = await SubscriptionService(SecretBox(secret_key)).create(
            db,
            actor,
            SubscriptionCreate.model_validate(
                {
                    "target_url": target_url,
                    "headers": [{"key": k, "value": v} for k, v in headers],
                    "channels": [{"channel_id": channel_id, "events": [EVENT_TYPE]}],
                }
            ),
        )
        return Wired(device.id, channel_id, subscription.id)


async def register_target(database: Database, actor: Actor, url: str) -> None:
    async with database.session() as db:
        await target_urls.create_target_url(db, actor, target_urls.TargetUrlCreate(url=url))


async def set_up(
    database: Database,
    receiver_url: str,
    headers: Sequence[tuple[str, str]] = (),
    secret_key: str = SECRET_KEY,
) -> Lab:
    """An organisation, its administrator's token (and actor), a device and a subscription to
    the receiver (`receiver_url` + "in"); the database migrated already."""
    passwords = Passwords()
    async with database.session() as db:
        root = await users.create_server_admin(db, "bench@example.org", "bench password", passwords)
        assert root is not None
        org = await organizations.create_organization(
            db,
            tokens.actor_for(root),
            organizations.OrganizationCreate(name="Bench", webhooks_enabled=True),
        )
        boss = await users.create_user(
            db,
            tokens.actor_for(root),
            users.UserCreate(
                email="boss@example.org",
                name="Boss",
                password="bench password",
                role=Role.ADMIN,
                organization_id=org.id,
            ),
            passwords,
        )
        actor = tokens.actor_for(boss)
        _, token = await tokens.create_token(db, boss, TokenScope.FULL, "bench")
        organization_id = org.id
    await register_target(database, actor, receiver_url)
    wired = await add_device(database, actor, "Balance", receiver_url + "in", headers, secret_key)
    assert wired.subscription_id is not None
    return Lab(
        token, organization_id, wired.device_id, wired.channel_id, wired.subscription_id, actor
    )


# -- labhooks commands as processes -----------------------------------------------------------


def labhooks_environment(url: str, **settings: str) -> dict[str, str]:
    """This environment without its LABHOOKS_ variables, plus what a bench's server needs:
    `url`, the bench's key, loopback targets allowed, nothing public, no retention timer."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LABHOOKS_")} | {
        "LABHOOKS_DATABASE_URL": url,
        "LABHOOKS_SECRET_KEY": SECRET_KEY,
        "LABHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "LABHOOKS_DELIVER_TO_PUBLIC": "false",
        "LABHOOKS_RETENTION_DAYS": "0",
        **settings,
    }


@contextmanager
def labhooks_process(
    args: Sequence[str], environment: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`labhooks <args>` while the block lasts, its output in `log` (the end of which is
    printed if the block fails); then SIGTERM, and its exit awaited."""
    with (
        log.open("ab") as out,
        subprocess.Popen(
            [*LABHOOKS, *args], env=environment, stdout=out, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            yield process
        except BaseException:
            out.flush()
            print(f"--- the end of {log}:", file=sys.stderr)
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def serving(
    url: str, folder: Path, *, worker: bool = True, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`labhooks serve` (with its worker unless `worker` is False) on `url`, migrated already;
    its base URL and process once /healthz answers."""
    port = free_port()
    args = ["serve", "--port", str(port), "--no-migrate"] + ([] if worker else ["--no-worker"])
    environment = labhooks_environment(url, **settings)
    with labhooks_process(args, environment, folder / f"serve-{port}.log") as server:
        base = f"http://127.0.0.1:{port}"
        answers(f"{base}/healthz", server)
        yield base, server
