"""The MQTT side of the bridge tests: the broker on 127.0.0.1:1883 (Mosquitto), a prefix of
each test's own, a bridge run in a thread, and a client that sends and reads as gateways do."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as paho

from labhooks.ingestion.mqtt import Broker, MqttBridge
from labhooks.ingestion.publisher import Publisher
from tests.conftest import skip_or_fail

BROKER = "mqtt://127.0.0.1:1883"


def broker_reachable() -> str | None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    try:
        client.connect("127.0.0.1", 1883, keepalive=5)
    except OSError as exc:
        return f"no MQTT broker on 127.0.0.1:1883 ({exc})"
    client.disconnect()
    return None


def fresh_prefix() -> str:
    return f"lhtest-{uuid.uuid4().hex[:10]}"


class Gateway:
    """A plain MQTT client that publishes as a lab gateway would (QoS 1) and collects what
    arrives on the topics it watches."""

    def __init__(self) -> None:
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:8]}"
        )
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Condition()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.received.append((message.topic, message.payload))
            self._lock.notify_all()

    def watch(self, topic_filter: str) -> None:
        result, _ = self.client.subscribe(topic_filter, qos=1)
        assert result == paho.MQTT_ERR_SUCCESS

    def send(self, topic: str, payload: Any, retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, body, qos=1, retain=retain).wait_for_publish(10)

    def wait_for(self, count: int, timeout: float = 30) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.received)} of {count} messages arrived")
                self._lock.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def gateway() -> Iterator[Gateway]:
    if reason := broker_reachable():
        skip_or_fail(reason)
    client = Gateway()
    try:
        yield client
    finally:
        client.close()


@contextmanager
def bridge_running(api_url: str, token: str, prefix: str) -> Iterator[MqttBridge]:
    """The bridge in a thread of its own, stopped (cleanly) on leaving."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    holder: list[MqttBridge] = []
    started = threading.Event()

    async def run() -> None:
        async with Publisher(f"{api_url}/api/v1", token) as publisher:
            bridge = MqttBridge(Broker.parse(BROKER), publisher, prefix, f"bridge-{prefix}")
            holder.append(bridge)
            started.set()
            await bridge.run(stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    started.wait(10)
    deadline = time.monotonic() + 10
    while not holder[0].listening.is_set():  # messages sent before it subscribed would be lost
        assert time.monotonic() < deadline, "the bridge did not subscribe"
        time.sleep(0.02)
    try:
        yield holder[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
