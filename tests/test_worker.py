"""The worker's own logic against a fake Sender, on both databases: isolation of what cannot be
sent or stored, batching, ordering and rate limits, in milliseconds and without a network.
(test_delivery.py runs the same worker with the real sender against a real receiver.)"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from labhooks.delivery.sender import Request
from labhooks.delivery.worker import Worker
from labhooks.domain.outcomes import Attempt, AutoDisable
from labhooks.domain.people import Actor
from labhooks.security import Passwords, SecretBox
from labhooks.services import devices, events, organizations, target_urls, tokens, users
from labhooks.services.subscriptions import SubscriptionCreate, SubscriptionService
from labhooks.settings import Settings
from labhooks.storage import queue
from labhooks.storage.database import Database, DatabaseUnavailable
from labhooks.storage.models import Delivery, DeliveryAttempt, WebhookSubscription
from labhooks.storage.queue import Claimed, DeliveryQueue, Finished
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
    meanwhile: Callable[[Request], Awaitable[None]] | None = None  # runs while "in flight"
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
            if self.meanwhile is not None:
                await self.meanwhile(request)
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

    async def run(
        self,
        sender: FakeSender,
        until: Callable[[], Awaitable[bool]],
        queue: DeliveryQueue | None = None,
    ) -> None:
        """A worker with `sender` until `until()` holds (at most 20 s), then stopped."""
        queue = queue or DeliveryQueue(self.database)
        worker = Worker(self.settings, queue, self.box, sender, self.database.enqueued)
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
            Passwords.of(settings),
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


def test_a_rate_limit_gives_back_what_exceeds_it_unsent_each_in_its_own_slot(
    queue_url: str, tmp_path: Path
) -> None:
    async def scenario(lab: Lab) -> None:
        limited = await lab.subscribe("https://lims.example.org/limited", rate_limit_per_s=0.5)
        await lab.publish(6)
        sender = FakeSender()

        async def one_sent() -> bool:
            return len(sender.requests) >= 1

        claimed_at = datetime.now(UTC)
        await lab.run(sender, one_sent)
        deliveries = await lab.deliveries(limited)
        waiting = [d for d in deliveries if d.attempt_count == 0]
        assert len(sender.requests) == 1 and len(waiting) == 5  # a bucket of 1 went out
        due = sorted(d.next_attempt_at for d in waiting)
        for delivery in waiting:  # the rest were given back unleased, due later
            assert delivery.status == "pending" and delivery.lease_expires_at is None
        assert due[0] > claimed_at
        # one every 2 s (the rate), not all at the next refill
        gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(due)]
        assert all(gap == pytest.approx(2.0, abs=0.1) for gap in gaps), gaps

    with_lab(queue_url, tmp_path, scenario)


class OnceUnavailable(DeliveryQueue):
    """The real queue, whose first `fails` write-backs find the database unavailable."""

    def __init__(self, database: Database, fails: int) -> None:
        super().__init__(database)
        self.fails = fails

    async def complete(self, finished: Sequence[Finished], auto_disable: AutoDisable) -> None:
        if self.fails:
            self.fails -= 1
            raise DatabaseUnavailable("database is locked")
        await super().complete(finished, auto_disable)


def test_a_database_unavailable_for_a_moment_loses_no_answer(
    queue_url: str, tmp_path: Path
) -> None:
    """Results the database could not take are written whole once it can, answers and all;
    meanwhile nothing more is claimed."""

    async def scenario(lab: Lab) -> None:
        subscription = await lab.subscribe("https://lims.example.org/in")
        await lab.publish(3)
        queue = OnceUnavailable(lab.database, fails=3)
        await lab.run(FakeSender(), lambda: lab.all_attempted(subscription), queue)
        assert {d.status for d in await lab.deliveries(subscription)} == {"succeeded"}
        attempts = await lab.attempts(subscription)
        assert len(attempts) == 3
        assert all(a.response_body == "ok" and a.error is None for a in attempts)

    with_lab(queue_url, tmp_path, scenario)


def test_a_delivery_that_vanishes_while_in_flight_does_not_stop_the_others(
    queue_url: str, tmp_path: Path
) -> None:
    """Its attempt can be recorded in no form (its row is gone, as a purge would do): it is
    dropped with a log line, and every other result, then and later, is recorded."""

    async def scenario(lab: Lab) -> None:
        kept = await lab.subscribe("https://lims.example.org/kept")
        gone = await lab.subscribe("https://lims.example.org/gone")

        async def remove_the_gone_ones(request: Request) -> None:
            if request.url.endswith("/gone"):
                async with lab.database.engine.begin() as connection:
                    await connection.execute(
                        delete(Delivery).where(Delivery.id == request.delivery_id)
                    )

        await lab.publish(3)
        sender = FakeSender(meanwhile=remove_the_gone_ones)
        await lab.run(sender, lambda: lab.all_attempted(kept, gone))
        await lab.publish(2)
        await lab.run(sender, lambda: lab.all_attempted(kept))
        assert [d.status for d in await lab.deliveries(kept)] == ["succeeded"] * 5
        assert await lab.deliveries(gone) == []

    with_lab(queue_url, tmp_path, scenario)


class CountingQueue(DeliveryQueue):
    """The real queue, noting which deliveries the worker had to claim (of any lab: the
    module's tests share a database)."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.claims: list[Claimed] = []

    async def claim(self, limit: int, lease_s: float) -> list[Claimed]:
        found = await super().claim(limit, lease_s)
        self.claims += found
        return found

    def claimed(self, subscription_id: str) -> list[str]:
        return sorted(c.delivery_id for c in self.claims if c.subscription_id == subscription_id)


async def _beside_the_worker(
    lab: Lab, sender: FakeSender, scenario: Callable[[Worker, CountingQueue], Awaitable[None]]
) -> None:
    """Runs `scenario` with a worker that takes handoffs from publishers of this process, as
    in `labhooks serve`."""
    claims = CountingQueue(lab.database)
    worker = Worker(
        lab.settings, claims, lab.box, sender, lab.database.enqueued, takes_handoffs=True
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(20):
            await _until(lambda: _is(lab.database.local_worker, worker))
            await scenario(worker, claims)
    finally:
        stop.set()
        await running
    assert lab.database.local_worker is None


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    while not await condition():  # noqa: ASYNC110 (what it waits for is in the database)
        await asyncio.sleep(0.01)


async def _is(found: object, wanted: object) -> bool:
    return found is wanted


def test_deliveries_published_beside_the_worker_are_sent_without_a_claim(
    queue_url: str, tmp_path: Path
) -> None:
    """Publishing in the worker's process hands it the deliveries as the transaction commits;
    an ordered subscription's still wait for their turn through the queue."""

    async def scenario(lab: Lab) -> None:
        plain = await lab.subscribe("https://lims.example.org/plain")
        ordered = await lab.subscribe("https://lims.example.org/ordered", ordered=True)

        async def publish_and_deliver(worker: Worker, claims: CountingQueue) -> None:
            await lab.publish(3)
            await _until(lambda: lab.all_attempted(plain, ordered))
            assert claims.claimed(plain) == []
            assert claims.claimed(ordered) == [d.id for d in await lab.deliveries(ordered)]

        await _beside_the_worker(lab, FakeSender(), publish_and_deliver)
        for subscription_id in (plain, ordered):
            assert {d.status for d in await lab.deliveries(subscription_id)} == {"succeeded"}
            assert len(await lab.attempts(subscription_id)) == 3  # each sent once

    with_lab(queue_url, tmp_path, scenario)


def test_a_worker_without_room_leaves_the_rest_to_the_queue(queue_url: str, tmp_path: Path) -> None:
    async def scenario(lab: Lab) -> None:
        subscription = await lab.subscribe("https://lims.example.org/busy")
        lab.settings = lab.settings.model_copy(update={"worker_concurrency": 2})

        async def publish_five(worker: Worker, claims: CountingQueue) -> None:
            await lab.publish(5)
            await _until(lambda: lab.all_attempted(subscription))
            stored = [d.id for d in await lab.deliveries(subscription)]
            assert claims.claimed(subscription) == stored[2:]  # the first two were handed over

        await _beside_the_worker(lab, FakeSender(delay=0.05), publish_five)

    with_lab(queue_url, tmp_path, scenario)


def test_a_transaction_that_rolls_back_frees_the_slots_it_reserved(
    queue_url: str, tmp_path: Path
) -> None:
    async def scenario(lab: Lab) -> None:
        async with lab.database.session() as db:
            one = events.EventIn(
                device_id=lab.device_id,
                channel_key="weight",
                type="data_point.created",
                data={"value": 1, "unit": "g"},
            )
            [event_id] = (await events.publish(db, lab.admin, [one], indexed=False)).event_ids
        subscription = await lab.subscribe("https://lims.example.org/never")
        concurrency = lab.settings.worker_concurrency

        async def roll_back(worker: Worker, claims: CountingQueue) -> None:
            pair = (subscription, event_id)
            sendable = {pair: ("{}", datetime.now(UTC))}
            async with lab.database.session() as db:
                await queue.enqueue(db, lab.admin.require_organization(), [pair], sendable)
                assert worker.reserve(concurrency) == concurrency - 1  # one slot held
                worker.give_back(concurrency - 1)
                await db.rollback()
            assert worker.reserve(concurrency) == concurrency  # every slot free again
            worker.give_back(concurrency)

        await _beside_the_worker(lab, FakeSender(), roll_back)
        assert await lab.deliveries(subscription) == []

    with_lab(queue_url, tmp_path, scenario)
