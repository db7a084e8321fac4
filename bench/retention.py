"""Retention on a large history: the purge rate, and delivery latency while it runs.

    .venv/bin/python bench/retention.py [--attempts 1000000] [--seconds 20] [--rate 100]
        [--database postgresql|sqlite] [--attempts-per-delivery 4] [--batch-size 200]
        [--pause 0.2]

Builds a fresh database (PostgreSQL at LABHOOKS_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test, in a database of its own that is dropped at the end)
holding `--attempts` delivery attempts of events published 200 days ago (one delivery per
event, `--attempts-per-delivery` attempts each), written in three INSERT … SELECT statements.
Then it starts `labhooks serve` (API and worker in one process, its own retention timer off) and
a receiver answering 200 at once, each a process of its own, and publishes single events at a
steady `--rate` through the API:

1. for `--seconds` alone (the baseline);
2. while the purge (storage.retention.purge, what every worker's timer runs, with
   `--batch-size` and `--pause` as LABHOOKS_RETENTION_BATCH_SIZE and _PAUSE) deletes the whole
   old history from a process of its own, as another worker would, for as long as it runs and
   at least `--seconds`.

Prints the purge rate (rows a second, events, deliveries and attempts together) and the time
from each POST /events to its arrival at the receiver (p50/p99) in both phases, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from common import (
    Lab,
    Receiver,
    drop_database,
    fresh_database,
    percentile,
    serving,
    set_up,
    wait_until_up,
)
from sqlalchemy import JSON, Boolean, Float, Integer, String, cast, func, insert, literal, select

from labhooks.storage import migrate, retention
from labhooks.storage.database import Database
from labhooks.storage.models import Delivery, DeliveryAttempt, Event, UTCDateTime, utcnow

OLD_DAYS = 200  # the old history's age; everything older than RETENTION_DAYS goes
RETENTION_DAYS = 90


async def analyze(database: Database) -> None:
    """Statistics of the history just loaded, as a database that grew over months has them
    (autovacuum gathers them as tables grow; it is off on some machines, this one included).
    Without them PostgreSQL plans the purge's and the queue's statements as if the tables were
    empty: sequential scans that made purge batches fifteen times slower."""
    async with database.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.exec_driver_sql("ANALYZE")


async def build_history(database: Database, lab: Lab, events: int, per_delivery: int) -> None:
    """`events` old events, a delivery of each and `per_delivery` attempts of each delivery,
    in three INSERT … SELECT statements over a generated series (both databases)."""
    then = literal(utcnow() - timedelta(days=OLD_DAYS), UTCDateTime())
    seq = select(literal(1, Integer).label("i")).cte("seq", recursive=True)
    seq = seq.union_all(select(seq.c.i + 1).where(seq.c.i < events))
    numbers = select(literal(1, Integer).label("n")).cte("numbers", recursive=True)
    numbers = numbers.union_all(select(numbers.c.n + 1).where(numbers.c.n < per_delivery))
    event_id = literal("evt_old_", String) + cast(seq.c.i, String)
    delivery_id = literal("dlv_old_", String) + cast(seq.c.i, String)
    payload = '{"type":"data_point.created","data":{"value":1.5,"unit":"g"}}'
    async with database.engine.begin() as connection:
        await connection.execute(
            insert(Event).from_select(
                [
                    "id",
                    "organization_id",
                    "device_id",
                    "channel_id",
                    "type",
                    "occurred_at",
                    "payload",
                    "is_test",
                    "created_at",
                ],
                select(
                    event_id,
                    literal(lab.organization_id, String),
                    literal(lab.device_id, String),
                    literal(lab.channel_id, String),
                    literal("data_point.created", String),
                    then,
                    literal(payload, String),
                    literal(False, Boolean),
                    then,
                ),
            )
        )
        await connection.execute(
            insert(Delivery).from_select(
                [
                    "id",
                    "organization_id",
                    "subscription_id",
                    "event_id",
                    "status",
                    "priority",
                    "attempt_count",
                    "schedule_position",
                    "next_attempt_at",
                    "last_status_code",
                    "completed_at",
                    "created_at",
                ],
                select(
                    delivery_id,
                    literal(lab.organization_id, String),
                    literal(lab.subscription_id, String),
                    event_id,
                    literal("succeeded", String),
                    literal(0, Integer),
                    literal(per_delivery, Integer),
                    literal(per_delivery, Integer),
                    then,
                    literal(200, Integer),
                    then,
                    then,
                ),
            )
        )
        await connection.execute(
            insert(DeliveryAttempt).from_select(
                [
                    "delivery_id",
                    "number",
                    "started_at",
                    "duration_ms",
                    "request_headers",
                    "response_status",
                    "response_headers",
                    "response_body",
                ],
                select(
                    delivery_id,
                    numbers.c.n,
                    then,
                    literal(12.5, Float),
                    literal({"content-type": "application/json"}, JSON),
                    literal(200, Integer),
                    literal({"content-type": "application/json"}, JSON),
                    literal('{"ok":true}', String),
                ).select_from(seq.join(numbers, literal(True, Boolean))),
            )
        )


async def count_attempts(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(DeliveryAttempt)) or 0)


class Latencies:
    """Publish times by event id; the receiver's arrivals matched to them."""

    def __init__(self, api_root: str, lab: Lab) -> None:
        self.api_root = api_root
        self.lab = lab
        self.published: dict[str, float] = {}
        self.failed = 0  # publishes that got no 202 (the server overwhelmed: say so)

    async def publish_steadily(self, rate: float, until: asyncio.Event) -> list[str]:
        """One event every 1/rate seconds until `until`, each POST a task of its own so that a
        slow answer does not slow the pace; returns the ids published. A client of its own per
        phase: connections left idle between phases are closed by the server."""
        async with httpx.AsyncClient(
            base_url=self.api_root,
            timeout=60,
            headers={"Authorization": f"Bearer {self.lab.token}"},
            limits=httpx.Limits(max_connections=200),
        ) as api:
            started = time.perf_counter()
            posts: list[asyncio.Task[str | None]] = []
            sent = 0
            while not until.is_set():
                await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
                posts.append(asyncio.create_task(self._publish(api, sent)))
                sent += 1
            return [i for i in await asyncio.gather(*posts) if i is not None]

    async def _publish(self, api: httpx.AsyncClient, value: int) -> str | None:
        lab = self.lab
        event = {
            "device_id": lab.device_id,
            "channel_key": "weight",
            "type": "data_point.created",
            "data": {"value": value, "unit": "g"},
        }
        begun = time.time()
        try:
            response = await api.post("/events", json=event)
        except httpx.TransportError:
            self.failed += 1
            return None
        if response.status_code != 202:
            self.failed += 1
            return None
        event_id = str(response.json()["event_ids"][0])
        self.published[event_id] = begun
        return event_id


def collect(receiver: Receiver, ids: list[str], published: dict[str, float]) -> dict[str, float]:
    """Milliseconds from publishing to arrival of each of `ids`, waiting up to 60 s for all."""
    arrived = receiver.arrived(ids, timeout=60)
    return {i: (arrived[i] - published[i]) * 1000 for i in ids}


@dataclass
class Figures:
    attempts: int
    build_s: float
    purged: retention.Purged
    purge_s: float
    alone: list[float]
    purging: list[float]
    failed: int


@dataclass
class History:
    lab: Lab
    attempts: int
    build_s: float


async def build(args: argparse.Namespace, url: str, receiver_url: str) -> History:
    database = Database(url)
    try:
        await migrate.upgrade(database)
        lab = await set_up(database, receiver_url)
        started = time.perf_counter()
        events = max(1, args.attempts // args.attempts_per_delivery)
        await build_history(database, lab, events, args.attempts_per_delivery)
        await analyze(database)
        build_s = time.perf_counter() - started
        return History(lab, await count_attempts(database), build_s)
    finally:
        await database.dispose()


def purge_process(url: str, before: datetime, batch_size: int, pause: float, results: Any) -> None:
    """The purge in a process of its own, as another worker's timer would run it: the bench's
    publishing (hundreds of requests in flight when the server lags) shares no event loop and
    no core-time slice with it. Reports (what went, start, end) in wall-clock time."""

    async def run() -> tuple[retention.Purged, float, float]:
        database = Database(url)
        try:
            began = time.time()
            purged = await retention.purge(database, before, batch_size, pause)
            return purged, began, time.time()
        finally:
            await database.dispose()

    results.put(asyncio.run(run()))


async def phases(
    args: argparse.Namespace, url: str, base: str, history: History, receiver: Receiver
) -> Figures:
    """Publishing alone, then while the purge runs."""
    await wait_until_up(f"{base}/healthz")
    latencies = Latencies(f"{base}/api/v1", history.lab)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(args.seconds, stop.set)
    alone_ids = await latencies.publish_steadily(args.rate, stop)
    alone = collect(receiver, alone_ids, latencies.published)

    before = retention.cutoff(utcnow(), RETENTION_DAYS)
    stop = asyncio.Event()
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    purger = spawn.Process(
        target=purge_process, args=(url, before, args.batch_size, args.pause, results)
    )

    async def purge_then_stop() -> tuple[retention.Purged, float, float]:
        try:
            purger.start()
            await asyncio.to_thread(purger.join)
            if purger.exitcode != 0:
                raise RuntimeError(f"the purge failed (exit {purger.exitcode}); see above")
            purged, began, ended = results.get(timeout=10)
            await asyncio.sleep(max(0.0, args.seconds - (ended - began)))
            return purged, began, ended
        finally:
            stop.set()  # a purge that fails ends the phase too

    purging = asyncio.create_task(purge_then_stop())
    phase_ids = await latencies.publish_steadily(args.rate, stop)
    purged, began, ended = await purging
    during = collect(receiver, phase_ids, latencies.published)
    # what was published while the purge ran (everything, if it ran too briefly)
    while_purging = [i for i in phase_ids if began <= latencies.published[i] <= ended]
    return Figures(
        history.attempts,
        history.build_s,
        purged,
        ended - began,
        list(alone.values()),
        [during[i] for i in while_purging or phase_ids],
        latencies.failed,
    )


def report(args: argparse.Namespace, figures: Figures) -> None:
    purged = figures.purged
    alone, during = figures.alone, figures.purging
    print(
        f"database: {args.database}, cores: {os.cpu_count()}, old attempts: {figures.attempts} "
        f"(built in {figures.build_s:.1f} s), rate: {args.rate:g} events/s, "
        f"batch: {args.batch_size} events, pause: {args.pause:g} s"
    )
    print(
        f"purge: {purged} = {purged.rows} rows in {figures.purge_s:.1f} s "
        f"= {purged.rows / figures.purge_s:.0f} rows/s"
    )
    for name, values in (("without the purge", alone), ("during the purge ", during)):
        print(
            f"publish→receipt {name}: p50 {percentile(values, 0.5):7.1f} ms, "
            f"p99 {percentile(values, 0.99):7.1f} ms  ({len(values)} events)"
        )
    if figures.failed:
        print(f"publishes refused or cut off (the server overwhelmed): {figures.failed}")
    print(
        f"ratio during / without: p50 "
        f"{percentile(during, 0.5) / percentile(alone, 0.5):.2f}, p99 "
        f"{percentile(during, 0.99) / percentile(alone, 0.99):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000, help="old attempt rows")
    parser.add_argument("--attempts-per-delivery", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20, help="each phase, at least")
    parser.add_argument("--rate", type=float, default=100, help="events published per second")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--batch-size", type=int, default=200, help="events per purge batch")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between batches")
    args = parser.parse_args()

    with Receiver() as receiver, tempfile.TemporaryDirectory() as folder:
        url, name = asyncio.run(fresh_database(args.database, Path(folder)))
        try:
            history = asyncio.run(build(args, url, receiver.url))
            # this bench purges, at a moment it chooses: the server's own timer is off
            with serving(url, Path(folder)) as (base, _):
                figures = asyncio.run(phases(args, url, base, history, receiver))
        finally:
            asyncio.run(drop_database(name))
    report(args, figures)


if __name__ == "__main__":
    main()
