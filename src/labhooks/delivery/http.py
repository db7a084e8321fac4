"""The real Sender: aiohttp with pooled connections and the outbound guard.

No redirects are followed, no proxy is taken from the environment, the response is read up to
64 KiB, and the connection goes only to an address the AddressPolicy allowed: the resolver
below filters what DNS returns, and literal IP hosts are checked before connecting. What the
target answers is stored faithfully but safely: bytes a text column cannot hold (NUL, anything
that is not UTF-8, as older servers send in headers) are escaped, and the attempt says so.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from labhooks.delivery.sender import Request
from labhooks.domain.network import AddressPolicy, RefusedAddress
from labhooks.domain.outcomes import Attempt

RESPONSE_CAPTURE_BYTES = 64 * 1024


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


class HttpSender:
    """One per worker: a connection pool shared by every attempt."""

    def __init__(self, policy: AddressPolicy, timeout: float, max_connections: int) -> None:
        self.policy = policy
        self.timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpSender:
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

    def _refusal(self, url: URL) -> str | None:
        """Why an IP literal host may not be reached; names are checked by the resolver."""
        try:
            address = ipaddress.ip_address((url.host or "").strip("[]"))
        except ValueError:
            return None
        return self.policy.refusal(address)

    async def send(self, request: Request) -> Attempt:
        assert self._session is not None, "use `async with HttpSender(...)`"
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            url = URL(request.url, encoded=True)
            if refusal := self._refusal(url):
                raise RefusedAddress(refusal)
            async with self._session.post(
                url, data=request.body, headers=request.headers, allow_redirects=False
            ) as response:
                body, complete = await _read_capped(response.content)
                headers, body_text, note = capture(response.raw_headers, body, complete)
                return request.attempt(
                    started_at,
                    _elapsed(started),
                    response_status=response.status,
                    response_headers=headers,
                    response_body=body_text,
                    response_note=note,
                    error=_redirect_note(response.status, headers),
                )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return request.attempt(
                started_at, _elapsed(started), error=_describe(exc, self.timeout)
            )


def storable_text(raw: bytes, complete: bool = True) -> tuple[str, bool]:
    """`raw` as text a database column holds, and whether anything had to be escaped: bytes
    that are not UTF-8 and NUL become `\\xNN`. With `complete` false (a body cut at the capture
    limit), a character cut in half at the end is dropped rather than escaped."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=complete)
        escaped = False
    except UnicodeDecodeError:
        decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        text, escaped = decoder.decode(raw, final=complete), True
    if "\x00" in text:
        text, escaped = text.replace("\x00", "\\x00"), True
    return text, escaped


def capture(
    raw_headers: Sequence[tuple[bytes, bytes]], body: bytes, complete: bool
) -> tuple[dict[str, str], str, str | None]:
    """Response headers (a repeated one joined with ", " under its first spelling), the body,
    and a note naming what was escaped, if anything."""
    headers: dict[str, str] = {}
    spelling: dict[str, str] = {}  # lower-case name → the name as first sent
    escaped: list[str] = []
    for raw_name, raw_value in raw_headers:
        (name, name_escaped), (value, value_escaped) = (
            storable_text(raw_name),
            storable_text(raw_value),
        )
        if name_escaped or value_escaped:
            escaped.append(f"header {name}")
        name = spelling.setdefault(name.lower(), name)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    text, body_escaped = storable_text(body, complete)
    if body_escaped:
        escaped.append("the body")
    note = None
    if escaped:
        note = (
            "Bytes that are not UTF-8 text, and NUL bytes, are escaped as \\xNN in "
            + ", ".join(escaped)
            + "."
        )
    return headers, text, note


def _elapsed(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _redirect_note(status: int, headers: dict[str, str]) -> str | None:
    if 300 <= status < 400:
        location = next((v for k, v in headers.items() if k.lower() == "location"), "nowhere")
        return f"redirect to {location} not followed; register and subscribe the final URL"
    return None


async def _read_capped(stream: Any) -> tuple[bytes, bool]:
    """Up to RESPONSE_CAPTURE_BYTES of the body, and whether that is all of it."""
    chunks: list[bytes] = []
    size = 0
    while size < RESPONSE_CAPTURE_BYTES:
        chunk = await stream.read(RESPONSE_CAPTURE_BYTES - size)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), stream.at_eof()
