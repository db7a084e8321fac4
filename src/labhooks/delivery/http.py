"""The real Sender: pyreqwest (reqwest, in Rust) with pooled connections and the outbound guard.

No redirects are followed, no proxy is taken from the environment, the response is read up to
64 KiB, and the connection goes only to an address the AddressPolicy allowed: a name is resolved
here, the policy filters the answers, and the request goes through a client pinned to one
approved address (reqwest's DNS override), so the HTTP client never resolves a name itself. A
pin is kept for 10 s, like a DNS cache; literal IP hosts are checked before connecting. What the
target answers is stored faithfully but safely: bytes a text column cannot hold (NUL, anything
that is not UTF-8) are escaped, and the attempt says so. reqwest hands over header names in lower
case and no header value with bytes other than printable ASCII: such a value is not kept, and
the attempt's note names the header.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import re
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    ConnectError,
    DetailedPyreqwestError,
    PyreqwestError,
    RequestError,
)
from pyreqwest.http import HeaderMap, Url
from pyreqwest.response import ResponseBodyReader

from labhooks.delivery.sender import USER_AGENT, Request
from labhooks.domain.network import AddressPolicy, RefusedAddress
from labhooks.domain.outcomes import Attempt

RESPONSE_CAPTURE_BYTES = 64 * 1024
PIN_SECONDS = 10.0  # how long a name's checked addresses are used before resolving it again


@dataclass
class _Pin:
    """The addresses a name resolved to that the policy allowed, in the resolver's order, and
    a client per address that connects to that address only (built when first needed)."""

    addresses: tuple[str, ...]
    expires: float
    clients: dict[str, Client] = field(default_factory=dict)


_OS_ERROR_NUMBER = re.compile(r"\s*\(os error \d+\)$")


def _cause(exc: DetailedPyreqwestError) -> str:
    """The innermost reason reqwest gives, without its `(os error N)`."""
    causes = (exc.details or {}).get("causes") or []
    message = causes[-1]["message"] if causes else exc.message
    return _OS_ERROR_NUMBER.sub("", message)


def _describe(exc: BaseException, timeout: float, host: str, port: int | None) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"timed out: no complete answer within {timeout:g} s"
    if isinstance(exc, RefusedAddress):
        return str(exc)
    if isinstance(exc, socket.gaierror):
        return f"could not connect to {host}:{port}: {exc.strerror or exc}"
    if isinstance(exc, ConnectError):
        return f"could not connect to {host}:{port}: {_cause(exc)}"
    if isinstance(exc, DetailedPyreqwestError):
        return f"{type(exc).__name__}: {exc.message}: {_cause(exc)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class HttpSender:
    """One per worker: pooled connections shared by every attempt, at most `max_connections`
    requests in flight."""

    pin_seconds = PIN_SECONDS

    def __init__(self, policy: AddressPolicy, timeout: float, max_connections: int) -> None:
        self.policy = policy
        self.timeout = timeout
        self._max_connections = max_connections
        self._direct: Client | None = None  # for literal IP hosts: nothing to resolve
        self._pins: dict[str, _Pin] = {}
        self._resolving: dict[str, asyncio.Task[_Pin]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._refusals: dict[str, str | None] = {}  # literal IP host → the policy's answer

    def _client(self, pin_to: tuple[str, str] | None = None) -> Client:
        builder = (
            ClientBuilder()
            .follow_redirects(False)
            .no_proxy()
            .referer(False)
            .http1_lower_case_headers()  # the webhook headers are lower case; not Title-Case
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .user_agent(USER_AGENT)  # the request's own User-Agent, if any, wins
            .timeout(timedelta(seconds=self.timeout))
            .max_connections(self._max_connections)
            .pool_max_idle_per_host(self._max_connections)
        )
        if pin_to is not None:
            host, address = pin_to
            builder = builder.resolve(host, address, 0)  # port 0: the URL's port
        return builder.build()

    async def __aenter__(self) -> HttpSender:
        self._direct = self._client()
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._resolving.values():
            task.cancel()
        await asyncio.gather(*self._resolving.values(), return_exceptions=True)
        clients = [self._direct, *(c for p in self._pins.values() for c in p.clients.values())]
        self._pins.clear()
        for client in clients:
            if client is not None:
                await client.close()

    async def lookup(self, host: str, port: int) -> list[str]:
        """The addresses DNS gives for `host`, in its order (socket.gaierror if none)."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG
        )
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def _resolve(self, host: str, port: int) -> _Pin:
        found = await self.lookup(host, port)
        allowed = self.policy.check(host, found)  # RefusedAddress when none is allowed
        # an address with an IPv6 zone (`fe80::1%eth0`) cannot be pinned: it is not used
        addresses = tuple(a for a in allowed if "%" not in a)
        if not addresses:
            raise RefusedAddress(f"{host}: only link-local addresses with a zone, not supported")
        now = time.monotonic()
        previous = self._pins.get(host)
        pin = _Pin(addresses, now + self.pin_seconds)
        if previous is not None:  # the pools of the addresses still allowed are kept
            pin.clients = {a: c for a, c in previous.clients.items() if a in addresses}
        # a client dropped here (an address no longer allowed, a name no longer delivered
        # to) closes its connections once the requests in flight on it are done
        self._pins[host] = pin
        for name, other in list(self._pins.items()):
            if other.expires < now - 5 * self.pin_seconds:
                del self._pins[name]
        return pin

    async def _pin(self, host: str, port: int) -> _Pin:
        pin = self._pins.get(host)
        if pin is not None and pin.expires > time.monotonic():
            return pin
        task = self._resolving.get(host)
        if task is None:  # one resolution per name, however many deliveries wait for it
            task = asyncio.create_task(self._resolve(host, port))
            self._resolving[host] = task
            task.add_done_callback(lambda t: _settled(self._resolving, host, t))
        return await asyncio.shield(task)

    async def send(self, request: Request) -> Attempt:
        assert self._direct is not None, "use `async with HttpSender(...)`"
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        host, port = "", None
        try:
            url = Url(request.url)
            host, port = url.host_str or "", url.port_or_known_default
            if url.scheme not in ("http", "https") or not host:
                raise ValueError(f"not an http(s) URL with a host: {request.url}")
            if url.domain is None:  # a literal IP address: checked before connecting
                if refusal := self._literal_refusal(host):
                    raise RefusedAddress(refusal)
                clients = iter((self._direct,))
            else:
                pin = self._pins.get(host)
                if pin is None or pin.expires <= time.monotonic():
                    async with asyncio.timeout_at(deadline):
                        pin = await self._pin(host, port or 0)
                # a client per approved address, built when that address is first tried
                clients = (self._pinned(pin, host, a) for a in pin.addresses)
            if self._slots.locked():
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()  # at once
            try:
                status, headers_text, body, complete, unreadable = await self._exchange(
                    clients, url, request, deadline
                )
            finally:
                self._slots.release()
            _, body_text, note = capture((), body, complete)
            if unreadable:
                note = _join_notes(note, _unreadable_note(unreadable))
            return request.attempt(
                started_at,
                _elapsed(started),
                response_status=status,
                response_headers=headers_text,
                response_body=body_text,
                response_note=note,
                error=_redirect_note(status, headers_text),
            )
        except (PyreqwestError, OSError, TimeoutError, ValueError) as exc:
            return request.attempt(
                started_at, _elapsed(started), error=_describe(exc, self.timeout, host, port)
            )

    def _literal_refusal(self, host: str) -> str | None:
        try:
            return self._refusals[host]
        except KeyError:
            if len(self._refusals) >= 4096:
                self._refusals.clear()
            refusal = self._refusals[host] = self.policy.refusal(
                ipaddress.ip_address(host.strip("[]"))
            )
            return refusal

    def _pinned(self, pin: _Pin, host: str, address: str) -> Client:
        client = pin.clients.get(address)
        if client is None:
            client = pin.clients[address] = self._client((host, address))
        return client

    async def _exchange(
        self, clients: Iterator[Client], url: Url, request: Request, deadline: float
    ) -> tuple[int, dict[str, str], bytes, bool, list[str]]:
        """The first client that connects sends the request (a refused connection sent
        nothing, so the next approved address is tried, as a resolver's list is)."""
        loop = asyncio.get_running_loop()
        refused: ConnectError | None = None
        for client in clients:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            builder = (
                client.post(url)
                .headers(request.headers)
                .body_bytes(request.body)
                .timeout(timedelta(seconds=left))
            )
            try:
                async with builder.build_streamed() as response:
                    headers, unreadable = _headers(response.headers)
                    length = headers.get("content-length")
                    body, complete = await _read_capped(
                        response.body_reader, int(length) if length and length.isdigit() else None
                    )
                    return response.status, headers, body, complete, unreadable
            except ConnectError as exc:
                refused = exc
        assert refused is not None
        raise refused


def _settled(resolving: dict[str, asyncio.Task[_Pin]], host: str, task: asyncio.Task[_Pin]) -> None:
    if resolving.get(host) is task:
        del resolving[host]
    if not task.cancelled():
        task.exception()  # retrieved: every waiter may have timed out


def _headers(headers: HeaderMap) -> tuple[dict[str, str], list[str]]:
    """The response headers, a repeated one joined with ", ", and the names whose value reqwest
    does not hand over (one with a byte other than printable ASCII). reqwest gives names in
    lower case, and values only of printable ASCII and tabs: nothing to escape."""
    joined: dict[str, str] = {}
    try:
        for name, value in headers.items():
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        return joined, []
    except ValueError:
        pass
    joined, unreadable = {}, []
    for name in dict.fromkeys(headers.keys()):
        try:
            joined[name] = ", ".join(headers.getall(name))
        except ValueError:
            unreadable.append(name)
            joined[name] = ""
    return joined, unreadable


def _unreadable_note(names: list[str]) -> str:
    listed = ", ".join(f"header {name}" for name in names)
    value, holds = (
        ("The values of", "are not kept: they hold")
        if len(names) > 1
        else (
            "The value of",
            "is not kept: it holds",
        )
    )
    return (
        f"{value} {listed} {holds} bytes other than printable ASCII, which the HTTP client "
        "does not hand over."
    )


def _join_notes(first: str | None, second: str) -> str:
    return f"{first} {second}" if first else second


def storable_text(raw: bytes, complete: bool = True) -> tuple[str, bool]:
    """`raw` as text a database column holds, and whether anything had to be escaped: bytes
    that are not UTF-8 and NUL become `\\xNN`. With `complete` false (a body cut at the capture
    limit), a character cut in half at the end is dropped rather than escaped."""
    try:
        if complete:
            text = raw.decode("utf-8")
        else:
            text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
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


async def _read_capped(reader: ResponseBodyReader, length: int | None) -> tuple[bytes, bool]:
    """Up to RESPONSE_CAPTURE_BYTES of the body, and whether that is all of it; `length` is
    the Content-Length, when the target sent one."""
    chunks: list[bytes] = []
    size = 0
    while size < RESPONSE_CAPTURE_BYTES:
        if size == length:  # all of it, without asking the stream once more
            return b"".join(chunks), True
        chunk = await reader.read(RESPONSE_CAPTURE_BYTES - size)
        if chunk is None or not len(chunk):
            return b"".join(chunks), True
        chunks.append(bytes(chunk))
        size += len(chunk)
    if length is not None:
        return b"".join(chunks), size >= length
    # exactly the limit read and no length said: complete only if the body ends here (a
    # stream stalling or failing after the limit is not waited for: what was wanted arrived)
    with contextlib.suppress(RequestError, TimeoutError):
        async with asyncio.timeout(0.05):
            return b"".join(chunks), await reader.read(1) is None
    return b"".join(chunks), False
