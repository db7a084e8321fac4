"""`labhooks mqtt-bridge` between Mosquitto (127.0.0.1:1883) and a live labhooks: messages
become events and signed deliveries; what cannot become an event lands on the dead-letter topic
with its reason; labhooks being away loses nothing."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from labhooks.ingestion.mqtt import NotAnEvent, check_prefix, dead_letter, to_event
from tests.api import Lab, new_lab
from tests.conftest import first_server_admin, settings_for
from tests.delivery_helpers import Wired, wire
from tests.live import LiveServer, fresh_database
from tests.mqtt_helpers import bridge_running, fresh_prefix, gateway
from tests.receiver import Receiver


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


AWAY_MESSAGES = 100


def test_topics_and_payloads_become_events_by_the_scheme() -> None:
    topic = "labhooks/dev_1/weight/data_point.created"
    event = to_event(topic, b'{"data": {"value": 2.5, "unit": "g"}}', "labhooks")
    assert isinstance(event, dict)
    assert (event["device_id"], event["channel_key"], event["type"]) == (
        "dev_1",
        "weight",
        "data_point.created",
    )
    assert event["data"] == {"value": 2.5, "unit": "g"}
    again = to_event(topic, b'{"data": {"value": 2.5, "unit": "g"}}', "labhooks")
    assert isinstance(again, dict) and again["idempotency_key"] == event["idempotency_key"]
    bare = to_event(topic, b"12.5", "labhooks")
    assert isinstance(bare, dict) and bare["data"] == {"value": 12.5}
    keyed = to_event(topic, b'{"data": {"value": 1}, "idempotency_key": "scan-9"}', "labhooks")
    assert isinstance(keyed, dict) and keyed["idempotency_key"] == "scan-9"
    for payload, code in (
        (b"{oops", "not_json"),
        (b'"S-17"', None),  # a bare string is a value too
        (b"[1, 2]", "payload"),
        (b'{"data": {"value": 1}, "colour": "red"}', "payload"),
    ):
        result = to_event(topic, payload, "labhooks")
        assert (result.code if isinstance(result, NotAnEvent) else None) == code
    off_scheme = to_event("labhooks//weight/data_point.created", b"1", "labhooks")
    assert isinstance(off_scheme, NotAnEvent) and off_scheme.code == "topic"
    for payload in (b"NaN", b"-Infinity", b'{"data": {"value": 1e999}}'):
        refused = to_event(topic, payload, "labhooks")
        assert isinstance(refused, NotAnEvent) and refused.code == "not_json", payload
    # a prefix of several levels
    levelled = to_event("site1/labhooks/dev_1/weight/data_point.created", b"1", "site1/labhooks")
    assert isinstance(levelled, dict) and levelled["device_id"] == "dev_1"
    for bad in ("site1/+", "#", "a//b", "labhooks/_dead", ""):
        with pytest.raises(ValueError, match="--prefix"):
            check_prefix(bad)
    assert dead_letter(topic, "labhooks") == "labhooks/_dead/dev_1/weight/data_point.created"


def test_a_thousand_messages_become_a_thousand_signed_deliveries(
    wired: Wired, lab: Lab, server: LiveServer
) -> None:
    path = wired.path()
    wired.subscribe(wired.receiver.script(path))
    prefix = fresh_prefix()
    topic = f"{prefix}/{wired.device['id']}/weight/data_point.created"
    with (
        gateway() as lab_gateway,
        bridge_running(server.url, lab.gateway_token(), prefix) as bridge,
    ):
        for value in range(1000):
            lab_gateway.send(topic, {"data": {"value": value, "unit": "g"}})
        received = wired.receiver.wait_for(path, 1000, timeout=120)
    assert sorted(r.json["data"]["value"] for r in received) == list(range(1000))
    assert len({r.headers["webhook-id"] for r in received}) == 1000
    assert bridge.counts["published"] == 1000 and bridge.counts["dead_lettered"] == 0


def test_what_cannot_become_an_event_is_dead_lettered_with_its_reason(
    wired: Wired, lab: Lab, server: LiveServer
) -> None:
    path = wired.path()
    wired.subscribe(wired.receiver.script(path))
    prefix = fresh_prefix()
    device = wired.device["id"]
    good = f"{prefix}/{device}/weight/data_point.created"
    cases: list[tuple[str, Any, str]] = [
        (good, b"{not json", "not_json"),
        (f"{prefix}/dev_nobody/weight/data_point.created", {"data": {"value": 1}}, "device_id"),
        (f"{prefix}/{device}/nothing/data_point.created", {"data": {"value": 1}}, "channel_key"),
        (f"{prefix}/{device}/weight/run.started", {"data": {"run_id": "r"}}, "type"),
        (good, {"data": {"value": {"nested": True}}}, "data.value"),
        (f"{prefix}/{device}/status/device.status_changed", 5, "payload"),
        (good, {"data": {"value": 1}, "extra": 1}, "payload"),
        # what JSON parsers take but strict JSON has not (each once crashed the bridge)
        (good, b'{"data": {"value": NaN}}', "not_json"),
        (good, b'{"data": {"value": 1e400}}', "not_json"),
        (good, b'{"data": {"value": "\\ud800"}}', "not_json"),
        # larger than labhooks takes in one request: refused alone, its batch goes on
        (good, {"data": {"value": 1, "note": "x" * 70_000}}, "too_large"),
    ]
    with gateway() as lab_gateway:
        lab_gateway.send(good, {"data": {"value": -1}}, retain=True)  # before: a snapshot
        lab_gateway.watch(f"{prefix}/_dead/#")
        with bridge_running(server.url, lab.gateway_token(), prefix) as bridge:
            for topic, payload, _ in cases:
                lab_gateway.send(topic, payload)
            lab_gateway.send(good, {"data": {"value": 42, "unit": "g"}})  # and one good one
            letters = lab_gateway.wait_for(len(cases))
            [delivered] = wired.receiver.wait_for(path, 1)
        lab_gateway.send(good, b"", retain=True)  # clears the retained snapshot
    assert delivered.json["data"]["value"] == 42  # not the retained -1
    assert bridge.counts["retained"] == 1
    assert len(letters) == len(cases) and bridge.counts["dead_lettered"] == len(cases)
    for (topic, payload, named), (letter_topic, raw) in zip(cases, letters, strict=True):
        letter = json.loads(raw)
        assert letter_topic == topic.replace(f"{prefix}/", f"{prefix}/_dead/", 1)
        assert letter["topic"] == topic
        sent = payload.decode() if isinstance(payload, bytes) else json.dumps(payload)
        assert letter["payload"] == sent
        problem = letter["problem"]
        fields = [e["field"] for e in problem.get("errors", [])]
        assert named in fields or problem.get("code") == named, problem


def test_labhooks_away_for_a_while_loses_none_of_the_messages(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """The server stops for 10 s while messages keep coming (ten a second); the bridge waits
    and delivers them all, once, when the server is back (on the same address)."""
    with fresh_database(database_url, tmp_path) as url:
        settings = settings_for(url, tmp_path)
        first = LiveServer(settings)
        with first, first_server_admin(first) as root:
            lab = new_lab(root)
            wired = wire(lab, receiver)
            path = wired.path()
            wired.subscribe(wired.receiver.script(path))
            token = lab.gateway_token()
        prefix = fresh_prefix()
        topic = f"{prefix}/{wired.device['id']}/weight/data_point.created"
        with gateway() as lab_gateway, bridge_running(first.url, token, prefix) as bridge:
            for value in range(AWAY_MESSAGES):  # labhooks is away for 10 s
                lab_gateway.send(topic, {"data": {"value": value}})
                time.sleep(10 / AWAY_MESSAGES)
            assert bridge.publisher.counts["retries"] >= 2  # it tried, and is waiting
            assert bridge.counts["published"] == 0
            with LiveServer(settings, port=first.port):
                received = wired.receiver.wait_for(path, AWAY_MESSAGES, timeout=90)
    assert sorted(r.json["data"]["value"] for r in received) == list(range(AWAY_MESSAGES))
    assert Counter(r.headers["webhook-id"] for r in received).most_common(1)[0][1] == 1
