"""`labhooks mqtt-bridge`: messages from an MQTT broker become labhooks events.

Topics are `{prefix}/{device_id}/{channel_key}/{event_type}` (prefix `labhooks` by default, and
it may have levels of its own: `site1/labhooks`); the
payload is a JSON object `{"data": {...}, "occurred_at": "…", "idempotency_key": "…"}` (only
`data` required), or a bare JSON number or string, taken as `{"value": …}` of
`data_point.created`. Messages are taken with QoS 1 in a persistent session and acknowledged to
the broker only once labhooks stored them (or they were dead-lettered): a bridge killed
mid-stream loses nothing, the broker sends again what was not acknowledged. A message without
an `idempotency_key` gets one made from its topic and payload, so a message sent again is one
event (a gateway that reports the same value repeatedly includes `occurred_at`).

Retained messages are snapshots of the past, never events. A message that cannot become an
event (a topic off the scheme, not JSON, an unknown device or channel, data not fitting) is
republished on `{prefix}/_dead/…` with the original payload and the reason, then acknowledged:
nothing is dropped silently. JSON is taken strictly: NaN, infinities and numbers too large for
a float are not JSON, and labhooks could not store them. labhooks being down means waiting
(ingestion.publisher); told to stop while waiting, the bridge leaves what it held unacknowledged,
for the broker to send again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import ssl
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from labhooks.ingestion.publisher import Publisher, Stopped

log = logging.getLogger("labhooks.mqtt")
DEFAULT_PREFIX = "labhooks"
DEAD = "_dead"
RECONNECT_S = (0.5, 1, 2, 5, 10)
BATCH_MAX = 100  # messages in one POST /events when they come fast
LINGER_S = 0.02  # how long a batch waits for more once it has one


@dataclass(frozen=True)
class Broker:
    """Where the bridge takes messages from: `mqtt://user:password@host:1883` or `mqtts://…`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str, ca_file: str | None = None) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{url!r} is not a broker URL such as mqtt://127.0.0.1:1883")
        tls = parts.scheme == "mqtts"
        if ca_file is not None and not Path(ca_file).is_file():
            raise ValueError(f"--ca-file {ca_file!r} is not a file of CA certificates")
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=ca_file,
        )

    def client(self, identifier: str) -> aiomqtt.Client:
        tls = None
        if self.tls:
            tls = ssl.create_default_context(cafile=self.ca_file)
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            clean_session=False,  # the broker keeps what was not acknowledged across restarts
            tls_context=tls,
        )


@dataclass(frozen=True)
class NotAnEvent:
    """Why a message cannot become an event, as a problem document labhooks itself would give."""

    code: str
    detail: str

    def problem(self) -> dict[str, Any]:
        return {"title": "Not an event", "status": 422, "code": self.code, "detail": self.detail}


def check_prefix(prefix: str) -> str:
    """`prefix` if it can be the first topic levels of the scheme, else ValueError."""
    levels = prefix.split("/")
    if not all(levels) or any(set(level) & {"+", "#"} for level in levels) or DEAD in levels:
        raise ValueError(
            f"--prefix {prefix!r} must be topic levels such as labhooks or site1/labhooks: "
            f"none empty, no wildcards, none {DEAD}"
        )
    return prefix


def to_event(topic: str, payload: bytes, prefix: str) -> dict[str, Any] | NotAnEvent:
    """The event (a body of POST /events) a message stands for, or why it stands for none."""
    levels = topic.removeprefix(f"{prefix}/").split("/")
    if not topic.startswith(f"{prefix}/") or len(levels) != 3 or not all(levels):
        scheme = f"{prefix}/{{device_id}}/{{channel_key}}/{{event_type}}"
        return NotAnEvent("topic", f"the topic {topic!r} is not {scheme}")
    device_id, channel_key, event_type = levels
    try:
        body = json.loads(payload, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return NotAnEvent("not_json", "the payload is not JSON")
    if isinstance(body, int | float | str) and not isinstance(body, bool):
        if event_type != "data_point.created":
            return NotAnEvent("payload", "a bare value stands only for data_point.created")
        body = {"data": {"value": body}}
    if not isinstance(body, dict) or not isinstance(body.get("data", {}), dict):
        return NotAnEvent("payload", 'the payload is neither {"data": {...}} nor a bare value')
    unknown = set(body) - {"data", "occurred_at", "idempotency_key"}
    if unknown:
        return NotAnEvent("payload", f"unknown fields {sorted(unknown)}: data goes in `data`")
    digest = hashlib.sha256(topic.encode() + b"\n" + payload).hexdigest()[:48]
    return {
        "device_id": device_id,
        "channel_key": channel_key,
        "type": event_type,
        "data": body.get("data", {}),
        **({"occurred_at": body["occurred_at"]} if "occurred_at" in body else {}),
        "idempotency_key": body.get("idempotency_key") or f"mqtt-{digest}",
    }


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a number")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dead_letter(topic: str, prefix: str) -> str:
    """`{prefix}/_dead/` and the rest of the topic (the whole topic when it is off the scheme)."""
    rest = topic.removeprefix(f"{prefix}/") if topic.startswith(f"{prefix}/") else topic
    return f"{prefix}/{DEAD}/{rest}"


class MqttBridge:
    """Runs until `stop` is set: connects (again, with backoff, whenever the connection is
    lost), takes messages in batches, publishes, dead-letters, acknowledges."""

    def __init__(self, broker: Broker, publisher: Publisher, prefix: str, client_id: str) -> None:
        self.broker = broker
        self.publisher = publisher
        self.prefix = prefix
        self.client_id = client_id
        self.counts: Counter[str] = Counter()
        self.listening = asyncio.Event()  # subscribed now (for status, and for tests to wait)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._connected(stop)
                return
            except Stopped:  # while labhooks was away: what it held stays unacknowledged
                return
            except aiomqtt.MqttError as exc:
                self.listening.clear()
                delay = RECONNECT_S[min(failures, len(RECONNECT_S) - 1)]
                failures += 1
                self.counts["reconnects"] += 1
                log.warning(
                    "MQTT broker %s: %s; connecting again in %g s", self.broker.host, exc, delay
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()

    async def _connected(self, stop: asyncio.Event) -> None:
        client = self.broker.client(self.client_id)
        # aiomqtt has no manual acknowledgement of its own; its paho client does. Set before
        # connecting: a persistent session may deliver the moment the broker accepts us.
        client._client.manual_ack_set(True)
        async with client:
            await client.subscribe(f"{self.prefix}/+/+/+", qos=1)
            self.listening.set()
            log.info("MQTT bridge on %s:%d, topics %s/+/+/+", *self._where())
            # aiomqtt's iterator loses the message it was taking when it is cancelled, so one
            # task reads it, never cancelled while connected, into a queue that loses nothing
            inbox: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
            reader = asyncio.create_task(_read(client, inbox))
            try:
                while not stop.is_set():
                    batch = await self._next_batch(inbox, reader, stop)
                    if batch:
                        await self._handle(client, batch)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await reader

    def _where(self) -> tuple[str, int, str]:
        return self.broker.host, self.broker.port, self.prefix

    @staticmethod
    async def _next_batch(
        inbox: asyncio.Queue[aiomqtt.Message], reader: asyncio.Task[None], stop: asyncio.Event
    ) -> list[aiomqtt.Message]:
        """The next messages: the first to come, and what else came within LINGER_S."""
        getting = asyncio.ensure_future(inbox.get())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({getting, stopping, reader}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        getting.cancel()  # a Queue.get cancelled before it took an item leaves it queued
        with contextlib.suppress(asyncio.CancelledError):
            await getting
        if getting.cancelled():
            if reader.done():
                reader.result()  # the connection was lost: MqttError, to connect again
            return []
        await asyncio.sleep(LINGER_S)  # let a burst gather into one POST
        batch = [getting.result()]
        while len(batch) < BATCH_MAX and not inbox.empty():
            batch.append(inbox.get_nowait())
        return batch

    async def _handle(self, client: aiomqtt.Client, batch: list[aiomqtt.Message]) -> None:
        """Publishes what are events, dead-letters what are not, then acknowledges every message
        of the batch, in the order they came."""
        self.counts["received"] += len(batch)
        events: list[tuple[int, dict[str, Any]]] = []  # (position in the batch, event)
        refused: dict[int, dict[str, Any]] = {}  # position → problem
        for position, message in enumerate(batch):
            if message.retain:
                self.counts["retained"] += 1
                continue
            event = to_event(str(message.topic), _bytes(message.payload), self.prefix)
            if isinstance(event, NotAnEvent):
                refused[position] = event.problem()
            else:
                events.append((position, event))
        if events:
            outcome = await self.publisher.publish([event for _, event in events])
            self.counts["published"] += sum(1 for i in outcome.event_ids if i)
            refused |= {events[r.index][0]: r.problem for r in outcome.refused}
        for position in sorted(refused):  # in the order they came
            await self._dead_letter(client, batch[position], refused[position])
        for message in batch:
            client._client.ack(message.mid, message.qos)

    async def _dead_letter(
        self, client: aiomqtt.Client, message: aiomqtt.Message, problem: dict[str, Any]
    ) -> None:
        topic = str(message.topic)
        payload = _bytes(message.payload)
        try:
            original: Any = payload.decode()
        except UnicodeDecodeError:
            original = {"base64": _b64(payload)}
        letter = {"topic": topic, "payload": original, "problem": problem}
        await client.publish(dead_letter(topic, self.prefix), json.dumps(letter), qos=1)
        self.counts["dead_lettered"] += 1
        log.warning("dead-lettered a message on %s: %s", topic, problem.get("detail"))


async def _read(client: aiomqtt.Client, inbox: asyncio.Queue[aiomqtt.Message]) -> None:
    async for message in client.messages:
        inbox.put_nowait(message)


def _bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()
