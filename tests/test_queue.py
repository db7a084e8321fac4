"""The queue itself, on a server without a worker: claims, leases and priorities."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from labhooks.domain.outcomes import Attempt, AutoDisable, Decision, Verdict
from labhooks.storage.database import Database
from labhooks.storage.models import utcnow
from labhooks.storage.queue import Claimed, DeliveryQueue, Finished
from tests.api import new_lab
from tests.conftest import first_server_admin, settings_for
from tests.delivery_helpers import Wired, wire
from tests.live import LiveServer, fresh_database
from tests.receiver import Receiver


@pytest.fixture
def idle(database_url: str, tmp_path: Path, receiver: Receiver) -> Iterator[tuple[Wired, str]]:
    with fresh_database(database_url, tmp_path) as url:
        settings = settings_for(url, tmp_path)
        with LiveServer(settings, with_worker=False) as server, first_server_admin(server) as admin:
            yield wire(new_lab(admin), receiver), url


def claim(url: str, limit: int) -> list[Claimed]:
    async def run() -> list[Claimed]:
        database = Database(url)
        try:
            return await DeliveryQueue(database).claim(limit, lease_s=60)
        finally:
            await database.dispose()

    return asyncio.run(run())


def record_failure_due_now(url: str, delivery: Claimed) -> None:
    """As a worker would after a failed attempt: a retry, due a second ago."""
    now = utcnow()
    attempt = Attempt(
        delivery_id=delivery.delivery_id,
        number=1,
        started_at=now,
        duration_ms=1.0,
        request_headers={},
        response_status=500,
        response_headers={},
        response_body="down",
    )
    finished = Finished(delivery, attempt, Decision(Verdict.RETRY, now - timedelta(seconds=1)))

    async def run() -> None:
        database = Database(url)
        try:
            await DeliveryQueue(database).complete([finished], AutoDisable(after_days=1))
        finally:
            await database.dispose()

    asyncio.run(run())


def test_fresh_deliveries_are_claimed_before_due_retries(idle: tuple[Wired, str]) -> None:
    wired, url = idle
    wired.subscribe(wired.receiver.url("/never-sent"))
    wired.publish(wired.event(1))
    [first] = claim(url, 1)
    assert claim(url, 1) == []  # leased: nobody else gets it
    record_failure_due_now(url, first)

    fresh_event = wired.publish(wired.event(2))["event_ids"][0]
    [next_up] = claim(url, 1)
    assert next_up.delivery_id != first.delivery_id  # the retry was due earlier, yet waits
    assert fresh_event in next_up.payload
    [then] = claim(url, 1)
    assert then.delivery_id == first.delivery_id and then.attempt_count == 1


def test_a_claim_carries_its_events_body_and_its_subscriptions_version(
    idle: tuple[Wired, str],
) -> None:
    wired, url = idle
    subscription = wired.subscribe(wired.receiver.url("/never-sent"))
    event_id = wired.publish(wired.event(7))["event_ids"][0]
    [claimed] = claim(url, 1)
    assert json.loads(claimed.payload) == wired.admin.ok("GET", f"/events/{event_id}")["payload"]
    assert claimed.subscription_id == subscription["id"]
    updated_at = datetime.fromisoformat(subscription["updated_at"].replace("Z", "+00:00"))
    assert claimed.subscription_version == updated_at
