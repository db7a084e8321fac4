"""`labhooks simulate`: devices that behave like real ones, set up in labhooks by name, and
their readings on their way: through MQTT into the bridge and on to a subscription."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime

import pytest
from standardwebhooks.webhooks import Webhook

from labhooks.ingestion import simulator
from labhooks.ingestion.mqtt import Broker
from tests.api import Lab, unique
from tests.live import LiveServer, wait_until
from tests.mqtt_helpers import BROKER, bridge_running, fresh_prefix, gateway
from tests.receiver import Receiver


def test_the_models_behave_like_their_devices() -> None:
    balance, ph, incubator, hplc, scanner = simulator.lab(seed=7)
    weights = [r.data for _ in range(40) for r in balance.read()]
    assert any(w["stable"] for w in weights) and not all(w["stable"] for w in weights)
    assert all(w["unit"] == "g" for w in weights)
    values = [r.data["value"] for _ in range(100) for r in ph.read()]
    assert min(values) < 7.0 < 8.5 < max(values)  # it crosses its limit
    readings = [r for _ in range(200) for r in incubator.read()]
    assert {r.data["value"] for r in readings if r.channel == "door"} == {"open", "closed"}
    runs = [r for _ in range(60) for r in hplc.read() if r.channel == "run"]
    started = Counter(r.data["run_id"] for r in runs if r.event_type == "run.started")
    completed = {
        r.data["run_id"]: r.data["outcome"] for r in runs if r.event_type == "run.completed"
    }
    assert set(completed) <= set(started) and max(started.values()) == 1
    assert set(completed.values()) <= {"succeeded", "failed"}
    barcodes = [r.data["value"] for _ in range(20) for r in scanner.read()]
    assert barcodes and all(b.startswith("S-") for b in barcodes)
    same_balance = simulator.lab(seed=7)[0]
    again = [r.data for _ in range(40) for r in same_balance.read()]
    assert again == weights  # the same seed, the same lab


def test_simulated_readings_through_mqtt_and_the_bridge_arrive_signed(
    lab: Lab, server: LiveServer, receiver: Receiver
) -> None:
    api = f"{server.url}/api/v1"
    models = simulator.lab(seed=3)
    device_ids = asyncio.run(simulator.ensure_devices(api, str(lab.admin.token), models))
    assert asyncio.run(simulator.ensure_devices(api, str(lab.admin.token), models)) == device_ids
    balance = lab.admin.ok("GET", f"/devices/{device_ids[models[0].name]}")
    lab.register(receiver.url("/"))
    path = unique("/simulated/balance")
    subscription = lab.admin.ok(
        "POST",
        "/webhook-subscriptions",
        {
            "target_url": receiver.script(path),
            "channels": [
                {"channel_id": balance["channels"][0]["id"], "events": ["data_point.created"]}
            ],
        },
        201,
    )
    secret = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    prefix = fresh_prefix()

    counted = Counter[str]()

    class Counting:
        def __init__(self, inner: simulator.Sink) -> None:
            self.inner = inner

        async def send(self, device_id: str, reading: simulator.Reading, at: datetime) -> None:
            counted[device_id] += 1
            await self.inner.send(device_id, reading, at)

    async def simulate() -> int:
        async with Broker.parse(BROKER).client(f"sim-{prefix}") as client:
            sink = Counting(simulator.MqttSink(client, prefix))
            run = simulator.Simulation(models, device_ids, sink, 200)
            await run.run(asyncio.Event(), limit=60)
            return run.sent

    with gateway(), bridge_running(server.url, lab.gateway_token(), prefix) as bridge:
        sent = asyncio.run(simulate())
        weights = counted[balance["id"]]
        received = receiver.wait_for(path, weights, timeout=30)
        wait_until(lambda: bridge.counts["published"] >= sent, "the bridge to publish all")
    assert sent == 60 and 0 < weights < sent  # the balance's readings among the others
    assert bridge.counts["published"] == sent and bridge.counts["dead_lettered"] == 0
    assert len(received) == weights
    for request in received:
        body = Webhook(secret).verify(request.body, request.headers)
        assert body["type"] == "data_point.created" and body["data"]["unit"] == "g"
        assert body["data"]["device"]["name"] == models[0].name


@pytest.mark.parametrize("via", ["nowhere"])
def test_simulate_refuses_an_unknown_way_in_one_line(via: str, tmp_path: object) -> None:
    from tests.test_cli import assert_one_line_error, run

    result = run(tmp_path, "simulate", "--token", "x", "--via", via)  # type: ignore[arg-type]
    assert_one_line_error(result, "--via")
