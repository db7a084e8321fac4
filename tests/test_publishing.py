"""Publishing at the service level, where a race can be staged exactly."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import event, func, select

from labhooks.services.events import EventIn, publish
from labhooks.services.tokens import actor_for
from labhooks.settings import Settings
from labhooks.storage.database import Database
from labhooks.storage.models import Delivery, Event, User
from tests.api import Lab
from tests.delivery_helpers import Wired, wire
from tests.receiver import Receiver


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


def test_a_key_committed_by_another_request_mid_publish_is_a_duplicate(
    wired: Wired, settings: Settings
) -> None:
    """Another request commits key K after this one looked for duplicates and before it
    inserts: the batch still succeeds, K is reported as a duplicate, the rest is stored once."""
    subscription = wired.subscribe(wired.receiver.script(wired.path()))
    keyed = EventIn.model_validate(wired.event(value=1, idempotency_key="scan-K"))
    unkeyed = EventIn.model_validate(wired.event(value=2))

    async def scenario() -> tuple[Any, str]:
        database = Database(settings.database_url)
        competitor_ids: list[str] = []

        def competitor() -> None:
            async def other_request() -> None:
                other = Database(settings.database_url)
                try:
                    async with other.session() as db:
                        actor = actor_for(await _admin(db, wired))
                        done = await publish(db, actor, [keyed], indexed=False)
                        competitor_ids.extend(done.event_ids)
                finally:
                    await other.dispose()

            asyncio.run(other_request())

        def before_insert(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO EVENTS") and not competitor_ids:
                racer = threading.Thread(target=competitor)
                racer.start()
                racer.join()

        event.listen(database.engine.sync_engine, "before_cursor_execute", before_insert)
        try:
            async with database.session() as db:
                actor = actor_for(await _admin(db, wired))
                published = await publish(db, actor, [keyed, unkeyed], indexed=True)
            async with database.session() as db:
                stored = await db.scalar(
                    select(func.count())
                    .select_from(Event)
                    .where(Event.device_id == wired.device["id"])
                )
                deliveries = await db.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.subscription_id == subscription["id"])
                )
        finally:
            await database.dispose()
        assert len(competitor_ids) == 1
        return (published, stored, deliveries), competitor_ids[0]

    (published, stored, deliveries), competitor_id = asyncio.run(scenario())
    assert published.duplicate == [True, False]
    assert published.event_ids[0] == competitor_id
    assert stored == 2  # K once (the competitor's), the unkeyed event once
    assert deliveries == 2  # and one delivery each, none for the duplicate


async def _admin(db: Any, wired: Wired) -> User:
    user = await db.get(User, wired.lab.admin_id)
    assert user is not None
    return user
