"""Issue #8's benchmark: labhooks beside raw HTTP clients and a Celery peer, in one run.

    .venv/bin/python bench/performance.py [--smoke] [--setups sqlite,pg1,pg2[,pgserve]]
        [--scenarios throughput,latency,rate,fanout,slow] [--baselines aiohttp,pyreqwest,celery]
        [--events 50000] [--batch 500] [--publishers 2] [--rate 200] [--seconds 30]
        [--load-seconds 10] [--load-clients 32] [--load-processes 2]
        [--fanout 10000] [--slow 2000] [--raw-requests 50000] [--celery-tasks 20000]
        [--results-dir bench/results] [--docs-dir docs]

Everything runs on loopback, each part a process of its own: a receiver answering 200
`{"ok":true}` at once and another answering after 50 ms (aiohttp on uvloop; each keeps the time
every webhook arrived), `labhooks serve` and `labhooks worker`, the load generators, and a
Celery worker. PostgreSQL at LABHOOKS_TEST_POSTGRES_URL (a fresh database per setup, dropped at
the end), SQLite in a temporary folder, Redis at LABHOOKS_BENCH_REDIS_URL
(redis://127.0.0.1:6379/0).

Baselines, against the same receiver: a raw aiohttp client and a raw pyreqwest (Rust) client
POSTing a webhook body as fast as the receiver takes it (256 in flight), and the peer a Python
team builds first: Celery on Redis, a prefork worker x2, one task per delivery, `requests.post`
with Standard Webhooks HMAC headers, timed from the first enqueue to the last arrival.

Setups: sqlite (`labhooks serve`, the worker in the API process), pg1 and pg2 (PostgreSQL,
`labhooks serve --no-worker` and one or two `labhooks worker` processes); pgserve (PostgreSQL,
`labhooks serve` alone) on request. Scenarios, in each:
- throughput: --events published in batches of --batch (--publishers at once) to one
  subscription, until every delivery is recorded succeeded → deliveries/s; the worker's peak
  RSS (VmHWM) over the run;
- latency: single events at --rate a second for --seconds, one POST each → publish→receipt
  and the POST's answer, p50/p95/p99;
- rate: --load-processes processes with --load-clients requests in flight in all, for
  --load-seconds each: single-event POST /events (a device no subscription listens to),
  GET /api/v1/me, GET /healthz (the framework's ceiling) → requests/s;
- fanout: one event to --fanout subscriptions → time from the POST to the last receipt;
- slow: --slow deliveries to the 50 ms receiver → deliveries/s.

Prints a table (and the load average at start and end), writes <results-dir>/<timestamp>.json,
draws PNG figures into <docs-dir>/benchmarks/ and writes <docs-dir>/benchmarks.md. --smoke:
tiny sizes, outputs into a temporary folder unless the folders are given; counts are checked
in every run (a lost or unrecorded delivery is an error), speed never.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from common import (
    EVENT_TYPE,
    Lab,
    Receiver,
    add_device,
    autovacuum_on,
    drop_database,
    fresh_database,
    labhooks_environment,
    labhooks_process,
    percentile,
    register_target,
    serving,
    set_up,
)
from sqlalchemy import Boolean, Integer, String, cast, func, insert, literal, select

from labhooks.domain.catalogue import webhook_payload
from labhooks.storage import migrate
from labhooks.storage.database import Database
from labhooks.storage.models import (
    Delivery,
    DeliveryAttempt,
    SubscriptionSelection,
    WebhookSubscription,
    WorkerHeartbeat,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REDIS_URL = os.environ.get("LABHOOKS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SCENARIOS = ("throughput", "latency", "rate", "fanout", "slow")
BASELINES = ("aiohttp", "pyreqwest", "celery")
SLOW_DELAY = 0.05
RAW_CONCURRENCY = 256


@dataclass(frozen=True)
class Setup:
    name: str
    database: str  # sqlite | postgresql
    workers: int  # `labhooks worker` processes; 0: the worker of `labhooks serve`

    @property
    def label(self) -> str:
        if not self.workers:
            return f"{'SQLite' if self.database == 'sqlite' else 'PostgreSQL'}, serve (API+worker)"
        plural = "s" if self.workers > 1 else ""
        return f"PostgreSQL, API + {self.workers} worker{plural}"


SETUPS = {
    "sqlite": Setup("sqlite", "sqlite", 0),
    "pg1": Setup("pg1", "postgresql", 1),
    "pg2": Setup("pg2", "postgresql", 2),
    "pgserve": Setup("pgserve", "postgresql", 0),  # on request only: not in the default run
}
DEFAULT_SETUPS = ["sqlite", "pg1", "pg2"]


@dataclass
class Sizes:
    events: int = 50_000
    batch: int = 500
    publishers: int = 2
    rate: float = 200
    seconds: float = 30
    load_seconds: float = 10
    load_clients: int = 32
    load_processes: int = 2
    fanout: int = 10_000
    slow: int = 2_000
    raw_requests: int = 50_000
    celery_tasks: int = 20_000


SMOKE = Sizes(
    events=200,
    batch=100,
    rate=20,
    seconds=2,
    load_seconds=1,
    load_clients=8,
    fanout=20,
    slow=20,
    raw_requests=500,
    celery_tasks=50,
)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def event(device_id: str, value: int) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "channel_key": "weight",
        "type": EVENT_TYPE,
        "data": {"value": value, "unit": "g"},
    }


def webhook_body(number: int) -> bytes:
    """A body like the ones labhooks sends, for the baselines."""
    return webhook_payload(
        event_id=f"evt_raw_{number}",
        event_type=EVENT_TYPE,
        occurred_at=datetime.now(UTC),
        device={"id": "dev_raw", "name": "Balance"},
        channel={"id": "chn_raw", "key": "weight", "name": "Weight", "unit": "g"},
        data={"value": number, "unit": "g"},
    ).encode()


# -- load generators, in processes of their own ----------------------------------------------


@dataclass
class Load:
    """Requests to send from one process: `count` of them in all, or for `seconds` (after
    `warmup` seconds not counted), `concurrency` in flight."""

    client: str  # aiohttp | pyreqwest
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 16
    count: int | None = None
    seconds: float = 0.0
    warmup: float = 0.0


def run_load(load: Load) -> dict[str, Any]:
    """In a process of the pool: sends `load`; returns how many were answered (by status) and
    in how long."""
    return uvloop.run(_run_load(load))


async def _run_load(load: Load) -> dict[str, Any]:
    statuses: dict[int, int] = {}
    errors = 0
    remaining = load.count or 0
    counting_from = time.perf_counter() + load.warmup
    until = counting_from + load.seconds

    async def loop(send: Callable[[], Awaitable[int]]) -> None:
        nonlocal remaining, errors
        while (remaining > 0) if load.count else (time.perf_counter() < until):
            if load.count:
                remaining -= 1
            try:
                status = await send()
            except Exception:
                errors += 1
                continue
            if load.count or time.perf_counter() >= counting_from:
                statuses[status] = statuses.get(status, 0) + 1

    begun = time.perf_counter()
    if load.client == "pyreqwest":
        from datetime import timedelta

        from pyreqwest.client import ClientBuilder

        async with (
            ClientBuilder()
            .max_connections(load.concurrency)
            .timeout(timedelta(seconds=60))
            .build() as client
        ):

            async def send_reqwest() -> int:
                request = client.request(load.method, load.url).headers(load.headers)
                if load.body is not None:
                    request = request.body_bytes(load.body)
                response = await request.build().send()
                await response.bytes()
                return int(response.status)

            await asyncio.gather(*(loop(send_reqwest) for _ in range(load.concurrency)))
    else:
        connector = aiohttp.TCPConnector(limit=load.concurrency)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def send_aiohttp() -> int:
                async with session.request(
                    load.method, load.url, data=load.body, headers=load.headers
                ) as response:
                    await response.read()
                    return response.status

            await asyncio.gather(*(loop(send_aiohttp) for _ in range(load.concurrency)))
    ended = time.perf_counter()
    elapsed = ended - begun if load.count else max(1e-9, ended - counting_from)
    return {"statuses": statuses, "errors": errors, "seconds": elapsed}


async def loads(pool: concurrent.futures.Executor, many: list[Load]) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    return list(await asyncio.gather(*(loop.run_in_executor(pool, run_load, x) for x in many)))


# -- baselines ---------------------------------------------------------------------------------


async def raw_client(
    pool: concurrent.futures.Executor, client: str, receiver: Receiver, count: int
) -> dict[str, Any]:
    before = await asyncio.to_thread(receiver.count)
    body = webhook_body(0)
    load = Load(
        client,
        "POST",
        receiver.url + "raw",
        body,
        {"content-type": "application/json"},
        concurrency=RAW_CONCURRENCY,
        count=count,
    )
    [result] = await loads(pool, [load])
    arrived = await asyncio.to_thread(receiver.count) - before
    ok = result["statuses"].get(200, 0)
    if ok != count or arrived != count:
        raise RuntimeError(f"raw {client}: {ok} answered 200, {arrived} arrived of {count}")
    return {"requests": count, "seconds": result["seconds"], "per_s": count / result["seconds"]}


# The Celery peer: the app is made when the worker (`celery -A performance:celery_app`) or the
# bench asks for it, so that importing this module costs no Celery.
_celery: Any = None


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        return celery_app_()
    raise AttributeError(name)


def celery_app_() -> Any:
    global _celery
    if _celery is None:
        from celery import Celery

        app = Celery("labhooks_bench", broker=REDIS_URL)
        app.conf.update(
            task_ignore_result=True,
            broker_connection_retry_on_startup=True,
            worker_hijack_root_logger=False,
        )

        @app.task(name="bench.deliver")
        def deliver(url: str, secret: str, message_id: str, body: str) -> None:
            """One delivery as a Python team writes it first: Standard Webhooks headers,
            requests.post, a failure raised."""
            import requests

            timestamp = str(int(time.time()))
            key = base64.b64decode(secret.removeprefix("whsec_"))
            signed = f"{message_id}.{timestamp}.{body}".encode()
            signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            response = requests.post(
                url,
                data=body.encode(),
                headers={
                    "content-type": "application/json",
                    "webhook-id": message_id,
                    "webhook-timestamp": timestamp,
                    "webhook-signature": f"v1,{signature}",
                },
                timeout=15,
            )
            response.raise_for_status()

        _celery = app
    return _celery


def redis_down() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} is not reachable: {exc}"
    return None


def start_process(
    command: list[str], environment: dict[str, str], out: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=BENCH, env=environment, stdout=out, stderr=subprocess.STDOUT
    )


async def celery_peer(receiver: Receiver, tasks: int, folder: Path) -> dict[str, Any]:
    import redis

    app = celery_app_()
    deliver = app.tasks["bench.deliver"]
    queue = f"labhooks-bench-{secrets.token_hex(4)}"
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    url = receiver.url + "celery"
    environment = dict(os.environ) | {
        "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])
    }
    command = [
        *[sys.executable, "-m", "celery", "-A", "performance:celery_app", "worker"],
        *["--pool", "prefork", "--concurrency", "2", "--queues", queue, "--loglevel", "WARNING"],
        *["--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{queue}@%h"],
    ]

    def enqueue(first: int, count: int) -> None:
        for number in range(first, first + count):
            body = webhook_body(number).decode()
            deliver.apply_async((url, secret, f"msg_{number}", body), queue=queue)

    log = folder / "celery.log"
    with log.open("ab") as out, start_process(command, environment, out) as worker:
        try:
            warm = 4  # the worker up and its pool forked before the clock starts
            before = await asyncio.to_thread(receiver.count)
            await asyncio.to_thread(enqueue, -warm, warm)
            await asyncio.to_thread(receiver.wait_for_count, before + warm, 120)
            before += warm
            started = time.time()
            await asyncio.to_thread(enqueue, 0, tasks)
            enqueued = time.time()
            last = await asyncio.to_thread(
                receiver.wait_for_count, before + tasks, max(120.0, tasks / 50)
            )
            ended = last
        except BaseException:
            out.flush()
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            keys = redis.Redis.from_url(REDIS_URL)
            for key in keys.scan_iter(match=f"*{queue}*"):  # the queue and its bindings
                keys.delete(key)
    seconds = ended - started
    return {
        "tasks": tasks,
        "seconds": seconds,
        "enqueue_seconds": enqueued - started,
        "per_s": tasks / seconds,
    }


# -- labhooks ----------------------------------------------------------------------------------


async def count_succeeded(database: Database, **where: str) -> int:
    conditions = [getattr(Delivery, k) == v for k, v in where.items()]
    statement = select(func.count()).select_from(Delivery).where(*conditions)
    async with database.engine.connect() as connection:
        return int(await connection.scalar(statement.where(Delivery.status == "succeeded")) or 0)


async def count_attempts(database: Database, subscription_id: str) -> int:
    statement = (
        select(func.count())
        .select_from(DeliveryAttempt)
        .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
        .where(Delivery.subscription_id == subscription_id)
    )
    async with database.engine.connect() as connection:
        return int(await connection.scalar(statement) or 0)


async def wait_recorded(database: Database, wanted: int, within: float, **where: str) -> float:
    """Waits until `wanted` deliveries matching `where` are recorded succeeded; returns when."""
    deadline = time.monotonic() + within
    while (done := await count_succeeded(database, **where)) < wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{done} of {wanted} deliveries recorded in {within:g} s")
        await asyncio.sleep(0.02)
    return time.time()


async def clone_subscriptions(database: Database, template_id: str, copies: int) -> None:
    """`copies` more subscriptions like `template_id` (its target, secret, selections), written
    straight into the tables in two INSERT … SELECT statements: creating 10,000 through the
    service takes minutes."""
    table, selections = WebhookSubscription.__table__, SubscriptionSelection.__table__
    seq = select(literal(1, Integer).label("i")).cte("seq", recursive=True)
    seq = seq.union_all(select(seq.c.i + 1).where(seq.c.i < copies))
    prefix = f"sub_fan_{secrets.token_hex(3)}_"
    names = [c.name for c in table.columns]
    copied = select(
        *[
            (literal(prefix, String) + cast(seq.c.i, String)) if name == "id" else table.c[name]
            for name in names
        ]
    ).select_from(table.join(seq, literal(True, Boolean)))
    async with database.engine.begin() as connection:
        chosen = (
            await connection.execute(
                select(selections.c.channel_id, selections.c.event_type).where(
                    selections.c.subscription_id == template_id
                )
            )
        ).all()
        await connection.execute(
            insert(table).from_select(names, copied.where(table.c.id == template_id))
        )
        for channel_id, event_type in chosen:
            await connection.execute(
                insert(selections).from_select(
                    ["subscription_id", "channel_id", "event_type"],
                    select(
                        table.c.id, literal(channel_id, String), literal(event_type, String)
                    ).where(table.c.id.startswith(prefix)),
                )
            )


async def wait_for_workers(database: Database, pids: list[int], within: float = 60) -> None:
    """Until each worker process has written its heartbeat (host:pid:random)."""
    deadline = time.monotonic() + within
    while True:
        async with database.engine.connect() as connection:
            ids = (await connection.execute(select(WorkerHeartbeat.id))).scalars().all()
        beating = {int(i.split(":")[1]) for i in ids}
        if set(pids) <= beating:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers {pids} wrote no heartbeat in {within:g} s")
        await asyncio.sleep(0.1)


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class RssSampler:
    """VmRSS of some processes every 0.2 s while it runs, in MB, for the figure."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, float]] = []  # (seconds from start, largest RSS)
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        started = time.monotonic()
        while True:
            largest = max(proc_status_kib(p, "VmRSS") for p in self.pids) / 1024
            self.samples.append((round(time.monotonic() - started, 2), round(largest, 1)))
            await asyncio.sleep(0.2)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


@dataclass
class Running:
    """A setup's server and what the scenarios need of it."""

    setup: Setup
    base: str
    database: Database
    lab: Lab
    quiet_device: str  # no subscription listens to it
    slow_device: str
    slow_subscription: str
    fan_device: str
    worker_pids: list[int]
    fast: Receiver
    slow: Receiver
    pool: concurrent.futures.Executor
    sizes: Sizes

    def api(self, limit: int = 256) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=self.base,
            headers={"Authorization": f"Bearer {self.lab.token}"},
            connector=aiohttp.TCPConnector(limit=limit),
            timeout=aiohttp.ClientTimeout(total=120),
        )


async def publish_batches(
    running: Running, device_id: str, count: int, publishers: int
) -> tuple[float, float]:
    """`count` events in batches, `publishers` POSTs at once; (start, end) in wall-clock time."""
    size = running.sizes.batch
    bodies = [
        json.dumps([event(device_id, i) for i in range(start, min(count, start + size))]).encode()
        for start in range(0, count, size)
    ]
    sizes = [min(size, count - start) for start in range(0, count, size)]
    todo = list(zip(bodies, sizes, strict=True))
    todo.reverse()
    async with running.api(limit=publishers) as api:

        async def publisher() -> None:
            while todo:
                body, expected = todo.pop()
                async with api.post(
                    "/api/v1/events", data=body, headers={"content-type": "application/json"}
                ) as response:
                    answer = await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"POST /events: {response.status} {answer[:500]!r}")
                    created = json.loads(answer)["deliveries_created"]
                    if created != expected:
                        raise RuntimeError(f"{created} deliveries created of {expected}")

        started = time.time()
        await asyncio.gather(*(publisher() for _ in range(publishers)))
        return started, time.time()


async def throughput(running: Running) -> dict[str, Any]:
    count, lab = running.sizes.events, running.lab
    before_rx = await asyncio.to_thread(running.fast.count)
    before = await count_succeeded(running.database, subscription_id=lab.subscription_id)
    attempts_before = await count_attempts(running.database, lab.subscription_id)
    timeout = max(300.0, count / 50)
    with RssSampler(running.worker_pids) as sampler:
        started, published = await publish_batches(
            running, lab.device_id, count, running.sizes.publishers
        )
        await asyncio.to_thread(running.fast.wait_for_count, before_rx + count, timeout)
        ended = await wait_recorded(
            running.database, before + count, timeout, subscription_id=lab.subscription_id
        )
    peak_kib = {pid: proc_status_kib(pid, "VmHWM") for pid in running.worker_pids}
    arrived = await asyncio.to_thread(running.fast.count) - before_rx
    attempts = await count_attempts(running.database, lab.subscription_id)
    seconds = ended - started
    return {
        "events": count,
        "batch": running.sizes.batch,
        "publishers": running.sizes.publishers,
        "seconds": seconds,
        "publish_seconds": published - started,
        "deliveries_per_s": count / seconds,
        "arrived": arrived,
        "recorded": await count_succeeded(running.database, subscription_id=lab.subscription_id)
        - before,
        "attempts": attempts - attempts_before,
        "worker_peak_rss_mb": max(peak_kib.values()) / 1024,
        "worker_peak_rss_mb_by_pid": {str(k): v / 1024 for k, v in peak_kib.items()},
        "rss_samples": sampler.samples,
    }


async def latency(running: Running) -> dict[str, Any]:
    rate, seconds, lab = running.sizes.rate, running.sizes.seconds, running.lab
    since = await asyncio.to_thread(running.fast.count)
    published: dict[str, float] = {}
    answers: list[float] = []
    failed = 0
    async with running.api() as api:

        async def publish(value: int) -> None:
            nonlocal failed
            body = json.dumps(event(lab.device_id, value)).encode()
            begun, clock = time.time(), time.perf_counter()
            try:
                async with api.post(
                    "/api/v1/events", data=body, headers={"content-type": "application/json"}
                ) as response:
                    answer = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                failed += 1
                return
            answers.append((time.perf_counter() - clock) * 1000)
            if response.status != 202:
                failed += 1
                return
            published[json.loads(answer)["event_ids"][0]] = begun

        posts: list[asyncio.Task[None]] = []
        total = int(rate * seconds)
        started = time.perf_counter()
        for sent in range(total):
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
            posts.append(asyncio.create_task(publish(sent)))
        await asyncio.gather(*posts)
    arrived = await asyncio.to_thread(running.fast.arrived, list(published), since, 120)
    waits = [(arrived[i] - published[i]) * 1000 for i in published]
    if not waits:
        raise RuntimeError("no event was published")
    return {
        "rate": rate,
        "seconds": seconds,
        "published": len(published),
        "failed": failed,
        "arrived": len(arrived),
        "p50_ms": percentile(waits, 0.5),
        "p95_ms": percentile(waits, 0.95),
        "p99_ms": percentile(waits, 0.99),
        "post_p50_ms": percentile(answers, 0.5),
        "post_p95_ms": percentile(answers, 0.95),
        "post_p99_ms": percentile(answers, 0.99),
        "samples_ms": [round(w, 2) for w in waits],
    }


async def request_rates(running: Running) -> dict[str, Any]:
    """Each endpoint loaded by the pool's processes, `load_clients` in flight in all."""
    sizes, lab = running.sizes, running.lab
    processes = sizes.load_processes
    auth = {"Authorization": f"Bearer {lab.token}"}
    single = json.dumps(event(running.quiet_device, 1)).encode()
    endpoints = {
        "post_events": (
            "POST",
            "/api/v1/events",
            single,
            auth | {"content-type": "application/json"},
        ),
        "get_me": ("GET", "/api/v1/me", None, auth),
        "healthz": ("GET", "/healthz", None, {}),
    }
    out: dict[str, Any] = {
        "clients": sizes.load_clients,
        "processes": processes,
        "seconds": sizes.load_seconds,
        "client": "pyreqwest",
        "subscription": "none: the device published to has no subscription",
    }
    for name, (method, path, body, headers) in endpoints.items():
        load = Load(
            "pyreqwest",
            method,
            running.base + path,
            body,
            headers,
            concurrency=max(1, sizes.load_clients // processes),
            seconds=sizes.load_seconds,
            warmup=min(1.0, sizes.load_seconds / 5),
        )
        results = await loads(running.pool, [load] * processes)
        statuses: dict[str, int] = {}
        for result in results:
            for status, n in result["statuses"].items():
                statuses[str(status)] = statuses.get(str(status), 0) + n
        good = sum(n for s, n in statuses.items() if s.startswith("2"))
        out[name] = {
            "per_s": sum(
                sum(n for s, n in r["statuses"].items() if 200 <= s < 300) / r["seconds"]
                for r in results
            ),
            "answered": good,
            "statuses": statuses,
            "errors": sum(r["errors"] for r in results),
        }
    return out


async def fanout(running: Running) -> dict[str, Any]:
    count = running.sizes.fanout
    before = await asyncio.to_thread(running.fast.count)
    async with running.api() as api:
        started, clock = time.time(), time.perf_counter()
        async with api.post(
            "/api/v1/events",
            data=json.dumps(event(running.fan_device, 1)).encode(),
            headers={"content-type": "application/json"},
        ) as response:
            answer = await response.read()
        post_ms = (time.perf_counter() - clock) * 1000
    if response.status != 202:
        raise RuntimeError(f"POST /events: {response.status} {answer[:500]!r}")
    published = json.loads(answer)
    if published["deliveries_created"] != count:
        raise RuntimeError(f"{published['deliveries_created']} deliveries created of {count}")
    event_id = published["event_ids"][0]
    timeout = max(120.0, count / 20)
    last = await asyncio.to_thread(running.fast.wait_for_count, before + count, timeout)
    recorded_at = await wait_recorded(running.database, count, timeout, event_id=event_id)
    return {
        "subscriptions": count,
        "post_ms": post_ms,
        "last_receipt_s": last - started,
        "all_recorded_s": recorded_at - started,
        "arrived": await asyncio.to_thread(running.fast.count) - before,
        "recorded": await count_succeeded(running.database, event_id=event_id),
    }


async def slow_targets(running: Running) -> dict[str, Any]:
    count = running.sizes.slow
    before_rx = await asyncio.to_thread(running.slow.count)
    before = await count_succeeded(running.database, subscription_id=running.slow_subscription)
    timeout = max(120.0, count / 20)
    started, _ = await publish_batches(running, running.slow_device, count, 1)
    await asyncio.to_thread(running.slow.wait_for_count, before_rx + count, timeout)
    ended = await wait_recorded(
        running.database, before + count, timeout, subscription_id=running.slow_subscription
    )
    return {
        "deliveries": count,
        "answer_delay_s": SLOW_DELAY,
        "seconds": ended - started,
        "deliveries_per_s": count / (ended - started),
        "arrived": await asyncio.to_thread(running.slow.count) - before_rx,
        "recorded": await count_succeeded(
            running.database, subscription_id=running.slow_subscription
        )
        - before,
    }


SCENARIO_RUNS: dict[str, Callable[[Running], Awaitable[dict[str, Any]]]] = {
    "throughput": throughput,  # first: the worker's peak RSS is this run's
    "latency": latency,
    "rate": request_rates,
    "slow": slow_targets,
    "fanout": fanout,
}


async def run_setup(
    setup: Setup,
    scenarios: list[str],
    sizes: Sizes,
    fast: Receiver,
    slow: Receiver,
    pool: concurrent.futures.Executor,
    folder: Path,
) -> dict[str, Any]:
    folder = folder / setup.name
    folder.mkdir()
    url, name = await fresh_database(setup.database, folder)
    database = Database(url)
    try:
        await migrate.upgrade(database)
        lab = await set_up(database, fast.url)
        quiet = await add_device(database, lab.actor, "Quiet", None)
        await register_target(database, lab.actor, slow.url)
        slowly = await add_device(database, lab.actor, "Slow", slow.url + "slow")
        fan = await add_device(database, lab.actor, "Fan", fast.url + "fan")
        assert slowly.subscription_id and fan.subscription_id
        if "fanout" in scenarios:
            await clone_subscriptions(database, fan.subscription_id, sizes.fanout - 1)
        progress(f"{setup.name}: database ready; starting labhooks")
        with ExitStack() as stack:
            base, server = stack.enter_context(serving(url, folder, worker=not setup.workers))
            environment = labhooks_environment(url)
            workers = [
                stack.enter_context(
                    labhooks_process(["worker"], environment, folder / f"worker-{n}.log")
                )
                for n in range(setup.workers)
            ]
            pids = [w.pid for w in workers] or [server.pid]
            await wait_for_workers(database, pids)
            progress(f"{setup.name}: labhooks up")
            running = Running(
                setup,
                base,
                database,
                lab,
                quiet.device_id,
                slowly.device_id,
                slowly.subscription_id,
                fan.device_id,
                pids,
                fast,
                slow,
                pool,
                sizes,
            )
            # a first delivery: connections made, caches warm, before any clock starts
            before = await asyncio.to_thread(fast.count)
            await publish_batches(running, lab.device_id, 1, 1)
            await asyncio.to_thread(fast.wait_for_count, before + 1, 60)
            await wait_recorded(database, 1, 60, subscription_id=lab.subscription_id)
            results: dict[str, Any] = {"label": setup.label, "worker_pids": pids}
            for scenario, run in SCENARIO_RUNS.items():
                if scenario in scenarios:
                    progress(f"{setup.name}: {scenario}")
                    results[scenario] = await run(running)
                    progress(f"{setup.name}: {scenario}: {summary(scenario, results[scenario])}")
            for process in [*workers, server]:  # stopped cleanly: no error on the way out
                if process.poll() is not None:
                    raise RuntimeError(f"a labhooks process exited ({process.returncode})")
            progress(f"{setup.name}: stopping labhooks")
            return results
    finally:
        await database.dispose()
        await drop_database(name)


def summary(scenario: str, result: dict[str, Any]) -> str:
    if scenario == "throughput":
        return (
            f"{result['deliveries_per_s']:.0f} deliveries/s, peak RSS "
            f"{result['worker_peak_rss_mb']:.0f} MB"
        )
    if scenario == "latency":
        return (
            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms "
            f"(POST p50 {result['post_p50_ms']:.1f} ms)"
        )
    if scenario == "rate":
        return ", ".join(
            f"{k} {result[k]['per_s']:.0f}/s" for k in ("post_events", "get_me", "healthz")
        )
    if scenario == "fanout":
        return f"last receipt after {result['last_receipt_s']:.2f} s"
    return f"{result['deliveries_per_s']:.0f} deliveries/s in {result['seconds']:.2f} s"


# -- the table, the JSON, the figures ----------------------------------------------------------


@dataclass
class Row:
    scenario: str
    setup: str
    figure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


def rows_of(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    baselines = results["baselines"]
    raw = {k: baselines[k]["per_s"] for k in ("aiohttp", "pyreqwest") if k in baselines}
    for client, per_s in raw.items():
        rows.append(Row("baseline", "", f"raw {client} client → receiver", per_s, "requests/s"))
    celery = baselines.get("celery", {}).get("per_s")
    if celery:
        rows.append(
            Row("baseline", "", "Celery + Redis, prefork x2, requests.post", celery, "deliveries/s")
        )
    for setup in results["setups"].values():
        label = setup["label"]
        if "throughput" in setup:
            t = setup["throughput"]
            per_s = t["deliveries_per_s"]
            figure = f"end to end, {t['events']:,} events in batches of {t['batch']}"
            if raw:
                client, fastest = max(raw.items(), key=lambda kv: kv[1])
                ratio = per_s / fastest
                rows.append(
                    Row(
                        "throughput",
                        label,
                        figure,
                        per_s,
                        "deliveries/s",
                        f"raw {client}",
                        fastest,
                        ratio,
                        "≥ 0.5x",
                        ratio >= 0.5,
                    )
                )
            if celery:
                ratio = per_s / celery
                rows.append(
                    Row(
                        "throughput",
                        label,
                        figure,
                        per_s,
                        "deliveries/s",
                        "Celery",
                        celery,
                        ratio,
                        "≥ 8x",
                        ratio >= 8,
                    )
                )
            if not raw and not celery:
                rows.append(Row("throughput", label, figure, per_s, "deliveries/s"))
            mb = t["worker_peak_rss_mb"]
            whose = "the serve process (API+worker)" if "serve" in label else "the largest worker"
            rows.append(Row("worker RSS", label, f"peak of {whose}", mb, "MB", target="≤ 200 MB"))
            rows[-1].met = mb <= 200
        if "latency" in setup:
            lat = setup["latency"]
            what = f"publish→receipt at {lat['rate']:g}/s"
            percentiles: list[tuple[str, str, int | None]] = [
                ("p50_ms", "p50", 5),
                ("p95_ms", "p95", None),
                ("p99_ms", "p99", 25),
            ]
            for key, name, limit in percentiles:
                rows.append(
                    Row(
                        "latency",
                        label,
                        f"{what}, {name}",
                        lat[key],
                        "ms",
                        target=f"≤ {limit} ms" if limit else "",
                        met=lat[key] <= limit if limit else None,
                    )
                )
            for key, name in (("post_p50_ms", "p50"), ("post_p99_ms", "p99")):
                rows.append(Row("latency", label, f"POST /events answer, {name}", lat[key], "ms"))
        if "rate" in setup:
            r = setup["rate"]
            ceiling = r["healthz"]["per_s"]
            for key, name, limit in (
                ("post_events", "POST /events, one event", 2000),
                ("get_me", "GET /api/v1/me", 3000),
            ):
                per_s = r[key]["per_s"]
                rows.append(
                    Row(
                        "publish rate",
                        label,
                        name,
                        per_s,
                        "requests/s",
                        "/healthz",
                        ceiling,
                        per_s / ceiling if ceiling else None,
                        f"≥ {limit:,}/s",
                        per_s >= limit,
                    )
                )
            rows.append(Row("publish rate", label, "GET /healthz (ceiling)", ceiling, "requests/s"))
        if "fanout" in setup:
            f = setup["fanout"]
            rows.append(
                Row(
                    "fan-out",
                    label,
                    f"one event to {f['subscriptions']:,} subscriptions: last receipt",
                    f["last_receipt_s"],
                    "s",
                    target="≤ 3 s",
                    met=f["last_receipt_s"] <= 3,
                )
            )
        if "slow" in setup:
            s = setup["slow"]
            rows.append(
                Row(
                    "slow targets",
                    label,
                    f"{s['deliveries']:,} deliveries, answers after 50 ms "
                    f"(all in {s['seconds']:.1f} s)",
                    s["deliveries_per_s"],
                    "deliveries/s",
                )
            )
    return rows


def number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> list[list[str]]:
    head = ["scenario", "setup", "figure", "value", "baseline", "ratio", "target", "met"]
    lines = [head]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "no")
        baseline = f"{r.baseline} {number(r.baseline_value)}".strip()
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        value = f"{number(r.value)} {r.unit}"
        lines.append([r.scenario, r.setup, r.figure, value, baseline, ratio, r.target, met])
    return lines


def print_table(results: dict[str, Any], rows: list[Row]) -> None:
    lines = table(rows)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    machine = results["machine"]
    print(
        f"labhooks performance, {results['started']}; {machine['cores']} cores; load average "
        f"{fmt_load(machine['load_start'])} at start, {fmt_load(machine['load_end'])} at end"
    )
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def fmt_load(load: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def draw(results: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    """The figures, as PNG files in `folder`; (file name, caption) of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    drawn: list[tuple[str, str]] = []
    setups = results["setups"]
    baselines = results["baselines"]

    def save(figure: Any, name: str, caption: str) -> None:
        figure.tight_layout()
        figure.savefig(folder / name, dpi=110)
        plt.close(figure)
        drawn.append((name, caption))

    bars = [
        (f"raw {k}", baselines[k]["per_s"], "tab:gray")
        for k in ("pyreqwest", "aiohttp", "celery")
        if k in baselines
    ]
    bars = [(n.replace("raw celery", "Celery peer"), v, c) for n, v, c in bars]
    bars += [
        (s["label"], s["throughput"]["deliveries_per_s"], "tab:blue")
        for s in setups.values()
        if "throughput" in s
    ]
    if bars:
        figure, axes = plt.subplots(figsize=(8, 0.5 * len(bars) + 1.5))
        axes.barh([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
        raw = [baselines[k]["per_s"] for k in ("aiohttp", "pyreqwest") if k in baselines]
        if raw:
            axes.axvline(0.5 * max(raw), color="tab:red", linestyle="--", label="target: 0.5x raw")
            axes.legend(loc="lower right")
        axes.invert_yaxis()
        axes.set_xlabel("deliveries (requests) per second")
        axes.set_title("End-to-end delivery throughput beside the baselines")
        save(figure, "throughput.png", "Deliveries a second, end to end, beside the baselines")

    measured = [(s["label"], s["latency"]) for s in setups.values() if "latency" in s]
    if measured:
        figure, axes = plt.subplots(figsize=(8, 4.5))
        for label, lat in measured:
            waits = sorted(lat["samples_ms"])
            shares = [(i + 1) / len(waits) for i in range(len(waits))]
            axes.plot(waits, shares, label=label)
        axes.axvline(5, color="tab:green", linestyle=":", label="target p50: 5 ms")
        axes.axvline(25, color="tab:red", linestyle=":", label="target p99: 25 ms")
        axes.set_xscale("log")
        axes.set_xlabel("publish → receipt (ms)")
        axes.set_ylabel("share of events")
        axes.set_title(f"Latency at {measured[0][1]['rate']:g} single events/s")
        axes.legend(loc="lower right")
        save(figure, "latency.png", "Publish → receipt, cumulative, one event per POST")

    rated = [(s["label"], s["rate"]) for s in setups.values() if "rate" in s]
    if rated:
        figure, axes = plt.subplots(figsize=(8, 4.5))
        names = [("post_events", "POST /events"), ("get_me", "GET /me"), ("healthz", "/healthz")]
        width = 0.8 / len(rated)
        for n, (label, r) in enumerate(rated):
            axes.bar(
                [i + n * width for i in range(len(names))],
                [r[k]["per_s"] for k, _ in names],
                width,
                label=label,
            )
        axes.set_xticks([i + width * (len(rated) - 1) / 2 for i in range(len(names))])
        axes.set_xticklabels([name for _, name in names])
        axes.axhline(2000, color="tab:red", linestyle="--", label="target POST /events")
        axes.axhline(3000, color="tab:purple", linestyle=":", label="target GET /me")
        axes.set_ylabel("requests per second")
        axes.set_title("Request rates of one API process")
        axes.legend()
        save(figure, "request_rates.png", "Requests a second of one API process")

    sampled = [
        (s["label"], s["throughput"]["rss_samples"]) for s in setups.values() if "throughput" in s
    ]
    if sampled:
        figure, axes = plt.subplots(figsize=(8, 4))
        for label, samples in sampled:
            axes.plot([t for t, _ in samples], [mb for _, mb in samples], label=label)
        axes.axhline(200, color="tab:red", linestyle="--", label="target: 200 MB")
        axes.set_ylim(bottom=0)
        axes.set_xlabel("seconds into the throughput run")
        axes.set_ylabel("worker RSS (MB)")
        axes.set_title("The worker's memory during the throughput run")
        axes.legend()
        save(figure, "worker_rss.png", "The worker's resident memory during the throughput run")
    return drawn


def write_markdown(
    results: dict[str, Any], rows: list[Row], drawn: list[tuple[str, str]], path: Path
) -> None:
    machine = results["machine"]
    lines = [
        "<!-- Generated by bench/performance.py: do not edit; run the benchmark again. -->",
        "# Benchmarks",
        "",
        "Issue #8's benchmark: labhooks beside a raw aiohttp client, a raw pyreqwest (Rust) "
        "client and a Celery peer, all against the same loopback receiver in the same run. "
        "Run it with `.venv/bin/python bench/performance.py` (see its docstring for the flags); "
        "`--smoke` runs every scenario at a tiny size.",
        "",
        f"- run: {results['started']} → {results['finished']}"
        + (" (**smoke sizes**: the figures mean nothing)" if results["smoke"] else ""),
        f"- machine: {machine['cores']} cores, {machine['platform']}, Python {machine['python']}",
        f"- load average (1, 5, 15 min): {fmt_load(machine['load_start'])} at start, "
        f"{fmt_load(machine['load_end'])} at end",
        f"- sizes: {', '.join(f'{k} {v:g}' for k, v in results['sizes'].items())}",
        "",
    ]
    head, *body = table(rows)
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in body]
    lines.append("")
    for name, caption in drawn:
        lines += [f"![{caption}](benchmarks/{name})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# -- the run -----------------------------------------------------------------------------------


async def run(
    args: argparse.Namespace,
    sizes: Sizes,
    folder: Path,
    fast: Receiver,
    slow: Receiver,
    pool: concurrent.futures.Executor,
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "sizes": asdict(sizes),
        "setups_run": args.setups,
        "scenarios_run": args.scenarios,
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_start": list(os.getloadavg()),
        },
        "baselines": {},
        "setups": {},
    }
    for client in ("aiohttp", "pyreqwest"):
        if client in args.baselines:
            progress(f"baseline: raw {client}")
            results["baselines"][client] = await raw_client(pool, client, fast, sizes.raw_requests)
            progress(f"baseline: raw {client}: {results['baselines'][client]['per_s']:.0f}/s")
    if "celery" in args.baselines:
        progress("baseline: Celery")
        results["baselines"]["celery"] = await celery_peer(fast, sizes.celery_tasks, folder)
        progress(f"baseline: Celery: {results['baselines']['celery']['per_s']:.0f}/s")
    async with contextlib.AsyncExitStack() as stack:
        if any(SETUPS[name].database == "postgresql" for name in args.setups):
            turned_on = await stack.enter_async_context(autovacuum_on())
            results["machine"]["postgresql_autovacuum_turned_on_for_the_run"] = turned_on
            if turned_on:
                progress("PostgreSQL: autovacuum was off; on for this run, as in production")
        for name in args.setups:
            results["setups"][name] = await run_setup(
                SETUPS[name], args.scenarios, sizes, fast, slow, pool, folder
            )
    results["machine"]["load_end"] = list(os.getloadavg())
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def listed(choices: tuple[str, ...] | list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [x.strip() for x in text.split(",") if x.strip()]
        wrong = [x for x in chosen if x not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(f"{', '.join(wrong)}: choose among {choices}")
        return chosen

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    parser.add_argument("--smoke", action="store_true", help="every scenario at a tiny size")
    parser.add_argument(
        "--setups",
        type=listed(list(SETUPS)),
        default=DEFAULT_SETUPS,
        help=f"among {', '.join(SETUPS)}; default {','.join(DEFAULT_SETUPS)}",
    )
    parser.add_argument(
        "--scenarios",
        type=listed(SCENARIOS),
        default=list(SCENARIOS),
        help=f"among (and default) {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--baselines",
        type=listed(BASELINES),
        default=list(BASELINES),
        help=f"among (and default) {','.join(BASELINES)}; '' for none",
    )
    for size in fields(Sizes):
        kind = float if size.type == "float" else int
        parser.add_argument(
            "--" + size.name.replace("_", "-"),
            type=kind,
            default=None,
            help=f"default {getattr(Sizes(), size.name):g}, {getattr(SMOKE, size.name):g} "
            "with --smoke",
        )
    parser.add_argument("--results-dir", type=Path, help="default bench/results")
    parser.add_argument("--docs-dir", type=Path, help="default docs (benchmarks.md, benchmarks/)")
    args = parser.parse_args()

    sizes = Sizes(**asdict(SMOKE if args.smoke else Sizes()))
    for size in fields(Sizes):
        given = getattr(args, size.name)
        if given is not None:
            setattr(sizes, size.name, given)
    # a smoke run's figures mean nothing: they go to a temporary folder unless told otherwise
    scratch = None
    if args.smoke and not (args.results_dir and args.docs_dir):
        scratch = Path(tempfile.mkdtemp(prefix="labhooks-bench-smoke-"))
    results_dir = args.results_dir or (scratch or BENCH / "results")
    docs_dir = args.docs_dir or (scratch / "docs" if scratch else ROOT / "docs")
    if "celery" in args.baselines and (reason := redis_down()):
        parser.error(f"{reason}; start it, or leave celery out of --baselines")

    # stopped by SIGTERM, the processes it started are stopped too, as on an error or Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{sys.argv[0]}: stopped by SIGTERM"))
    # The receivers and the load generators are forked now, before any event loop or thread
    # of this process starts: they start at once, with what this process imported.
    fork = multiprocessing.get_context("fork")
    processes = max(1, sizes.load_processes)
    with (
        Receiver() as fast,
        Receiver(delay=SLOW_DELAY) as slow,
        concurrent.futures.ProcessPoolExecutor(processes, mp_context=fork) as pool,
        tempfile.TemporaryDirectory(prefix="labhooks-bench-run-") as folder,
    ):
        list(pool.map(int, range(processes)))  # forks them all
        results = uvloop.run(run(args, sizes, Path(folder), fast, slow, pool))
    rows = rows_of(results)
    results["table"] = [asdict(r) for r in rows]
    stamp = results["started"].replace(":", "").replace("-", "").replace("+0000", "Z")
    results_dir.mkdir(parents=True, exist_ok=True)
    written = results_dir / f"{stamp}.json"
    written.write_text(json.dumps(results, indent=1) + "\n")
    drawn = draw(results, docs_dir / "benchmarks")
    write_markdown(results, rows, drawn, docs_dir / "benchmarks.md")
    print_table(results, rows)
    print(f"results: {written}")
    print(f"figures: {docs_dir / 'benchmarks.md'} and {len(drawn)} PNG files beside it")


if __name__ == "__main__":
    main()
