"""Sending one attempt over HTTP: aiohttp with pooled connections and the outbound guard.

No redirects are followed, no proxy is taken from the environment, the response is read up to
64 KiB, and the connection goes only to an address the AddressPolicy allowed: the resolver
below filters what DNS returns, and literal IP hosts are checked before connecting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from labhooks import __version__
from labhooks.domain.network import AddressPolicy, RefusedAddress

RESPONSE_CAPTURE_BYTES = 64 * 1024
USER_AGENT = f"labhooks/{__version__}"


@dataclass(frozen=True)
class Answer:
    """What came back from one attempt: a response, or the error that prevented one."""

    status: int | None
    headers: dict[str, str] | None
    body: str | None
    error: str | None
    duration_ms: float
    retry_after: str | None = None


@dataclass(frozen=True)
class Target:
    url: URL
    refusal: str | None


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then keeps only the addresses the policy allows."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = set(self._policy.check(host, [r["host"] for r in results]))
        return [r for r in results if r["host"] in allowed]

    async def close(self) -> None:
        await self._inner.close()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"timed out: no complete answer within {timeout:g} s"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RefusedAddress):
            return str(cause)
        cause = cause.__cause__ or getattr(cause, "os_error", None)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (
            f"could not connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
        )
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Sender:
    """One per worker: a connection pool shared by every attempt."""

    def __init__(self, policy: AddressPolicy, timeout: float, max_connections: int) -> None:
        self.policy = policy
        self.timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Sender:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            resolver=GuardedResolver(self.policy),
            ttl_dns_cache=10,  # cached answers were filtered too
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            trust_env=False,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    def target(self, url: str) -> Target:
        """The URL, parsed once, and the refusal if its host is an IP literal not allowed."""
        parsed = URL(url, encoded=True)
        try:
            address = ipaddress.ip_address((parsed.host or "").strip("[]"))
        except ValueError:
            return Target(parsed, None)  # a name: the resolver checks what it resolves to
        return Target(parsed, self.policy.refusal(address))

    async def send(self, target: Target, headers: dict[str, str], body: bytes) -> Answer:
        assert self._session is not None, "use `async with Sender(...)`"
        started = time.perf_counter()
        try:
            if target.refusal:
                raise RefusedAddress(target.refusal)
            async with self._session.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                captured = await _read_capped(response.content)
                return Answer(
                    status=response.status,
                    headers={str(name): value for name, value in response.headers.items()},
                    body=captured.decode("utf-8", errors="replace"),
                    error=_redirect_note(response),
                    duration_ms=_elapsed(started),
                    retry_after=response.headers.get("Retry-After"),
                )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return Answer(None, None, None, _describe(exc, self.timeout), _elapsed(started))


def _elapsed(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _redirect_note(response: aiohttp.ClientResponse) -> str | None:
    if 300 <= response.status < 400:
        location = response.headers.get("Location", "nowhere")
        return f"redirect to {location} not followed; register and subscribe the final URL"
    return None


async def _read_capped(stream: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < RESPONSE_CAPTURE_BYTES:
        chunk = await stream.read(RESPONSE_CAPTURE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
