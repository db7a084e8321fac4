"""Many publishers at once, as a lab full of gateways is: 20 clients posting single events over
HTTP for a few seconds. Every event acknowledged (202) is delivered exactly once, under one
webhook-id, and nothing is refused on the way."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from tests.api import Lab
from tests.delivery_helpers import Wired, wire
from tests.live import LiveServer
from tests.receiver import Receiver

PUBLISHERS = 20
SECONDS = 5.0


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


def test_every_acknowledged_event_is_delivered_exactly_once(
    wired: Wired, server: LiveServer
) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path))
    acknowledged: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    until = time.monotonic() + SECONDS

    def publish(publisher: int) -> None:
        with httpx.Client(
            base_url=f"{server.url}/api/v1", headers=wired.admin.auth, timeout=30
        ) as client:
            sent = 0
            while time.monotonic() < until:
                event = wired.event(value=publisher * 1_000_000 + sent)
                response = client.post("/events", json=event)
                with lock:
                    if response.status_code == 202:
                        acknowledged.extend(response.json()["event_ids"])
                    else:
                        refused.append(f"{response.status_code} {response.text[:200]}")
                sent += 1

    publishers = [threading.Thread(target=publish, args=(n,)) for n in range(PUBLISHERS)]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join()

    assert refused == []
    assert len(acknowledged) > PUBLISHERS  # each got several through
    wired.settle(subscription["id"], "succeeded", count=len(acknowledged), timeout=120)
    received = wired.receiver.received(path)
    assert sorted(r.event_id for r in received) == sorted(acknowledged)  # each once, no other
    sent_per_id = Counter(r.headers["webhook-id"] for r in received)
    assert set(sent_per_id.values()) == {1}
