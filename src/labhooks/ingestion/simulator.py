"""`labhooks simulate`: lab devices that behave like the real ones, for demos and tests.

A balance whose weight settles after a sample is put on (and says when it is stable), a pH
meter drifting across its limit, an incubator whose temperature and CO2 fall when the door
opens, an HPLC with pump pressure and runs, and a barcode scanner. Each model is plain Python
driven by a seeded random source; a `Sink` takes what they read: labhooks' API, an MQTT broker
(the topic scheme of ingestion.mqtt), or a LADS-shaped OPC UA server.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiomqtt

from labhooks.ingestion.directory import ChannelSpec, DeviceSpec, Directory
from labhooks.ingestion.lads_server import LadsServer
from labhooks.ingestion.opcua import channel_key
from labhooks.ingestion.publisher import Publisher


@dataclass(frozen=True)
class Reading:
    """What a device reports: on which channel, as which event, with what data."""

    channel: str
    event_type: str
    data: dict[str, Any]


class Model(Protocol):
    name: str
    model: str
    channels: tuple[ChannelSpec, ...]

    def read(self) -> list[Reading]:
        """What the device reports at its next tick (often one reading, sometimes none)."""
        ...


def _value(value: float, unit: str, **more: Any) -> Reading:
    return Reading("", "data_point.created", {"value": value, "unit": unit, **more})


@dataclass
class Balance:
    random: random.Random
    name: str = "Simulated balance XS205"
    model: str = "Mettler Toledo XS205 (simulated)"
    channels: tuple[ChannelSpec, ...] = (ChannelSpec("weight", "Weight", "g"),)
    _target: float = 0.0
    _shown: float = 0.0
    _ticks_on: int = 0

    def read(self) -> list[Reading]:
        if self._ticks_on == 0 or self._ticks_on > 12:  # a new sample goes on the pan
            self._target, self._ticks_on = round(self.random.uniform(0.5, 200.0), 4), 0
        self._ticks_on += 1
        noise = 0.5 * math.exp(-self._ticks_on / 2) * self.random.uniform(-1, 1)
        self._shown += (self._target - self._shown) * 0.6
        stable = abs(self._target - self._shown) < 0.001 and abs(noise) < 0.0005
        value = round(self._shown + noise, 4)
        return [
            Reading("weight", "data_point.created", {"value": value, "unit": "g", "stable": stable})
        ]


@dataclass
class PhMeter:
    random: random.Random
    name: str = "Simulated pH meter"
    model: str = "Mettler Toledo S400 (simulated)"
    channels: tuple[ChannelSpec, ...] = (ChannelSpec("ph", "pH", "pH"),)
    _phase: float = 0.0

    def read(self) -> list[Reading]:
        self._phase += 0.15
        value = 7.0 + 1.7 * math.sin(self._phase) + self.random.gauss(0, 0.03)  # crosses 8.5
        return [Reading("ph", "data_point.created", {"value": round(value, 3), "unit": "pH"})]


@dataclass
class Incubator:
    random: random.Random
    name: str = "Simulated incubator"
    model: str = "Heracell VIOS 160i (simulated)"
    channels: tuple[ChannelSpec, ...] = (
        ChannelSpec("temperature", "Temperature", "°C"),
        ChannelSpec("co2", "CO2", "%"),
        ChannelSpec("door", "Door", None),
    )
    _temperature: float = 37.0
    _co2: float = 5.0
    _door_open: int = 0  # ticks left open

    def read(self) -> list[Reading]:
        readings = []
        if self._door_open == 0 and self.random.random() < 0.05:
            self._door_open = self.random.randint(2, 5)
            readings.append(Reading("door", "data_point.created", {"value": "open"}))
        elif self._door_open == 1:
            readings.append(Reading("door", "data_point.created", {"value": "closed"}))
        if self._door_open:
            self._door_open -= 1
            self._temperature -= self.random.uniform(0.2, 0.5)
            self._co2 -= self.random.uniform(0.2, 0.6)
        else:  # the controller brings both back
            self._temperature += (37.0 - self._temperature) * 0.3 + self.random.gauss(0, 0.02)
            self._co2 += (5.0 - self._co2) * 0.3 + self.random.gauss(0, 0.01)
        readings.append(_reading("temperature", round(self._temperature, 2), "°C"))
        readings.append(_reading("co2", round(max(self._co2, 0.0), 2), "%"))
        return readings


@dataclass
class Hplc:
    random: random.Random
    name: str = "Simulated HPLC"
    model: str = "Agilent 1260 Infinity II (simulated)"
    channels: tuple[ChannelSpec, ...] = (
        ChannelSpec("pressure", "Pump pressure", "bar"),
        ChannelSpec("run", "Run", None, ("run.started", "run.completed")),
    )
    _run: int = 0
    _ticks_left: int = 0

    def read(self) -> list[Reading]:
        readings = []
        if self._ticks_left == 0:
            self._run += 1
            self._ticks_left = self.random.randint(4, 8)
            readings.append(Reading("run", "run.started", self._run_data()))
        self._ticks_left -= 1
        readings.append(_reading("pressure", round(182 + self.random.gauss(0, 2.5), 1), "bar"))
        if self._ticks_left == 0:
            outcome = "succeeded" if self.random.random() < 0.9 else "failed"
            readings.append(Reading("run", "run.completed", self._run_data(outcome=outcome)))
        return readings

    def _run_data(self, **more: str) -> dict[str, Any]:
        return {"run_id": f"RUN-{self._run:05d}", "program": "Caffeine assay v3", **more}


@dataclass
class BarcodeScanner:
    random: random.Random
    name: str = "Simulated barcode scanner"
    model: str = "Zebra DS2208 (simulated)"
    channels: tuple[ChannelSpec, ...] = (ChannelSpec("barcode", "Scanned barcode", None),)
    _scanned: int = 0

    def read(self) -> list[Reading]:
        if self.random.random() < 0.5:
            return []
        self._scanned += 1
        return [Reading("barcode", "data_point.created", {"value": f"S-{self._scanned:06d}"})]


def _reading(channel: str, value: float, unit: str) -> Reading:
    return Reading(channel, "data_point.created", {"value": value, "unit": unit})


def lab(seed: int = 1) -> list[Model]:
    """The simulated lab: one of each device, reproducible from `seed`."""
    source = random.Random(seed)  # noqa: S311 (a simulation, not a secret)
    return [
        Balance(source),
        PhMeter(source),
        Incubator(source),
        Hplc(source),
        BarcodeScanner(source),
    ]


# -- where readings go ---------------------------------------------------------------------


class Sink(Protocol):
    async def send(self, device_id: str, reading: Reading, at: datetime) -> None: ...


@dataclass
class Simulation:
    """Devices read in turn, `rate` readings per second in all, into a sink."""

    models: Sequence[Model]
    device_ids: dict[str, str]  # model name → where the sink knows it (labhooks' device id)
    sink: Sink
    rate: float
    sent: int = field(default=0)

    async def run(self, stop: asyncio.Event, limit: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for reading_device in self._readings():
            if stop.is_set() or (limit is not None and self.sent >= limit):
                return
            device, reading = reading_device
            await self.sink.send(self.device_ids[device.name], reading, datetime.now(UTC))
            self.sent += 1
            wait = started + self.sent / self.rate - loop.time()
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await stop.wait()
                except TimeoutError:
                    pass

    def _readings(self) -> Iterator[tuple[Model, Reading]]:
        while True:
            for model in self.models:
                for reading in model.read():
                    yield model, reading


class DevicesNotSetUp(Exception):
    """labhooks would not find or make a simulated device (the token may not, say)."""


async def ensure_devices(
    api_url: str, token: str, models: Sequence[Model], stop: asyncio.Event | None = None
) -> dict[str, str]:
    """The labhooks device of each model, by name, made with its channels when missing
    (which takes an organisation administrator's token). Returns name → device id. Waits while
    labhooks cannot answer, as the bridges do, until `stop` (publisher.Stopped)."""
    found: dict[str, str] = {}
    backoff = [1.0, 2.0, 5.0]
    async with Directory(api_url, token, manage=True, backoff_s=backoff, stop=stop) as directory:
        for model in models:
            device_id = await directory.device_id(
                DeviceSpec(model.name, model.model, model.channels)
            )
            if device_id is None:
                raise DevicesNotSetUp(
                    f"labhooks did not find or make the device {model.name!r} (see the log "
                    "above); the token must be an organisation administrator's"
                )
            found[model.name] = device_id
    return found


class ApiSink:
    """Readings published through labhooks' API, as a gateway would."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def send(self, device_id: str, reading: Reading, at: datetime) -> None:
        event = {
            "device_id": device_id,
            "channel_key": reading.channel,
            "type": reading.event_type,
            "data": reading.data,
            "occurred_at": at.isoformat(),
        }
        await self.publisher.publish([event])


class MqttSink:
    """Readings sent to an MQTT broker on the bridge's topic scheme, QoS 1."""

    def __init__(self, client: aiomqtt.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def send(self, device_id: str, reading: Reading, at: datetime) -> None:
        topic = f"{self.prefix}/{device_id}/{reading.channel}/{reading.event_type}"
        body = {"data": reading.data, "occurred_at": at.isoformat()}
        await self.client.publish(topic, json.dumps(body), qos=1)


class LadsSink:
    """Readings shown on a LADS-shaped OPC UA server (ingestion.lads_server), one LADS device
    per model, for `labhooks opcua-bridge` to turn into events. A sensor function is named
    after its channel, so the bridge gives it the channel's key; runs are the device's
    programs (channel `program` on the bridge's side)."""

    def __init__(self, server: LadsServer, models: Sequence[Model]) -> None:
        self.server = server
        self._functions: dict[tuple[str, str], str] = {}
        for model in models:
            sensors: list[tuple[str, str | None, Any]] = []
            for channel in model.channels:
                if set(channel.events) & {"run.started", "run.completed"}:
                    continue
                function = channel.name if channel_key(channel.name) == channel.key else channel.key
                self._functions[(model.name, channel.key)] = function
                sensors.append((function, channel.unit, 0.0 if channel.unit else ""))
            programs = any("run.started" in c.events for c in model.channels)
            server.add_device(model.name, model.model, sensors, programs=programs)

    async def send(self, device: str, reading: Reading, at: datetime) -> None:
        """`device` is the model's name: the LADS server's devices go by name."""
        data = reading.data
        if reading.event_type == "run.started":
            await self.server.start_program(device, data["run_id"], data["program"])
        elif reading.event_type == "run.completed":
            summary = f"{data['program']}: {data['outcome']}"
            await self.server.finish_program(device, data["outcome"], summary)
        else:
            function = self._functions[(device, reading.channel)]
            await self.server.set_value(device, function, data["value"])
