"""The OPC UA bridge against a LADS-shaped server on a loopback port, publishing into a live
labhooks that delivers to a real receiver: what changes on the server arrives, signed, as the
matching events; snapshots are not events; a restarted server is offline, then online, and
nothing twice."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from asyncua import ua
from standardwebhooks.webhooks import Webhook

from labhooks.ingestion.lads_server import LadsServer
from labhooks.ingestion.opcua import OpcUaBridge, lads_spec
from labhooks.ingestion.opcua_config import ConfigError, parse_config
from tests.api import Lab, unique
from tests.live import LiveServer, free_port, wait_until
from tests.receiver import Received, Receiver

T = TypeVar("T")
FAST = """
[bridge]
publishing_interval_ms = 50
reconnect_backoff_s = [0.2, 0.5]
watchdog_s = 0.3
flush_s = 5
"""


class LoopThread:
    """An event loop in a thread of its own: the OPC UA server's, or the bridge's, beside the
    synchronous test (as they would run beside each other in separate processes)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def spawn(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return self.spawn(work).result(timeout)

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def lads_server(
    *devices: tuple[str, str, list[Any], bool],
) -> Iterator[tuple[LoopThread, LadsServer]]:
    with LoopThread() as opc:
        server = LadsServer()
        for name, model, sensors, programs in devices:
            server.add_device(name, model, sensors, programs=programs)
        opc.run(server.start(free_port()))
        try:
            yield opc, server
        finally:
            opc.run(server.stop())


@contextmanager
def bridge_running(config: str, api_url: str, token: str) -> Iterator[OpcUaBridge]:
    bridge = OpcUaBridge(parse_config(FAST + config, environ={}), api_url, token)
    with LoopThread() as loop:
        stop = loop.run(_event())
        running = loop.spawn(bridge.run(stop))
        try:
            yield bridge
        finally:
            loop.loop.call_soon_threadsafe(stop.set)
            running.result(30)  # the bridge stopped by itself, and raised nothing


async def _event() -> asyncio.Event:
    return asyncio.Event()


def device_named(lab: Lab, name: str) -> dict[str, Any]:
    [device] = [d for d in lab.admin.ok("GET", f"/devices?q={name}")["items"] if d["name"] == name]
    return dict(device)


def subscribe(lab: Lab, receiver: Receiver, *devices: dict[str, Any]) -> tuple[str, str, str]:
    """A subscription to every event of every channel of `devices`: (its id, its secret,
    the receiver path it delivers to)."""
    path = unique("/opcua").replace("-", "/")
    channels = [
        {"channel_id": c["id"], "events": c["trigger_events"]}
        for d in devices
        for c in d["channels"]
    ]
    body = {"target_url": receiver.url(path), "channels": channels}
    subscription = lab.admin.ok("POST", "/webhook-subscriptions", body, 201)
    secret = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    return subscription["id"], secret, path


def summary(request: Received) -> tuple[Any, ...]:
    """What a delivery says, without what differs from run to run (ids, times, messages)."""
    body = request.json
    data = body["data"]
    fields = {
        "data_point.created": ("value", "unit"),
        "device.status_changed": ("status", "previous_status"),
        "run.started": ("run_id", "program"),
        "run.completed": ("run_id", "program", "outcome", "summary", "supervisory_job_id"),
    }[body["type"]]
    return (
        body["type"],
        data["device"]["name"],
        data["channel"]["key"],
        *(data.get(f) for f in fields),
    )


def settled(
    lab: Lab, receiver: Receiver, subscription: str, path: str, last: tuple[Any, ...]
) -> list[Received]:
    """Every delivery of the subscription, once `last` (the change made last) arrived: the
    bridge publishes in the order it saw changes, so by then labhooks stored every event the
    bridge made of what came before, and the receiver gets each of their deliveries."""
    wait_until(lambda: last in [summary(r) for r in receiver.received(path)], f"{last}")
    stored = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription}/deliveries?limit=200")
    receiver.wait_for(path, len(stored["items"]))
    received = receiver.received(path)
    assert len(received) == len(stored["items"])
    return received


def verified(secret: str, received: list[Received]) -> Counter[tuple[Any, ...]]:
    """The deliveries' summaries, each checked genuine and none twice."""
    for request in received:
        Webhook(secret).verify(request.body, request.headers)  # raises unless signed by labhooks
    assert len({r.headers["webhook-id"] for r in received}) == len(received)
    assert len({r.event_id for r in received}) == len(received)
    return Counter(summary(r) for r in received)


def test_lads_values_state_and_a_run_arrive_as_events_and_snapshots_do_not(
    server: LiveServer, lab: Lab, receiver: Receiver
) -> None:
    lab.register(receiver.url("/"))
    balance, hplc = unique("Balance"), unique("HPLC")
    with lads_server(
        (balance, "XS205", [("Weight", "g", 100.0)], False),
        (hplc, "Vanquish", [("Pressure", "bar", 5.0), ("Vial", None, "")], True),
    ) as (opc, lads):
        # made beforehand with the channels the bridge gives LADS devices (the balance without
        # its status channel): matched by name, and subscribed before the bridge starts, so a
        # snapshot taken for a change would arrive
        for name, channels in ((balance, ["weight"]), (hplc, ["pressure", "vial", "program"])):
            spec, _, _ = lads_spec(_found(opc, lads, name))
            assert [c.key for c in spec.channels] == ["status", *channels]
            made = [_channel(c) for c in spec.channels if name == hplc or c.key != "status"]
            lab.admin.ok("POST", "/devices", {"name": name, "channels": made}, 201)
        subscription, secret, path = subscribe(
            lab, receiver, device_named(lab, balance), device_named(lab, hplc)
        )
        config = f'setup_token = "{lab.admin.token}"\n[[endpoints]]\nurl = "{lads.url}"'
        with bridge_running(config, f"{server.url}/api/v1", lab.gateway_token()) as bridge:
            wait_until(lambda: bridge.status() == {lads.url: "online"}, "the bridge subscribed")
            channels = device_named(lab, balance)["channels"]
            assert sorted(c["key"] for c in channels) == ["status", "weight"]  # added, by name
            opc.run(lads.set_value(balance, "Weight", 12.5))
            opc.run(lads.set_value(balance, "Weight", 12.75))
            opc.run(lads.set_state(hplc, "Error"))
            opc.run(lads.set_state(hplc, "Operate"))
            opc.run(lads.set_value(hplc, "Pressure", 231.5))
            for _ in range(2):  # the same vial's barcode read twice: two readings
                opc.run(lads.set_value(hplc, "Vial", "V-0042"))
            opc.run(lads.start_program(hplc, "R-1001", "Assay A", supervisory_job_id="LIMS-77"))
            opc.run(lads.finish_program(hplc, "succeeded", "3 peaks, purity 99.2 %"))
            last = (
                "run.completed",
                hplc,
                "program",
                "R-1001",
                "Assay A",
                "succeeded",
                "3 peaks, purity 99.2 %",
                "LIMS-77",
            )
            received = settled(lab, receiver, subscription, path, last)
        assert bridge.counts["refused"] == 0 and bridge.counts["unmatched_devices"] == 0

    assert verified(secret, received) == Counter(
        [
            ("data_point.created", balance, "weight", 12.5, "g"),
            ("data_point.created", balance, "weight", 12.75, "g"),
            ("device.status_changed", hplc, "status", "error", "online"),
            ("device.status_changed", hplc, "status", "online", "error"),
            ("data_point.created", hplc, "pressure", 231.5, "bar"),
            ("data_point.created", hplc, "vial", "V-0042", None),
            ("data_point.created", hplc, "vial", "V-0042", None),
            ("run.started", hplc, "program", "R-1001", "Assay A"),
            last,
        ]
    )  # and neither the first weight (100.0) nor the first pressure (5.0): snapshots
    point = next(r.json for r in received if r.json["data"].get("value") == 12.5)
    assert point["data"]["measured_at"] == point["timestamp"]  # the server's source timestamp


def _found(opc: LoopThread, lads: LadsServer, name: str) -> Any:
    """What the bridge's discovery finds of the device `name` on the running server."""
    from asyncua import Client

    from labhooks.ingestion.lads import discover

    async def find() -> Any:
        async with Client(str(lads.url)) as client:
            return next(d for d in await discover(client) if d.name == name)

    return opc.run(find())


def _channel(spec: Any) -> dict[str, Any]:
    return {
        "key": spec.key,
        "name": spec.name,
        "unit": spec.unit,
        "trigger_events": list(spec.events),
    }


def test_a_restarted_server_is_offline_then_online_and_nothing_arrives_twice(
    server: LiveServer, lab: Lab, receiver: Receiver
) -> None:
    lab.register(receiver.url("/"))
    balance = unique("Balance")
    sensors = [("Weight", "g", 1.0), ("Temperature", "°C", 20.0)]
    with lads_server((balance, "XS205", sensors, True)) as (opc, lads):
        port = int(str(lads.url).rsplit(":", 1)[1].strip("/"))
        config = f'setup_token = "{lab.admin.token}"\n[[endpoints]]\nurl = "{lads.url}"'
        with bridge_running(config, f"{server.url}/api/v1", lab.gateway_token()) as bridge:
            wait_until(lambda: bridge.status() == {lads.url: "online"}, "the bridge subscribed")
            device = device_named(lab, balance)  # created by the bridge, with its channels
            keys = sorted(c["key"] for c in device["channels"])
            assert keys == ["program", "status", "temperature", "weight"]
            subscription, secret, path = subscribe(lab, receiver, device)

            opc.run(lads.set_value(balance, "Temperature", 22.0))  # and never again
            opc.run(lads.set_value(balance, "Weight", 2.0))
            receiver.wait_for(path, 2)
            opc.run(lads.stop())
            offline = ("device.status_changed", balance, "status", "offline", "online")
            wait_until(lambda: offline in [summary(r) for r in receiver.received(path)], "offline")
            opc.run(lads.set_value(balance, "Weight", 3.0))  # weighed while nobody could see
            opc.run(lads.start(port))
            wait_until(lambda: bridge.counts["reconnects"] == 1, "the bridge reconnected")
            opc.run(lads.set_value(balance, "Weight", 4.0))
            last = ("data_point.created", balance, "weight", 4.0, "g")
            received = settled(lab, receiver, subscription, path, last)
        # the bridge itself sent nothing twice (labhooks would have absorbed it: same keys)
        assert bridge.counts["refused"] == 0 and bridge.counts["duplicates"] == 0

    assert verified(secret, received) == Counter(
        [
            ("data_point.created", balance, "temperature", 22.0, "°C"),
            ("data_point.created", balance, "weight", 2.0, "g"),
            offline,
            ("device.status_changed", balance, "status", "online", "offline"),
            ("data_point.created", balance, "weight", 3.0, "g"),  # the snapshot that was news
            last,
        ]
    )  # and 22.0 once, though the restarted server reported it again as its snapshot


def test_plain_nodes_map_to_channels_and_a_publish_only_token_skips_unknown_lads_devices(
    server: LiveServer, lab: Lab, receiver: Receiver
) -> None:
    lab.register(receiver.url("/"))
    reactor = lab.add_device(
        unique("Reactor"),
        [
            {
                "key": "temperature",
                "name": "Temperature",
                "unit": "°C",
                "trigger_events": ["data_point.created"],
            },
            {
                "key": "state",
                "name": "State",
                "unit": None,
                "trigger_events": ["device.status_changed"],
            },
        ],
    )
    subscription, secret, path = subscribe(lab, receiver, reactor)
    with lads_server((unique("Unknown"), "X", [("Weight", "g")], False)) as (opc, lads):
        temperature, state = opc.run(_plain_nodes(lads))
        config = f"""
[[endpoints]]
url = "{lads.url}"

[[endpoints.nodes]]
node = "nsu=urn:test:plain;s=Reactor1.Temperature"
device_id = "{reactor["id"]}"
channel = "temperature"
unit = "°C"
deadband = 0.1

[[endpoints.nodes]]
node = "nsu=urn:test:plain;s=Reactor1.State"
device_id = "{reactor["id"]}"
channel = "state"
event = "device.status_changed"
"""
        with bridge_running(config, f"{server.url}/api/v1", lab.gateway_token()) as bridge:
            wait_until(lambda: bridge.status() == {lads.url: "online"}, "the bridge subscribed")
            for value in (20.05, 20.5):  # 20.05 is within the deadband of 20.0: no change
                opc.run(temperature.write_value(value))
            opc.run(state.write_value("Error"))
            opc.run(temperature.write_value(21.0))
            last = ("data_point.created", reactor["name"], "temperature", 21.0, "°C")
            received = settled(lab, receiver, subscription, path, last)
        assert bridge.counts["unmatched_devices"] == 1  # the LADS device, reported and skipped
        assert bridge.counts["refused"] == 0

    assert verified(secret, received) == Counter(
        [
            ("data_point.created", reactor["name"], "temperature", 20.5, "°C"),
            ("device.status_changed", reactor["name"], "state", "error", "online"),
            last,
        ]
    )


async def _plain_nodes(lads: LadsServer) -> tuple[Any, Any]:
    """A reactor as a server that is not LADS shows it: two variables in a folder."""
    server = lads.asyncua
    assert server is not None
    index = await server.register_namespace("urn:test:plain")
    folder = await server.nodes.objects.add_folder(ua.NodeId("Reactor1", index), "Reactor1")
    temperature = await folder.add_variable(
        ua.NodeId("Reactor1.Temperature", index), "Temperature", 20.0, ua.VariantType.Double
    )
    state = await folder.add_variable(ua.NodeId("Reactor1.State", index), "State", "Operate")
    return temperature, state


def test_the_config_names_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match=r"endpoints\.0\.nodes\.0\.event"):
        parse_config(
            '[[endpoints]]\nurl = "opc.tcp://h:4840"\n[[endpoints.nodes]]\n'
            'node = "ns=2;s=A"\ndevice_id = "d"\nchannel = "c"\nevent = "run.started"',
            environ={},
        )
    with pytest.raises(ConfigError, match="not a node id"):
        parse_config(
            '[[endpoints]]\nurl = "opc.tcp://h:4840"\n[[endpoints.nodes]]\n'
            'node = "garbage"\ndevice_id = "d"\nchannel = "c"',
            environ={},
        )
    with pytest.raises(ConfigError, match="deadbnd"):
        parse_config('[[endpoints]]\nurl = "opc.tcp://h:4840"\ndeadbnd = 1', environ={})
    config = parse_config('[[endpoints]]\nurl = "opc.tcp://h:4840"', {"LABHOOKS_SETUP_TOKEN": "t"})
    assert config.bridge.setup_token == "t" and config.endpoints[0].lads
    assert json.loads(json.dumps(config.model_dump()))["bridge"]["batch_size"] == 500


def test_channel_keys_come_from_function_names_and_units_part_what_they_share() -> None:
    from labhooks.ingestion.lads import FoundDevice, FoundProgram, FoundSensor

    node = ua.NodeId("n", 2)
    sensors = [
        FoundSensor("Pump A", "Pressure", node, "bar", numeric=True),
        FoundSensor("Pump B", "Pressure", node, "bar", numeric=True),
        FoundSensor("Oven", "Column Temp.", node, "°C", numeric=True),
        FoundSensor("Oven", "Status", node, None, numeric=False),
    ]
    programs = [FoundProgram("Pump A", node, None, None, None)]
    spec, sensor_keys, program_keys = lads_spec(
        FoundDevice("HPLC", "X", node, tuple(sensors), tuple(programs))
    )
    assert sensor_keys == ["pump_a.pressure", "pump_b.pressure", "column_temp", "oven.status"]
    assert program_keys == ["program"]
    assert [c.key for c in spec.channels] == ["status", *sensor_keys, "program"]
    assert {c.key: c.events for c in spec.channels}["program"] == ("run.started", "run.completed")
