"""Requests per second of the delivery sender, beside raw aiohttp and raw pyreqwest clients.

    .venv/bin/python bench/sender.py [--requests 20000] [--concurrency 100] [--rounds 3]
                                     [--before REV]

A receiver process (aiohttp on uvloop, 127.0.0.1, answering 200 `{"ok":true}`) is started, then
this process (uvloop) sends the same N POSTs of a ~300-byte JSON body, with webhook headers, at
the same concurrency, through each of: a raw aiohttp ClientSession, a raw pyreqwest Client,
labhooks' HttpSender to 127.0.0.1 (an IP literal) and to `localhost` (a name: resolved, checked
and pinned), under a policy allowing 127.0.0.0/8. Each is warmed up first, the rounds are
interleaved, and the median round is shown with its ratio to raw aiohttp: requests per second,
and the CPU time this process spent per request (steadier than req/s on a machine shared with
others). `--before REV` adds the HttpSender of a git revision (e.g. `HEAD`): before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from common import Receiver
from pyreqwest.client import ClientBuilder

from labhooks.delivery.http import HttpSender
from labhooks.delivery.sender import Request
from labhooks.domain.network import AddressPolicy, parse_networks

BODY = (
    b'{"id":"evt_01JDQ2V7K3M9X8Y4Z5A6B7C8D9","type":"data_point.created",'
    b'"timestamp":"2026-11-28T10:00:00.000000Z","data":{"event_id":"evt_01JDQ2V7K3M9X8Y4Z5A6B7C8D9",'
    b'"device_id":"dev_01JDQ2V7K3M9X8Y4Z5A6B7C8DA","channel_key":"weight","value":12.3456,'
    b'"unit":"g","measured_at":"2026-11-28T09:59:59.500000Z","sequence":1}}'
)
HEADERS = {
    "content-type": "application/json",
    "user-agent": "labhooks/bench",
    "webhook-id": "dlv_01JDQ2V7K3M9X8Y4Z5A6B7C8DB",
    "webhook-timestamp": "1795860000",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
}
POLICY = AddressPolicy(parse_networks("127.0.0.0/8"))

Send = Callable[[], Awaitable[None]]


Figure = tuple[float, float]  # requests per second, CPU µs of this process per request


async def blast(send: Send, count: int, concurrency: int) -> Figure:
    """Requests per second for `count` calls of `send`, `concurrency` at a time, and the CPU
    time this process (its event loop and any client threads) spent per request."""
    remaining = count

    async def one_lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await send()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_lane() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return count / elapsed, cpu / count * 1e6


async def raw_aiohttp(url: str, count: int, concurrency: int) -> Figure:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                assert response.status == 200, response.status

        await blast(send, min(count, concurrency * 5), concurrency)
        return await blast(send, count, concurrency)


async def raw_pyreqwest(url: str, count: int, concurrency: int) -> Figure:
    builder = ClientBuilder().max_connections(concurrency).timeout(timedelta(seconds=30))
    async with builder.build() as client:

        async def send() -> None:
            response = await client.post(url).headers(HEADERS).body_bytes(BODY).build().send()
            await response.bytes()
            assert response.status == 200, response.status

        await blast(send, min(count, concurrency * 5), concurrency)
        return await blast(send, count, concurrency)


async def sender(make: Callable[..., Any], url: str, count: int, concurrency: int) -> Figure:
    async with make(POLICY, timeout=30, max_connections=concurrency) as it:
        request = Request("dlv_bench", 1, url, HEADERS, HEADERS, BODY)

        async def send() -> None:
            attempt = await it.send(request)
            assert attempt.response_status == 200, attempt.error

        await blast(send, min(count, concurrency * 5), concurrency)
        return await blast(send, count, concurrency)


def sender_at(revision: str) -> Callable[..., Any]:
    """HttpSender as src/labhooks/delivery/http.py was at `revision`."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{revision}:src/labhooks/delivery/http.py"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    folder = Path(tempfile.mkdtemp())
    (folder / "http_before.py").write_bytes(source)
    spec = importlib.util.spec_from_file_location("http_before", folder / "http_before.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["http_before"] = module
    spec.loader.exec_module(module)
    return module.HttpSender  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also the HttpSender of this revision")
    args = parser.parse_args()
    n, c = args.requests, args.concurrency

    with Receiver() as receiver:
        url = receiver.url + "in"
        by_name = url.replace("127.0.0.1", "localhost")
        runs: dict[str, Callable[[], Awaitable[Figure]]] = {
            "raw aiohttp": lambda: raw_aiohttp(url, n, c),
            "raw pyreqwest": lambda: raw_pyreqwest(url, n, c),
            "HttpSender, 127.0.0.1": lambda: sender(HttpSender, url, n, c),
            "HttpSender, localhost": lambda: sender(HttpSender, by_name, n, c),
        }
        if args.before:
            before = sender_at(args.before)
            runs[f"HttpSender@{args.before}, 127.0.0.1"] = lambda: sender(before, url, n, c)
            runs[f"HttpSender@{args.before}, localhost"] = lambda: sender(before, by_name, n, c)

        async def measure() -> dict[str, list[Figure]]:
            figures: dict[str, list[Figure]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    figures[name].append(await run())
            return figures

        figures = uvloop.run(measure())

    print(
        f"requests: {n}, concurrency: {c}, rounds: {args.rounds} (median shown), "
        f"cores: {os.cpu_count()}, body: {len(BODY)} bytes"
    )
    rate = {name: statistics.median(r for r, _ in values) for name, values in figures.items()}
    cpu = {name: statistics.median(u for _, u in values) for name, values in figures.items()}
    base_rate, base_cpu = rate["raw aiohttp"], cpu["raw aiohttp"]
    width = max(len(name) for name in figures)
    print(
        f"{'client':<{width}}  {'req/s':>7}  {'x aiohttp':>9}  {'CPU µs/req':>10}  "
        f"{'x aiohttp':>9}  req/s of each round"
    )
    for name, values in figures.items():
        each = " ".join(f"{r:.0f}" for r, _ in values)
        print(
            f"{name:<{width}}  {rate[name]:7.0f}  {rate[name] / base_rate:9.2f}  "
            f"{cpu[name]:10.0f}  {cpu[name] / base_cpu:9.2f}  {each}"
        )


if __name__ == "__main__":
    main()
