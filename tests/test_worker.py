"""The worker's own logic against a fake Sender, on both databases: isolation of what cannot be
sent or stored, batching, ordering and rate limits, in milliseconds and without a network.
(test_delivery.py runs the same worker with the real sender against a real receiver.)"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from labhooks.delivery.sender import Request
from labhooks.delivery.worker import Worker
from labhooks.domain.outcomes import Attempt
from labhooks.domain.people import Actor
from labhooks.security import SecretBox
from labhooks.services import devices, events, organizations, target_urls, tokens, users
from labhooks.services.subscriptions import SubscriptionCreate, SubscriptionService
from labhooks.settings import Settings
from labhooks.storage.database import Database
from labhooks.storage.models import Delivery, DeliveryAttempt, WebhookSubscription
from labhooks.storage.queue import DeliveryQueue
from tests.api import unique
from tests.conftest import settings_for
from tests.live import fresh_database

OK: dict[str, Any] = {"response_status": 200, "response_headers": {}, "response_body": "ok"}


@dataclass
class FakeSender:
    """Answers from `answer(request)` (keyword fields of the Attempt), after `delay` seconds;
    records every request and how many were in flight per URL."""

    answer: Callable[[Request], dict[str, Any]] = lambda _: OK
    delay: float = 0.0
    requests: list[Request] = field(default_factory=list)
    max_in_flight: Counter[str] = field(default_factory=Counter)
    _in_flight: Counter[str] = field(default_factory=Counter)

    async def send(self, request: Request) -> Attempt:
        self.requests.append(request)
        self._in_flight[request.url] += 1
        self.max_in_flight[request.url] = max(
            self.max_in_flight[request.url], self._in_flight[request.url]
        )
        try:
            await asyncio.sleep(self.delay)
            outcome = self.answer(request)
        finally:
            self._in_flight[request.url] -= 1
        return request.attempt(datetime.now(UTC), 1.0, **outcome)


@dataclass
class Lab:
    """An organisation seeded through the services, and a way to run a worker on its queue."""

    settings: Settings
    database: Database
    box: SecretBox
    admin: Actor
    device_id: str
    channel_id: str

    async def subscribe(self, url: str, **options: Any) -> str:
        body = SubscriptionCreate.model_validate(
            {
                "target_url": url,
                "headers": [{"key": "X-Api-Key", "value": "k"}],
                "channels": [{"channel_id": self.channel_id, "events": ["data_point.created"]}],
            }
            | options
        )
        async with self.database.session() as db:
            created = await SubscriptionService(self.box).create(db, self.admin, body)
            return created.id

    async def publish(self, count: int) -> None:
        batch = [
            events.EventIn(
                device_id=self.device_id,
                channel_key="weight",
                type="data_point.created",
                data={"value": i, "unit": "g"},
            )
            for i in range(count)
        ]
        async with self.database.session() as db:
            await events.publish(db, self.admin, batch, indexed=True)

    async def deliveries(self, subscription_id: str) -> list[Delivery]:
        async with self.database.session() as db:
            return list(
                await db.scalars(
                    select(Delivery)
                    .where(Delivery.subscription_id == subscription_id)
                    .order_by(Delivery.id)
                )
            )

    async def attempts(self, subscription_id: str) -> list[DeliveryAttempt]:
        async with self.database.session() as db:
            return list(
                await db.scalars(
                    select(DeliveryAttempt)
                    .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
                    .where(Delivery.subscription_id == subscription_id)
                    .order_by(DeliveryAttempt.id)
                )
            )

    async def run(self, sender: FakeSender, until: Callable[[], Awaitable[bool]]) -> None:
        """A worker with `sender` until `until()` holds (at most 20 s), then stopped."""
        worker = Worker(
            self.settings, DeliveryQueue(self.database), self.box, sender, self.database.enqueued
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(20):
                while not await until():
                    assert not running.done(), running
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await running

    async def all_attempted(self, *subscription_ids: str) -> bool:
        for subscription_id in subscription_ids:
            if any(d.attempt_count == 0 for d in await self.deliveries(subscription_id)):
                return False
        return True


@pytest.fixture(scope="module")
def queue_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this module's own: no other worker claims from it."""
    with fresh_database(database_url, tmp_path_factory.mktemp("worker")) as url:
        yield url


def with_lab(queue_url: str, tmp_path: Path, scenario: Callable[[Lab], Awaitable[None]]) -> None:
    async def run() -> None:
        settings = settings_for(queue_url, tmp_path, worker_batch_size=64)
        database = Database(queue_url)
        box = SecretBox(str(settings.secret_key))
        try:
            await scenario(await _seed(settings, database, box))
        finally:
            await database.dispose()

    asyncio.run(run())


async def _seed(settings: Settings, database: Database, box: SecretBox) -> Lab:
    operator = Actor("usr_operator", None, None, is_server_admin=True)
    name = unique("worker-lab")
    async with database.session() as db:
        organization = await organizations.create_organization(
            db, operator, organizations.OrganizationCreate(name=name, webhooks_enabled=True)
        )
        user = await users.create_user(
            db,
            operator,
            users.UserCreate(
                email=f"admin@{name}.example",
                name="Admin",
                password="a long password",
                role="admin",  # type: ignore[arg-type]
                organization_id=organization.id,
            ),
        )
        admin = tokens.actor_for(user)
        await target_urls.create_target_url(
            db, admin, target_urls.TargetUrlCreate(url="https://lims.example.org/")
        )
        device = await devices.create_device(
            db,
            admin,
            devices.DeviceCreate(
                name="Balance",
                channels=[
                    devices.ChannelIn(
                        key="weight", name="Weight", trigger_events=["data_point.created"]
                    )
                ],
            ),
        )
    return Lab(settings, database, box, admin, device.id, device.channels[0].id)


def test_an_answer_that_cannot_be_stored_fails_alone_and_the_batch_is_recorded(
    queue_url: str, tmp_path: Path
) -> None:
    """A header the JSON column cannot hold (a lone surrogate) breaks the write of the batch it
    rides in: the batch is split, every other attempt is recorded, and the bad one is recorded
    without its answer, failed with the storage error, and retried."""

    async def scenario(lab: Lab) -> None:
        good = [await lab.subscribe(f"https://lims.example.org/good/{i}") for i in range(2)]
        bad = await lab.subscribe("https://lims.example.org/bad", retry_schedule=[0, 3600])

        def answer(request: Request) -> dict[str, Any]:
            if request.url.endswith("/bad"):
                return OK | {"response_headers": {"X-Name": "M\udcfcller"}}
            return OK

        await lab.publish(5)  # 15 deliveries, recorded in batches together
        await lab.run(FakeSender(answer), lambda: lab.all_attempted(*good, bad))
        for subscription_id in good:
            assert {d.status for d in await lab.deliveries(subscription_id)} == {"succeeded"}
        assert {d.status for d in await lab.deliveries(bad)} == {"pending"}  # due in an hour
        for stored in await lab.attempts(bad):
            assert stored.response_status == 200 and stored.response_headers is None
            assert "could not store this attempt's answer" in (stored.error or "")

    with_lab(queue_url, tmp_path, scenario)


def test_a_sender_that_raises_fails_only_its_own_attempts(queue_url: str, tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        good = await lab.subscribe("https://lims.example.org/good")
        bad = await lab.subscribe("https://lims.example.org/bug", retry_schedule=[0])

        def answer(request: Request) -> dict[str, Any]:
            if request.url.endswith("/bug"):
                raise RuntimeError("a bug in a sender")
            return OK

        await lab.publish(3)
        await lab.run(FakeSender(answer), lambda: lab.all_attempted(good, bad))
        assert {d.status for d in await lab.deliveries(good)} == {"succeeded"}
        assert {d.status for d in await lab.deliveries(bad)} == {"failed"}
        assert all("a bug in a sender" in (a.error or "") for a in await lab.attempts(bad))

    with_lab(queue_url, tmp_path, scenario)


def test_a_secret_that_does_not_decrypt_fails_its_subscription_alone(
    queue_url: str, tmp_path: Path
) -> None:
    async def scenario(lab: Lab) -> None:
        good = await lab.subscribe("https://lims.example.org/good")
        bad = await lab.subscribe("https://lims.example.org/damaged", retry_schedule=[0])
        async with lab.database.engine.begin() as connection:
            await connection.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == bad)
                .values(secret_encrypted="damaged")
            )
        await lab.publish(3)
        sender = FakeSender()
        await lab.run(sender, lambda: lab.all_attempted(good, bad))
        assert {d.status for d in await lab.deliveries(good)} == {"succeeded"}
        assert {d.status for d in await lab.deliveries(bad)} == {"failed"}
        assert all("signing secret" in (a.error or "") for a in await lab.attempts(bad))
        assert {r.url for r in sender.requests} == {"https://lims.example.org/good"}

    with_lab(queue_url, tmp_path, scenario)


def test_every_delivery_of_many_batches_is_sent_once_and_recorded_once(
    queue_url: str, tmp_path: Path
) -> None:
    async def scenario(lab: Lab) -> None:
        subscriptions = [await lab.subscribe(f"https://lims.example.org/{i}") for i in range(3)]
        await lab.publish(100)  # 300 deliveries, claimed 64 at a time
        sender = FakeSender(delay=0.001)
        await lab.run(sender, lambda: lab.all_attempted(*subscriptions))
        assert len(sender.requests) == 300
        assert len({r.delivery_id for r in sender.requests}) == 300
        for subscription_id in subscriptions:
            deliveries = await lab.deliveries(subscription_id)
            assert [d.attempt_count for d in deliveries] == [1] * 100
            assert len(await lab.attempts(subscription_id)) == 100

    with_lab(queue_url, tmp_path, scenario)


def test_an_ordered_subscription_sends_one_at_a_time_in_event_order(
    queue_url: str, tmp_path: Path
) -> None:
    async def scenario(lab: Lab) -> None:
        ordered = await lab.subscribe("https://lims.example.org/ordered", ordered=True)
        parallel = await lab.subscribe("https://lims.example.org/parallel")
        await lab.publish(8)
        sender = FakeSender(delay=0.01)
        await lab.run(sender, lambda: lab.all_attempted(ordered, parallel))
        assert sender.max_in_flight["https://lims.example.org/ordered"] == 1
        assert sender.max_in_flight["https://lims.example.org/parallel"] > 1
        sent = [r.delivery_id for r in sender.requests if r.url.endswith("/ordered")]
        assert sent == [d.id for d in await lab.deliveries(ordered)]  # ids follow event order

    with_lab(queue_url, tmp_path, scenario)


def test_a_rate_limit_gives_back_what_exceeds_it_unsent(queue_url: str, tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        limited = await lab.subscribe("https://lims.example.org/limited", rate_limit_per_s=2)
        await lab.publish(6)
        sender = FakeSender()

        async def two_sent() -> bool:
            return len(sender.requests) >= 2

        claimed_at = datetime.now(UTC)
        await lab.run(sender, two_sent)
        deliveries = await lab.deliveries(limited)
        waiting = [d for d in deliveries if d.attempt_count == 0]
        assert len(sender.requests) == 2 and len(waiting) == 4  # a bucket of 2 went out
        for delivery in waiting:  # the rest were given back unleased, due a little later
            assert delivery.status == "pending" and delivery.lease_expires_at is None
            assert delivery.next_attempt_at > claimed_at

    with_lab(queue_url, tmp_path, scenario)
