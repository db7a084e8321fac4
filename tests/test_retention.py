"""Retention: events older than the retention period go with their deliveries and attempts, in
small batches, from `labhooks purge` and from the timer beside every worker; pending deliveries,
recent history and what a resend made recently stay (docs/operations.md)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from labhooks.settings import Settings
from labhooks.storage import retention
from labhooks.storage.database import Database
from labhooks.storage.models import Delivery, DeliveryAttempt, Event, utcnow
from tests import live
from tests.api import Api, Lab
from tests.conftest import first_server_admin, settings_for
from tests.delivery_helpers import Wired, wire
from tests.receiver import Receiver, Reply
from tests.test_cli import assert_one_line_error, run

# Ages well under the default 90 days: the session's own server purges what is older than
# that on its timer, and must not take what a test has staged before the test looks.
STAGED_DAYS = 50
PURGE_DAYS = "40"


# This module purges on a database and a server of its own: a purge takes what is old in the
# whole database, and the suite's shared one holds every other test's history.
@pytest.fixture(scope="module")
def database_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live.fresh_database(database_url, tmp_path_factory.mktemp("retention")) as url:
        yield url


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(database_url, tmp_path_factory.mktemp("retention-keys"))


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[live.LiveServer]:
    with live.LiveServer(settings) as running:
        yield running


@pytest.fixture(scope="module")
def server_admin(server: live.LiveServer) -> Iterator[Api]:
    with first_server_admin(server) as api:
        yield api


def age(database_url: str, event_ids: Sequence[str], days: float) -> None:
    """Moves these events, their deliveries and attempts `days` into the past, as if they had
    been published and delivered then."""
    then = utcnow() - timedelta(days=days)

    async def run_updates() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                their_deliveries = select(Delivery.id).where(Delivery.event_id.in_(event_ids))
                await connection.execute(
                    update(Event).where(Event.id.in_(event_ids)).values(created_at=then)
                )
                await connection.execute(
                    update(Delivery).where(Delivery.event_id.in_(event_ids)).values(created_at=then)
                )
                await connection.execute(
                    update(Delivery)
                    .where(Delivery.event_id.in_(event_ids), Delivery.completed_at.is_not(None))
                    .values(completed_at=then)
                )
                await connection.execute(
                    update(DeliveryAttempt)
                    .where(DeliveryAttempt.delivery_id.in_(their_deliveries))
                    .values(started_at=then)
                )
        finally:
            await database.dispose()

    asyncio.run(run_updates())


def clear_expired(database_url: str) -> None:
    """Purges what earlier tests staged and left (a dry run leaves everything), so that the
    counts a test reads are its own."""

    async def purge() -> None:
        database = Database(database_url)
        try:
            await retention.purge(database, retention.cutoff(utcnow(), int(PURGE_DAYS)), 100)
        finally:
            await database.dispose()

    asyncio.run(purge())


@dataclass(frozen=True)
class Stored:
    events: int
    deliveries: int
    attempts: int


def stored(database_url: str, event_ids: Sequence[str]) -> Stored:
    """How many rows of these events' families are in the database."""

    async def count() -> Stored:
        database = Database(database_url)
        try:
            async with database.engine.connect() as connection:
                events = await connection.scalar(
                    select(func.count()).select_from(Event).where(Event.id.in_(event_ids))
                )
                deliveries = await connection.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.event_id.in_(event_ids))
                )
                attempts = await connection.scalar(
                    select(func.count())
                    .select_from(DeliveryAttempt)
                    .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
                    .where(Delivery.event_id.in_(event_ids))
                )
                return Stored(events or 0, deliveries or 0, attempts or 0)
        finally:
            await database.dispose()

    return asyncio.run(count())


def purge_command(folder: Path, database_url: str, *args: str, **settings: str) -> str:
    result = run(folder, "purge", *args, LABHOOKS_DATABASE_URL=database_url, **settings)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def counts_in(line: str) -> tuple[int, int, int]:
    found = re.search(r"(\d+) events, (\d+) deliveries, (\d+) attempts", line)
    assert found, line
    events, deliveries, attempts = found.groups()
    return int(events), int(deliveries), int(attempts)


@dataclass
class History:
    """One event per way a delivery can end, published through the API; `old` ones are then
    moved STAGED_DAYS into the past."""

    wired: Wired
    succeeded_old: str
    failed_old: str
    pending_old: str  # its delivery waits an hour for its second attempt
    resent_old: str  # its delivery was resent (and succeeded again) just now
    succeeded_new: str
    failed_new: str

    @property
    def all(self) -> list[str]:
        return [
            self.succeeded_old,
            self.failed_old,
            self.pending_old,
            self.resent_old,
            self.succeeded_new,
            self.failed_new,
        ]

    def event(self, event_id: str) -> Any:
        return self.wired.admin.get(f"/events/{event_id}")


def _published_id(wired: Wired, event: dict[str, Any]) -> str:
    return str(wired.publish(event)["event_ids"][0])


@pytest.fixture
def history(lab: Lab, receiver: Receiver, database_url: str) -> History:
    wired = wire(lab, receiver)
    weight, status = wired.device["channels"][0]["id"], wired.device["channels"][1]["id"]
    ok = wired.subscribe(receiver.script(wired.path(), Reply(200)))
    failing = wired.subscribe(
        receiver.script(wired.path(), Reply(500)),
        channels=[{"channel_id": weight, "events": ["command.completed"]}],
        retry_schedule=[0],
    )
    held = wired.subscribe(
        receiver.script(wired.path(), Reply(500)),
        channels=[{"channel_id": status, "events": ["device.status_changed"]}],
        retry_schedule=[0, 3600],
    )
    command: dict[str, Any] = {
        "type": "command.completed",
        "data": {"command": "tare", "result": "ok"},
    }
    status_change: dict[str, Any] = {
        "channel_key": "status",
        "type": "device.status_changed",
        "data": {"status": "online"},
    }
    succeeded_old = _published_id(wired, wired.event(1.0))
    resent_old = _published_id(wired, wired.event(2.0))
    succeeded_new = _published_id(wired, wired.event(3.0))
    failed_old = _published_id(wired, wired.event(**command))
    failed_new = _published_id(wired, wired.event(**command))
    pending_old = _published_id(wired, wired.event(**status_change))
    wired.settle(ok["id"], "succeeded", count=3)
    wired.settle(failing["id"], "failed", count=2)
    wired.attempted(held["id"], 1)
    clear_expired(database_url)
    age(database_url, [succeeded_old, failed_old, pending_old, resent_old], STAGED_DAYS)

    resent = wired.admin.ok("GET", f"/events/{resent_old}")["deliveries"][0]["id"]
    wired.admin.ok("POST", f"/deliveries/{resent}/resend", expect=202)
    wired.attempted(ok["id"], 4)  # three first attempts and the resend
    return History(
        wired, succeeded_old, failed_old, pending_old, resent_old, succeeded_new, failed_new
    )


def test_dry_run_counts_what_would_go_and_deletes_nothing(
    history: History, database_url: str, tmp_path: Path
) -> None:
    before = stored(database_url, history.all)

    line = purge_command(tmp_path, database_url, "--dry-run", "--older-than-days", PURGE_DAYS)

    # the old succeeded and the old failed event, one delivery and one attempt each
    assert counts_in(line) == (2, 2, 2)
    assert "would purge" in line and "nothing was deleted" in line
    assert stored(database_url, history.all) == before
    for event_id in history.all:
        assert history.event(event_id).status_code == 200


def test_purge_removes_old_events_with_their_deliveries_and_attempts_only(
    history: History, database_url: str, tmp_path: Path
) -> None:
    old_deliveries = [
        history.event(event_id).json()["deliveries"][0]["id"]
        for event_id in (history.succeeded_old, history.failed_old)
    ]
    kept = [
        history.pending_old,
        history.resent_old,
        history.succeeded_new,
        history.failed_new,
    ]
    kept_before = stored(database_url, kept)

    # one event a batch: the purge goes on, batch after batch, until nothing expired is left
    line = purge_command(
        tmp_path,
        database_url,
        "--older-than-days",
        PURGE_DAYS,
        LABHOOKS_RETENTION_BATCH_SIZE="1",
    )

    assert line.startswith("purged ") and counts_in(line) == (2, 2, 2)
    gone = [history.succeeded_old, history.failed_old]
    assert stored(database_url, gone) == Stored(0, 0, 0)
    for event_id in gone:
        assert history.event(event_id).status_code == 404
    for delivery_id in old_deliveries:
        assert history.wired.admin.get(f"/deliveries/{delivery_id}").status_code == 404
    # a failed delivery is kept as long as a succeeded one: the recent one stays
    assert stored(database_url, kept) == kept_before
    pending = history.event(history.pending_old).json()["deliveries"]
    assert [d["status"] for d in pending] == ["pending"]
    assert history.event(history.failed_new).json()["deliveries"][0]["status"] == "failed"
    # nothing more has expired: a second purge finds nothing
    again = purge_command(tmp_path, database_url, "--older-than-days", PURGE_DAYS)
    assert counts_in(again) == (0, 0, 0)


@pytest.fixture
def expired(lims: Wired, receiver: Receiver, database_url: str) -> Iterator[tuple[list[str], str]]:
    """60 delivered events moved STAGED_DAYS into the past, and one recent; yields their ids."""
    subscription = lims.subscribe(receiver.script(lims.path(), Reply(200)))
    published = lims.publish(*[lims.event(float(i)) for i in range(61)])
    ids = list(published["event_ids"])
    lims.settle(subscription["id"], "succeeded", count=61)
    clear_expired(database_url)
    age(database_url, ids[:60], STAGED_DAYS)
    yield ids[:60], ids[60]


def test_workers_purging_at_once_take_each_event_once(
    expired: tuple[list[str], str], database_url: str
) -> None:
    old, recent = expired
    before = retention.cutoff(utcnow(), int(PURGE_DAYS))
    # one attempt per delivery, unless a first attempt timed out on a loaded machine: counted
    there = stored(database_url, old)
    assert there.events == there.deliveries == 60 and there.attempts >= 60

    async def four_workers() -> list[retention.Purged]:
        databases = [Database(database_url) for _ in range(4)]
        try:
            return await asyncio.gather(
                *(retention.purge(database, before, batch_size=3) for database in databases)
            )
        finally:
            for database in databases:
                await database.dispose()

    results = asyncio.run(four_workers())

    total = sum(results, retention.Purged())
    assert total == retention.Purged(there.events, there.deliveries, there.attempts)
    assert stored(database_url, old) == Stored(0, 0, 0)
    assert stored(database_url, [recent]) == Stored(1, 1, 1)


def test_a_purge_passes_over_events_another_transaction_holds(
    expired: tuple[list[str], str], database_url: str
) -> None:
    """On PostgreSQL a batch skips the events another worker's batch has locked instead of
    waiting for them; they go in a later run."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: purges take turns")
    old, _ = expired
    before = retention.cutoff(utcnow(), int(PURGE_DAYS))
    held = old[:5]

    async def purge_beside_a_held_lock() -> tuple[retention.Purged, retention.Purged]:
        database = Database(database_url)
        try:
            async with database.engine.connect() as other_worker:
                await other_worker.execute(
                    select(Event.id).where(Event.id.in_(held)).with_for_update()
                )
                # a guard against hanging, not a timing claim: a purge that waited would never end
                first = await asyncio.wait_for(retention.purge(database, before, 10), 60)
                await other_worker.rollback()
            second = await retention.purge(database, before, 10)
            return first, second
        finally:
            await database.dispose()

    first, second = asyncio.run(purge_beside_a_held_lock())

    assert first.events == 55
    assert second.events == 5
    assert stored(database_url, old) == Stored(0, 0, 0)


def test_delivery_goes_on_while_a_purge_batch_holds_its_locks(
    expired: tuple[list[str], str], lims: Wired, receiver: Receiver, database_url: str
) -> None:
    """On PostgreSQL a batch locks only expired events and their finished deliveries: an event
    published while a batch is open (its rows deleted, not yet committed) is delivered."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: a batch is a short wait for the worker")
    old, _ = expired
    before = retention.cutoff(utcnow(), int(PURGE_DAYS))
    batch_open, delivered = threading.Event(), threading.Event()
    outcome: list[retention.Purged] = []

    async def hold_a_batch_open() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                chosen = await connection.execute(retention._batch(before, None, 100, True))
                ids = [row.id for row in chosen]
                outcome.append(await retention._delete(connection, ids, before))
                batch_open.set()
                await asyncio.to_thread(delivered.wait, 30)
        finally:
            await database.dispose()

    purging = threading.Thread(target=asyncio.run, args=(hold_a_batch_open(),))
    purging.start()
    try:
        assert batch_open.wait(30), "the batch did not start"
        path = lims.path()
        lims.subscribe(receiver.script(path, Reply(200)))
        lims.publish(lims.event(7.5))
        [request] = receiver.wait_for(path, 1)
        assert request.json["data"]["value"] == 7.5
    finally:
        delivered.set()
        purging.join(timeout=30)
    assert outcome == [retention.Purged(events=60, deliveries=60, attempts=60)]
    assert stored(database_url, old) == Stored(0, 0, 0)


@pytest.mark.parametrize("runs_as", ["serve", "worker"])
def test_the_timer_beside_a_worker_purges_on_its_own(
    runs_as: str, expired: tuple[list[str], str], database_url: str, tmp_path: Path
) -> None:
    """`labhooks serve` runs it in its lifespan (here create_app in a live server), `labhooks
    worker` beside its worker (here the command itself)."""
    old, recent = expired
    retention_settings = {"retention_days": int(PURGE_DAYS), "retention_interval": 0.2}
    if runs_as == "serve":
        settings = settings_for(database_url, tmp_path, **retention_settings)
        with live.LiveServer(settings):
            live.wait_until(lambda: stored(database_url, old) == Stored(0, 0, 0), "the purge")
    else:
        environment = live.command_environment(
            LABHOOKS_DATABASE_URL=database_url,
            LABHOOKS_SECRET_KEY="test secret key",
            LABHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
            LABHOOKS_DELIVER_TO_PUBLIC="false",
            LABHOOKS_RETENTION_DAYS=PURGE_DAYS,
            LABHOOKS_RETENTION_INTERVAL="0.2",
        )
        with live.labhooks_process(tmp_path / "worker.log", "worker", env=environment) as worker:
            live.wait_until(lambda: stored(database_url, old) == Stored(0, 0, 0), "the purge")
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    assert stored(database_url, [recent]) == Stored(1, 1, 1)


def test_purge_refuses_bad_input_and_an_unusable_database_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    for bad in ("soon", "0", "-3", "1.5"):
        result = run(
            tmp_path, "purge", "--older-than-days", bad, LABHOOKS_DATABASE_URL=database_url
        )
        assert_one_line_error(result, "--older-than-days")
    keep_all = run(
        tmp_path, "purge", LABHOOKS_DATABASE_URL=database_url, LABHOOKS_RETENTION_DAYS="0"
    )
    assert_one_line_error(keep_all, "LABHOOKS_RETENTION_DAYS", "--older-than-days")
    assert_one_line_error(
        run(tmp_path, "purge", LABHOOKS_DATABASE_URL=database_url, LABHOOKS_RETENTION_DAYS="x"),
        "LABHOOKS_RETENTION_DAYS",
    )
    unreachable = run(
        tmp_path, "purge", "--dry-run", LABHOOKS_DATABASE_URL="postgresql://nobody@127.0.0.1:1/x"
    )
    assert_one_line_error(unreachable, "cannot use the database")
    not_migrated = run(tmp_path, "purge", LABHOOKS_DATABASE_URL=live.sqlite_url(tmp_path))
    assert_one_line_error(not_migrated, "cannot use the database")
