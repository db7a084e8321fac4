"""Publishing latency while wrong passwords flood the login, beside the same without the flood.

    .venv/bin/python bench/login_flood.py [--seconds 10] [--rate 50] [--flooders 30]

Starts `labhooks serve` (API and worker in one process, on a fresh SQLite file) and a receiver
in separate processes. A gateway publishes single events at a steady rate and the time to each
202 is measured, first alone (the baseline), then while `--flooders` clients post wrong
passwords to POST /api/v1/tokens as fast as they are answered. The login limits are lifted for
the run, as if the flood came from many addresses at many accounts: every guess costs an argon2
hash. With --keep-limits they stay as configured by default, as a flood from one address meets
them: after 30 guesses it is answered 429 without hashing. Target (issue 9): p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import percentile, wait_until_up

LABHOOKS = [sys.executable, "-m", "labhooks"]
PASSWORD = "bench password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RECEIVER = """
from aiohttp import web
async def ok(_): return web.Response(text='{"ok":true}', content_type="application/json")
app = web.Application(); app.router.add_post("/{tail:.*}", ok)
web.run_app(app, host="127.0.0.1", port=%d, access_log=None, print=None)
"""


async def set_up(api: httpx.AsyncClient, receiver: str) -> tuple[str, dict[str, object]]:
    """An organisation, its administrator, a device and a subscription to the receiver; returns
    the administrator's token and one event to publish."""
    org = (
        await api.post("/organizations", json={"name": "Bench", "webhooks_enabled": True})
    ).json()
    await api.post(
        "/users",
        json={
            "email": "boss@bench.example",
            "name": "Boss",
            "password": PASSWORD,
            "role": "admin",
            "organization_id": org["id"],
        },
    )
    login = {"email": "boss@bench.example", "password": PASSWORD}
    token = (await api.post("/tokens", json=login)).json()["token"]
    boss = {"Authorization": f"Bearer {token}"}
    await api.post("/target-urls", json={"url": receiver}, headers=boss)
    device = (
        await api.post(
            "/devices",
            json={
                "name": "Balance",
                "channels": [
                    {"key": "weight", "name": "Weight", "trigger_events": ["data_point.created"]}
                ],
            },
            headers=boss,
        )
    ).json()
    subscription = {
        "target_url": receiver + "in",
        "channels": [{"channel_id": device["channels"][0]["id"], "events": ["data_point.created"]}],
    }
    assert (await api.post("/webhook-subscriptions", json=subscription, headers=boss)).is_success
    event = {"device_id": device["id"], "channel_key": "weight", "type": "data_point.created"}
    return token, event


async def publish_steadily(
    api: httpx.AsyncClient, token: str, event: dict[str, object], seconds: float, rate: float
) -> list[float]:
    """Milliseconds from each POST /events to its 202, one event every 1/rate seconds."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    for sent in range(int(seconds * rate)):
        await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        begun = time.perf_counter()
        response = await api.post(
            "/events", json=event | {"data": {"value": sent}}, headers=headers
        )
        assert response.status_code == 202, response.text
        latencies.append((time.perf_counter() - begun) * 1000)
    return latencies


async def flood(base: str, stop: asyncio.Event, counted: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while not stop.is_set():
            guess = {"email": "boss@bench.example", "password": f"guess {counted[0]}"}
            response = await client.post("/tokens", json=guess)
            assert response.status_code in (401, 429), response.text
            counted[0] += 1


async def run(args: argparse.Namespace, base: str, root_token: str, receiver: str) -> None:
    async with httpx.AsyncClient(
        base_url=base, timeout=60, headers={"Authorization": f"Bearer {root_token}"}
    ) as api:
        token, event = await set_up(api, receiver)
        alone = await publish_steadily(api, token, event, args.seconds, args.rate)
        stop, counted = asyncio.Event(), [0]
        flooders = [asyncio.create_task(flood(base, stop, counted)) for _ in range(args.flooders)]
        flood_started = time.perf_counter()
        flooded = await publish_steadily(api, token, event, args.seconds, args.rate)
        stop.set()
        await asyncio.gather(*flooders)
        guesses_per_s = counted[0] / (time.perf_counter() - flood_started)
    print(f"{args.rate:g} single events/s for {args.seconds:g} s each, {os.cpu_count()} cores")
    for name, values in (("alone (baseline)", alone), (f"{args.flooders} flooders", flooded)):
        print(
            f"publish latency, {name:17} p50 {statistics.median(values):6.1f} ms   "
            f"p99 {percentile(values, 0.99):6.1f} ms   max {max(values):6.1f} ms"
        )
    print(f"wrong passwords answered during the flood (401 or 429): {guesses_per_s:.0f}/s")
    print(
        f"ratio p99 flooded / baseline: {percentile(flooded, 0.99) / percentile(alone, 0.99):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=50, help="events published per second")
    parser.add_argument("--flooders", type=int, default=30)
    parser.add_argument("--keep-limits", action="store_true", help="the default login limits")
    args = parser.parse_args()
    port, receiver_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LABHOOKS_")} | {
            "LABHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
        if not args.keep_limits:
            environment |= {
                "LABHOOKS_LOGIN_FAILURES_PER_ADDRESS": "1000000000",
                "LABHOOKS_LOGIN_FAILURES_PER_ACCOUNT": "1000000000",
            }
        bootstrap = subprocess.run(
            [*LABHOOKS, "bootstrap", "--email", "root@bench.example", "--password", PASSWORD],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        root_token = bootstrap.stdout.strip().splitlines()[-1]
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER % receiver_port])
        server = subprocess.Popen(
            [*LABHOOKS, "serve", "--port", str(port), "--no-migrate"],
            cwd=folder,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=(Path(folder) / "serve.log").open("w"),
        )
        try:
            asyncio.run(wait_until_up(f"{base}/healthz"))
            asyncio.run(
                run(args, f"{base}/api/v1", root_token, f"http://127.0.0.1:{receiver_port}/")
            )
        finally:
            for process in (server, receiver):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
