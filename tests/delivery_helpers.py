"""A lab wired to the test receiver: subscribe a path, publish, and wait for outcomes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tests.api import Api, Lab, unique
from tests.receiver import Receiver


@dataclass
class Wired:
    lab: Lab
    receiver: Receiver
    device: dict[str, Any]

    @property
    def admin(self) -> Api:
        return self.lab.admin

    @property
    def channel_id(self) -> str:
        return str(self.device["channels"][0]["id"])

    def path(self) -> str:
        return unique("/hook").replace("-", "/")

    def subscribe(self, url: str, api: Api | None = None, **extra: Any) -> dict[str, Any]:
        body = {
            "target_url": url,
            "headers": [{"key": "Authorization", "value": "Bearer lims-token"}],
            "channels": [{"channel_id": self.channel_id, "events": ["data_point.created"]}],
        } | extra
        return dict((api or self.admin).ok("POST", "/webhook-subscriptions", body, 201))

    def event(self, value: float = 1.5, **extra: Any) -> dict[str, Any]:
        return {
            "device_id": self.device["id"],
            "channel_key": "weight",
            "type": "data_point.created",
            "data": {"value": value, "unit": "g"},
        } | extra

    def publish(
        self, *events: dict[str, Any], api: Api | None = None, **params: Any
    ) -> dict[str, Any]:
        body: Any = list(events) if len(events) != 1 else events[0]
        response = (api or self.admin).post("/events", body, params=params)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def deliveries(self, subscription_id: str, **params: Any) -> list[dict[str, Any]]:
        response = self.admin.get(
            f"/webhook-subscriptions/{subscription_id}/deliveries", params=params
        )
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def delivery(self, delivery_id: str) -> dict[str, Any]:
        return dict(self.admin.ok("GET", f"/deliveries/{delivery_id}"))

    def all_deliveries(self, subscription_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every delivery of the subscription, following the cursor."""
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            page_params = params | {"limit": 200} | ({"cursor": cursor} if cursor else {})
            page = self.admin.ok(
                "GET",
                f"/webhook-subscriptions/{subscription_id}/deliveries?" + urlencode(page_params),
            )
            found += page["items"]
            if not (cursor := page["next_cursor"]):
                return found

    def settle(
        self, subscription_id: str, status: str, count: int = 1, timeout: float = 15
    ) -> list[dict[str, Any]]:
        """Waits until `count` deliveries of the subscription have `status`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.all_deliveries(subscription_id, status=status)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                everything = self.deliveries(subscription_id)
                raise AssertionError(f"waited for {count} {status}: {everything}")
            time.sleep(0.05)

    def attempted(self, subscription_id: str, attempts: int, timeout: float = 15) -> list[Any]:
        """Waits until the subscription's deliveries have recorded `attempts` attempts in all."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.all_deliveries(subscription_id)
            if sum(d["attempt_count"] for d in found) >= attempts:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited for {attempts} attempts: {found}")
            time.sleep(0.05)


def wire(lab: Lab, receiver: Receiver) -> Wired:
    lab.register(f"http://127.0.0.1:{receiver.port}/")
    device = lab.add_device("Balance XS205")
    return Wired(lab, receiver, device)


def claimable(database_url: str, delivery_id: str, seconds_from_now: float) -> bool:
    """Whether a worker claiming that far in the future would take the delivery: the queue's
    own rule, read without leasing anything."""
    import asyncio
    from datetime import timedelta

    from labhooks.storage.database import Database
    from labhooks.storage.models import utcnow
    from labhooks.storage.queue import DeliveryQueue

    async def check() -> bool:
        database = Database(database_url)
        try:
            when = utcnow() + timedelta(seconds=seconds_from_now)
            return delivery_id in await DeliveryQueue(database).claimable([delivery_id], when)
        finally:
            await database.dispose()

    return asyncio.run(check())


def make_due(database_url: str, delivery_id: str) -> None:
    """Moves a delivery's next attempt to now, as if its retry delay had passed."""
    import asyncio

    from sqlalchemy import update

    from labhooks.storage.database import Database
    from labhooks.storage.models import Delivery, utcnow

    async def run() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery_id)
                    .values(next_attempt_at=utcnow())
                )
        finally:
            await database.dispose()

    asyncio.run(run())


def query(database_url: str, statement: str, **params: Any) -> list[Any]:
    """Rows of a read, for a test to check what was (or was not) stored."""
    import asyncio

    from sqlalchemy import text

    from labhooks.storage.database import Database

    async def run() -> list[Any]:
        database = Database(database_url)
        try:
            async with database.engine.connect() as connection:
                return list(await connection.execute(text(statement), params))
        finally:
            await database.dispose()

    return asyncio.run(run())


def run_sql(database_url: str, statement: str, **params: Any) -> None:
    """A change made behind the service's back (damage, a clock moved), for a test to stage."""
    import asyncio

    from sqlalchemy import text

    from labhooks.storage.database import Database

    async def run() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.execute(text(statement), params)
        finally:
            await database.dispose()

    asyncio.run(run())
