"""A real webhook receiver on 127.0.0.1: an aiohttp server in its own thread.

Each path answers from a script of replies (the last one repeats); every request is recorded
with its headers, body and arrival time, when it was answered, and how many were in flight at
once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from multidict import CIMultiDict

from tests.live import free_port


def strict_json_problem(body: bytes) -> str | None:
    """Why `body` is not RFC 8259 JSON as a strict receiver (JavaScript, Go, Java) reads it:
    NaN or Infinity, a lone surrogate, text that is not UTF-8; None when it is."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        text = body.decode("utf-8")
        json.loads(text, parse_constant=refuse)
        json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")  # lone surrogates
    except ValueError as exc:  # UnicodeError is one
        return str(exc)
    return None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"received": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0
    gate: threading.Event | None = None  # answer only once the test opens it


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDict[str]  # header names are case-insensitive, as HTTP says
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return str(self.json["data"]["event_id"])


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.answered_at: dict[str, list[float]] = defaultdict(list)  # when each reply was sent
        self.not_json: list[
            tuple[str, str]
        ] = []  # (path, why) of every body a strict receiver refuses
        self._in_flight: dict[str, int] = defaultdict(int)
        self._scripts: dict[str, list[Reply]] = {}
        self._served: dict[str, int] = defaultdict(int)
        self._arrived = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> str:
        """Sets how `path` answers, in order; returns its URL."""
        self._scripts[path] = list(replies)
        return self.url(path)

    def received(self, path: str) -> list[Received]:
        with self._arrived:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(got := [r for r in self.requests if r.path == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{path}: {len(got)} of {count} requests arrived")
                self._arrived.wait(left)
            return got

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await request.read()
        if problem := strict_json_problem(body):
            self.not_json.append((path, problem))
        self._in_flight[path] += 1
        self.max_in_flight[path] = max(self.max_in_flight[path], self._in_flight[path])
        try:
            script = self._scripts.get(path) or [Reply()]
            reply = script[min(self._served[path], len(script) - 1)]
            self._served[path] += 1
            with self._arrived:
                headers = CIMultiDict(request.headers)
                self.requests.append(Received(path, headers, body, time.monotonic()))
                self._arrived.notify_all()
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.gate is not None:
                await asyncio.get_running_loop().run_in_executor(None, reply.gate.wait, 30)
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        finally:
            self._in_flight[path] -= 1
            self.answered_at[path].append(time.monotonic())

    async def _start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        v6 = web.TCPSite(self._runner, "::1", self.port)
        with contextlib.suppress(OSError):  # no IPv6 loopback on this machine
            await v6.start()

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class RawReceiver:
    """A loopback HTTP/1.1 server that answers every request with exactly the bytes it is
    given: for answers a well-behaved server library would refuse to write (a Latin-1 byte in a
    header, a NUL in the body). Counts the requests it answered."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.port = free_port()
        self.answered = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                writer.write(self.answer)
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def __enter__(self) -> RawReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


TOLERANCE_S = 300  # what receivers allow between webhook-timestamp and their clock


def verifies(public_key: str, request: Received) -> bool:
    """A receiver's check: one `v1a` signature of `id.timestamp.body` verifies under the key."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    headers = {name.lower(): value for name, value in request.headers.items()}
    timestamp = headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < TOLERANCE_S
    signed = f"{headers['webhook-id']}.{timestamp}.".encode() + request.body
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(signature), signed)
        except InvalidSignature:
            continue
        return True
    return False


def versions(request: Received) -> list[str]:
    return [s.split(",")[0] for s in request.headers["webhook-signature"].split(" ")]
