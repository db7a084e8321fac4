"""End-to-end delivery throughput, beside a raw aiohttp client blasting the same receiver.

    .venv/bin/python bench/delivery_throughput.py [--events 20000] [--database sqlite|postgresql]

Publishes N events through the service layer (one subscription each), then runs one labhooks
worker (uvloop, in this process) until every delivery is recorded as succeeded: signing, the
custom headers, the HTTP POST, the 64 KiB capture and the batched write-back of every attempt.
The receiver is a separate process on 127.0.0.1 answering 200 at once. The baseline is a bare
aiohttp client POSTing the same body the same number of times with the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop
from common import SECRET_KEY, Receiver, drop_database, fresh_database, set_up
from sqlalchemy import func, select

from labhooks.delivery.worker import run_worker
from labhooks.security import SecretBox
from labhooks.services import events
from labhooks.settings import Settings
from labhooks.storage import migrate
from labhooks.storage.database import Database
from labhooks.storage.models import Delivery


async def labhooks_run(
    database_url: str, receiver_url: str, count: int, concurrency: int
) -> dict[str, float]:
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        allowed_networks="127.0.0.0/8",
        worker_concurrency=concurrency,
    )
    database = Database(database_url)
    await migrate.upgrade(database)
    box = SecretBox(SECRET_KEY)
    lab = await set_up(database, receiver_url, headers=[("Authorization", "Bearer bench")])
    actor, device_id, channel_key = lab.actor, lab.device_id, "weight"

    started = time.perf_counter()
    batch = [
        events.EventIn(
            device_id=device_id,
            channel_key=channel_key,
            type="data_point.created",
            data={"value": i, "unit": "g"},
        )
        for i in range(1000)
    ]
    for _ in range(count // 1000):
        async with database.session() as db:
            await events.publish(db, actor, batch, indexed=True)
    published = time.perf_counter() - started

    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(run_worker(settings, database, box, stop))
    done = select(func.count()).select_from(Delivery).where(Delivery.status == "succeeded")
    while True:
        await asyncio.sleep(0.05)
        async with database.session() as db:
            if (await db.scalar(done)) == count:
                break
    delivered = time.perf_counter() - started
    stop.set()
    await task
    await database.dispose()
    return {"publish_per_s": count / published, "deliveries_per_s": count / delivered}


async def baseline_run(receiver_url: str, count: int, concurrency: int) -> float:
    body = b'{"type":"data_point.created","timestamp":"2026-11-28T10:00:00Z","data":{"value":1}}'
    remaining = count
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def blast() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.post(receiver_url + "in", data=body) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(blast() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="a multiple of 1000")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()

    with Receiver() as receiver:

        async def run() -> None:
            baseline = await baseline_run(receiver.url, args.events, args.concurrency)
            with tempfile.TemporaryDirectory() as folder:
                url, name = await fresh_database(args.database, Path(folder))
                try:
                    ours = await labhooks_run(url, receiver.url, args.events, args.concurrency)
                finally:
                    await drop_database(name)
            print(
                f"events: {args.events}, database: {args.database}, "
                f"concurrency: {args.concurrency}, cores: {os.cpu_count()}"
            )
            print(f"publish (validate, fan out, queue):  {ours['publish_per_s']:9.0f} events/s")
            print(
                f"labhooks deliveries end to end:      {ours['deliveries_per_s']:9.0f} deliveries/s"
            )
            print(f"baseline raw aiohttp POSTs:          {baseline:9.0f} requests/s")
            print(
                f"ratio labhooks / baseline:           {ours['deliveries_per_s'] / baseline:9.2f}"
            )

        uvloop.run(run())


if __name__ == "__main__":
    main()
