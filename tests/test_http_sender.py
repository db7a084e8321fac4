"""HttpSender against real HTTP servers on loopback addresses: what it keeps of an answer, what
it says when there is none, and that its outbound guard holds (a refused target gets no
connection; a name goes only to the address that was checked, never resolved again by the HTTP
client)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from labhooks.delivery.http import RESPONSE_CAPTURE_BYTES, HttpSender
from labhooks.delivery.sender import Request
from labhooks.domain.network import AddressPolicy, parse_networks
from labhooks.domain.outcomes import Attempt
from tests.live import free_port

LOOPBACK = AddressPolicy(parse_networks("127.0.0.0/8, ::1/128"))

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def head(status: str = "200 OK", *headers: bytes, length: int | None = None) -> bytes:
    lines = [b"HTTP/1.1 " + status.encode(), *headers]
    lines.append(
        b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    )
    return b"\r\n".join(lines) + b"\r\n\r\n"


def whole(body: bytes, *headers: bytes, status: str = "200 OK") -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(head(status, *headers, length=len(body)) + body)

    return answer


def chunked(body: bytes) -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(head() + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")

    return answer


class Target:
    """A raw HTTP/1.1 server on `host` (a loopback address), in its own thread: each request is
    read (head and Content-Length body) and answered by `answer`. Counts the connections it
    accepted and the requests it read."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.answer, self.host, self.port = answer, host, port
        self.connections = 0
        self.in_flight = self.most_in_flight = 0
        self.requests: list[bytes] = []  # each request's head
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def url(self, path: str = "/in", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(request)
                length = 0
                for line in request.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    await self.answer(writer)
                    await writer.drain()
                finally:
                    self.in_flight -= 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()  # before the loop stops: no transport left open
            self._handlers.discard(task)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def __enter__(self) -> Target:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def send(
    url: str,
    policy: AddressPolicy = LOOPBACK,
    timeout: float = 5,
    sender: type[HttpSender] = HttpSender,
) -> Attempt:
    async def attempt() -> Attempt:
        async with sender(policy, timeout=timeout, max_connections=4) as it:
            return await it.send(Request("dlv_x", 1, url, {"user-agent": "t"}, {}, b"{}"))

    return asyncio.run(attempt())


def test_an_answer_is_kept_with_its_status_headers_and_body() -> None:
    answer = whole(b'{"ok":true}', b"Content-Type: application/json", b"X-Twice: a", b"x-twice: b")
    with Target(answer) as target:
        attempt = send(target.url())
    assert attempt.error is None and attempt.response_status == 200
    assert attempt.response_body == '{"ok":true}' and attempt.response_note is None
    assert attempt.header("Content-Type") == "application/json"
    assert attempt.header("x-twice") == "a, b"  # a repeated header, joined
    assert attempt.succeeded


def test_a_redirect_is_not_followed_and_the_attempt_says_so() -> None:
    with Target(whole(b"", b"Location: /elsewhere", status="302 Found")) as target:
        attempt = send(target.url("/from"))
    assert attempt.response_status == 302
    assert attempt.error == (
        "redirect to /elsewhere not followed; register and subscribe the final URL"
    )
    assert [r.split(b" ")[1] for r in target.requests] == [b"/from"]


@pytest.mark.parametrize("answer", [whole, chunked], ids=["content-length", "chunked"])
def test_a_body_over_64_kib_is_cut_and_a_character_cut_in_half_is_dropped(
    answer: Callable[[bytes], Answer],
) -> None:
    body = b"a" + "é".encode() * (RESPONSE_CAPTURE_BYTES // 2) + b"tail"
    with Target(answer(body)) as target:
        attempt = send(target.url())
    assert attempt.response_status == 200 and attempt.error is None
    # 65 536 bytes: "a", 32 767 "é", and the first byte of the next "é", dropped unescaped
    assert attempt.response_body == "a" + "é" * (RESPONSE_CAPTURE_BYTES // 2 - 1)
    assert attempt.response_note is None


@pytest.mark.parametrize("answer", [whole, chunked], ids=["content-length", "chunked"])
def test_a_body_of_exactly_64_kib_is_all_of_it(answer: Callable[[bytes], Answer]) -> None:
    """Whole, so a broken character at its very end is the target's, and escaped."""
    body = b"b" * (RESPONSE_CAPTURE_BYTES - 1) + b"\xc3"
    with Target(answer(body)) as target:
        attempt = send(target.url())
    assert attempt.response_body == "b" * (RESPONSE_CAPTURE_BYTES - 1) + "\\xc3"
    assert attempt.response_note is not None and "the body" in attempt.response_note


def test_a_body_that_stalls_after_64_kib_is_not_waited_for() -> None:
    """Exactly the limit arrives, then nothing (no end of the chunked body): what was wanted
    has arrived, so the attempt does not wait for the timeout, and takes the body as cut."""

    async def stalls(writer: asyncio.StreamWriter) -> None:
        body = b"c" * (RESPONSE_CAPTURE_BYTES - 1) + b"\xc3"
        writer.write(head() + b"%x\r\n" % len(body) + body + b"\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    with Target(stalls) as target:
        attempt = send(target.url(), timeout=5)
    assert attempt.response_status == 200 and attempt.error is None
    assert attempt.response_body == "c" * (RESPONSE_CAPTURE_BYTES - 1)  # the half "é" dropped
    assert attempt.response_note is None
    assert attempt.duration_ms < 2000


def test_an_endless_body_is_not_read_to_its_end() -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(head())
        chunk = b"z" * 16384
        while True:  # until the sender hangs up
            writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            await writer.drain()

    with Target(endless) as target:
        started = time.monotonic()
        attempt = send(target.url(), timeout=10)
    assert time.monotonic() - started < 5
    assert attempt.response_status == 200 and attempt.error is None
    assert attempt.response_body == "z" * RESPONSE_CAPTURE_BYTES


def test_a_slow_target_times_out() -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    with Target(slow) as target:
        attempt = send(target.url(), timeout=0.5)
    assert attempt.response_status is None
    assert attempt.error == "timed out: no complete answer within 0.5 s"
    assert 450 <= attempt.duration_ms < 3000


def test_a_body_that_trickles_past_the_timeout_times_out() -> None:
    """The timeout is for the whole answer, not only its head."""

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(head(length=1000))
        for _ in range(1000):
            writer.write(b".")
            await writer.drain()
            await asyncio.sleep(0.05)

    with Target(trickle) as target:
        attempt = send(target.url(), timeout=0.5)
    assert attempt.response_status is None
    assert attempt.error == "timed out: no complete answer within 0.5 s"
    assert attempt.duration_ms < 3000


def test_a_closed_port_is_could_not_connect_with_the_reason() -> None:
    port = free_port()
    attempt = send(f"http://127.0.0.1:{port}/in")
    assert attempt.error == f"could not connect to 127.0.0.1:{port}: Connection refused"
    attempt = send(f"http://localhost:{port}/in", AddressPolicy(parse_networks("127.0.0.0/8")))
    assert attempt.error == f"could not connect to localhost:{port}: Connection refused"


def test_a_name_that_does_not_resolve_is_could_not_connect() -> None:
    attempt = send("http://no-such-host.invalid/in")
    assert attempt.error is not None
    assert attempt.error.startswith("could not connect to no-such-host.invalid:80: ")


def test_header_bytes_the_client_cannot_read_are_named_and_a_body_is_escaped() -> None:
    """A Latin-1 byte in a header value: reqwest hands over no value with bytes other than
    printable ASCII, so the header is kept empty and the note names it. A NUL and a byte that is
    not UTF-8 in the body are escaped as \\xNN, and the note says so too."""
    answer = whole(
        b"a\x00b\xffc",
        b"Content-Disposition: attachment; filename=M\xfcller.csv",
        b"Content-Type: text/csv",
    )
    with Target(answer) as target:
        attempt = send(target.url())
    assert attempt.response_status == 200 and attempt.error is None
    assert attempt.header("content-disposition") == ""
    assert attempt.header("content-type") == "text/csv"
    assert attempt.response_body == "a\\x00b\\xffc"
    note = attempt.response_note
    assert note is not None
    assert "escaped as \\xNN in the body" in note
    assert "header content-disposition is not kept" in note


def test_a_name_resolving_to_a_refused_address_gets_no_connection() -> None:
    """`localhost` resolves to loopback, which the default policy refuses: the attempt says so,
    and the server listening there never sees a connection."""
    with Target(whole(b"{}"), host="127.0.0.1") as target:
        attempt = send(target.url(host="localhost"), AddressPolicy())
    assert attempt.response_status is None and attempt.error is not None
    assert attempt.error.startswith("localhost: refused to connect to "), attempt.error
    assert "loopback" in attempt.error
    assert target.connections == 0


def test_a_literal_refused_address_gets_no_connection() -> None:
    with Target(whole(b"{}")) as target:
        attempt = send(target.url(), AddressPolicy(parse_networks("10.0.0.0/8")))
    assert attempt.error is not None and attempt.error.startswith("refused to connect to 127.")
    assert target.connections == 0


class _FakeDns(HttpSender):
    """The answers a DNS server would give, so that a name can be made to change address
    between two lookups (a rebinding attack) without touching this machine's resolver. The
    names end in `.invalid`, which the system resolver never answers: a request that reaches
    a target by such a name went to the address this sender checked and pinned."""

    pin_seconds = 0.3
    answers: dict[str, list[list[str]]] = {}  # name → answers, one per lookup (last repeats)
    lookups: list[str] = []

    async def lookup(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@contextlib.contextmanager
def fake_dns(answers: dict[str, list[list[str]]]) -> Iterator[type[_FakeDns]]:
    """An HttpSender whose DNS gives these answers, and records each lookup."""
    yield type("FakeDns", (_FakeDns,), {"answers": answers, "lookups": []})


def test_a_name_goes_to_the_checked_address_and_a_rebound_name_is_refused() -> None:
    policy = AddressPolicy(parse_networks("127.0.0.2/32"), public=False)
    with Target(whole(b"{}"), host="127.0.0.2") as target:
        url = target.url(host="rebind.invalid")
        answers = {"rebind.invalid": [["127.0.0.2"], ["127.0.0.2"], ["127.0.0.1"]]}
        with fake_dns(answers) as sender:

            async def three() -> list[Attempt]:
                async with sender(policy, timeout=5, max_connections=4) as it:
                    request = Request("dlv_x", 1, url, {}, {}, b"{}")
                    first = await it.send(request)
                    await asyncio.sleep(0.35)  # the pin expires: looked up again, same address
                    second = await it.send(request)
                    await asyncio.sleep(0.35)  # now the name points at a refused address
                    third = await it.send(request)
                    return [first, second, third]

            first, second, third = asyncio.run(three())
            lookups = list(sender.lookups)
    assert first.response_status == 200 and first.error is None
    assert second.response_status == 200 and second.error is None
    assert lookups == ["rebind.invalid"] * 3
    assert third.response_status is None
    assert third.error == (
        "rebind.invalid: refused to connect to 127.0.0.1: a loopback address; "
        "LABHOOKS_ALLOWED_NETWORKS can allow its network"
    )
    assert len(target.requests) == 2


def test_a_name_is_looked_up_once_for_many_requests_at_once() -> None:
    async def after_a_while(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        await whole(b"{}")(writer)

    with Target(after_a_while, host="127.0.0.2") as target:
        url = target.url(host="many.invalid")
        with fake_dns({"many.invalid": [["127.0.0.2"]]}) as sender:

            async def many() -> list[Attempt]:
                async with sender(LOOPBACK, timeout=5, max_connections=4) as it:
                    request = Request("dlv_x", 1, url, {}, {}, b"{}")
                    return await asyncio.gather(*(it.send(request) for _ in range(20)))

            attempts = asyncio.run(many())
            lookups = list(sender.lookups)
    assert [a.response_status for a in attempts] == [200] * 20
    assert lookups == ["many.invalid"]
    assert 2 <= target.most_in_flight <= 4  # max_connections


def test_the_next_checked_address_is_tried_when_one_refuses_the_connection() -> None:
    """As with a resolver's list: 127.0.0.3 refuses (nothing listens there), 127.0.0.2
    answers; a refused address (10.0.0.1) is never tried."""
    with Target(whole(b"{}"), host="127.0.0.2") as target:
        url = target.url(host="two.invalid")
        answers = {"two.invalid": [["10.0.0.1", "127.0.0.3", "127.0.0.2"]]}
        with fake_dns(answers) as sender:
            attempt = send(url, LOOPBACK, sender=sender)
    assert attempt.response_status == 200 and attempt.error is None
    assert len(target.requests) == 1
