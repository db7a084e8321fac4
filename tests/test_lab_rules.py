"""Lab rules through the API, on both databases: thresholds open and close incidents that
arrive signed at a real receiver; holds that run out and devices that fall silent are the
worker's timer's; what a person gets wrong is named."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from labhooks.settings import Settings
from tests.api import Api, Lab, problem_fields, unique
from tests.delivery_helpers import run_sql
from tests.live import LiveServer, wait_until
from tests.receiver import Receiver

PH_METER = [
    {"key": "ph", "name": "pH", "unit": "pH", "trigger_events": ["data_point.created"]},
    {"key": "status", "name": "Status", "unit": None, "trigger_events": ["device.status_changed"]},
]


def ph_meter(lab: Lab, **extra: Any) -> dict[str, Any]:
    body = {"name": unique("pH meter"), "model": "S400", "channels": PH_METER} | extra
    return dict(lab.admin.ok("POST", "/devices", body, 201))


def thresholds_of(device: dict[str, Any]) -> str:
    return f"/devices/{device['id']}/channels/{device['channels'][0]['id']}/thresholds"


def subscribe(
    lab: Lab, receiver: Receiver, channel_id: str, events: list[str]
) -> tuple[str, dict[str, Any], str]:
    """A subscription of a fresh receiver path to `events` of the channel: (path, it, secret)."""
    lab.register(receiver.url("/"))
    path = unique("/rules").replace("-", "/")
    body = {
        "target_url": receiver.url(path),
        "channels": [{"channel_id": channel_id, "events": events}],
    }
    subscription = lab.admin.ok("POST", "/webhook-subscriptions", body, 201)
    secret = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    return path, subscription, secret


def reading(device: dict[str, Any], value: float, at: datetime) -> dict[str, Any]:
    return {
        "device_id": device["id"],
        "channel_key": "ph",
        "type": "data_point.created",
        "data": {"value": value, "unit": "pH"},
        "occurred_at": at.isoformat(),
    }


def publish(api: Api, *events: dict[str, Any]) -> None:
    response = api.post("/events", list(events))
    assert response.status_code == 202, response.text


def test_a_ph_series_crossing_a_limit_opens_one_incident_and_closes_it(
    lab: Lab, receiver: Receiver
) -> None:
    device = ph_meter(lab)
    threshold = lab.admin.ok(
        "POST",
        thresholds_of(device),
        {"level": "critical", "comparator": ">", "value": 8.5, "hysteresis": 0.2, "hold_s": 5},
        201,
    )
    channel = lab.admin.ok("GET", f"/devices/{device['id']}")["channels"][0]
    assert {"incident.opened", "incident.closed"} <= set(channel["trigger_events"])
    path, subscription, secret = subscribe(
        lab, receiver, channel["id"], ["incident.opened", "incident.closed"]
    )
    # dated ahead: the timer opens a hold that ran out by the clock, and with readings dated in
    # the past it could open this one between two requests; here the series alone decides
    t0 = datetime.now(UTC) + timedelta(minutes=10)
    series = [(8.0, 0), (8.6, 1), (8.7, 3), (8.8, 7), (8.4, 8), (8.6, 9), (8.2, 10), (8.0, 11)]
    for value, second in series:  # one request each, as a gateway posts readings
        publish(lab.admin, reading(device, value, t0 + timedelta(seconds=second)))

    opened, closed = receiver.wait_for(path, 2)
    bodies = [Webhook(secret).verify(r.body, r.headers) for r in (opened, closed)]
    assert [b["type"] for b in bodies] == ["incident.opened", "incident.closed"]
    data = bodies[0]["data"]
    assert data["device"]["id"] == device["id"] and data["channel"]["key"] == "ph"
    assert (data["level"], data["comparator"], data["threshold"], data["value"]) == (
        "critical",
        ">",
        8.5,
        8.8,  # the hold of 5 s was complete at the reading of second 7
    )
    assert bodies[1]["data"]["value"] == 8.2  # 8.4 is within the hysteresis: still open
    assert bodies[0]["data"]["incident_id"] == bodies[1]["data"]["incident_id"]
    incidents = lab.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"]
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["threshold_id"] == threshold["id"]
    assert (incident["opened_value"], incident["closed_value"]) == (8.8, 8.2)
    assert data["incident_url"] == f"/api/v1/incidents/{incident['id']}"
    # stored state, not a wait: nothing more was made than the two deliveries
    deliveries = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/deliveries")
    assert len(deliveries["items"]) == 2
    assert lab.admin.ok("GET", f"/incidents?status=open&device_id={device['id']}")["items"] == []


def test_points_of_one_batch_count_in_the_order_they_occurred(lab: Lab) -> None:
    device = ph_meter(lab)
    lab.admin.ok(
        "POST", thresholds_of(device), {"comparator": ">=", "value": 8.5, "hold_s": 4}, 201
    )
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    # given newest first: in time order they held from second 1 to second 6
    batch = [(8.9, 6), (8.2, 0), (8.5, 1), (8.7, 3)]
    publish(lab.admin, *[reading(device, v, t0 + timedelta(seconds=s)) for v, s in batch])
    # a late reading from before the hold does not close what opened
    publish(lab.admin, reading(device, 7.0, t0 + timedelta(seconds=2)))
    [incident] = lab.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"]
    assert incident["opened_value"] == 8.9 and incident["closed_at"] is None
    assert incident["opened_at"].startswith(
        (t0 + timedelta(seconds=6)).strftime("%Y-%m-%dT%H:%M:%S")
    )


def test_a_hold_that_runs_out_in_silence_opens_the_incident_by_the_timer(lab: Lab) -> None:
    device = ph_meter(lab)
    lab.admin.ok(
        "POST",
        thresholds_of(device),
        {"comparator": "outside", "value": 6, "upper": 8, "hold_s": 1},
        201,
    )
    at = datetime.now(UTC)
    publish(lab.admin, reading(device, 5.1, at))  # bad, and then nothing more
    assert lab.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"] == []

    def opened() -> list[dict[str, Any]]:
        return list(lab.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"])

    wait_until(lambda: len(opened()) == 1, "the timer to open the incident")
    incident = opened()[0]
    assert incident["opened_value"] == 5.1 and incident["upper"] == 8
    when = datetime.fromisoformat(incident["opened_at"])
    assert abs((when - at).total_seconds() - 1) < 0.01  # when the hold was complete


def test_a_device_that_falls_silent_goes_offline_and_comes_back_online(
    lab: Lab, receiver: Receiver
) -> None:
    """A 2 s heartbeat: the device publishes, stops, and is offline 4 s after its last event
    (stored as the event's time, however late the timer looked); it resumes and is online.
    One event each, counted from the stored deliveries."""
    device = ph_meter(lab, heartbeat_s=2)
    status_channel = device["channels"][1]["id"]
    path, subscription, secret = subscribe(lab, receiver, status_channel, ["device.status_changed"])
    publish(lab.admin, reading(device, 7.0, datetime.now(UTC)))
    last_seen = datetime.fromisoformat(
        lab.admin.ok("GET", f"/devices/{device['id']}")["last_seen_at"]
    )
    [offline] = receiver.wait_for(path, 1)
    body = Webhook(secret).verify(offline.body, offline.headers)
    assert (body["data"]["status"], body["data"]["previous_status"]) == ("offline", "online")
    went_offline = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert went_offline - last_seen == timedelta(seconds=4)  # within the 5 s asked
    assert lab.admin.ok("GET", f"/devices/{device['id']}")["liveness"] == "offline"
    publish(lab.admin, reading(device, 7.1, datetime.now(UTC)))
    online = receiver.wait_for(path, 2)[1]
    body = Webhook(secret).verify(online.body, online.headers)
    assert (body["data"]["status"], body["data"]["previous_status"]) == ("online", "offline")
    assert lab.admin.ok("GET", f"/devices/{device['id']}")["liveness"] == "online"
    # no longer watched (before it could fall silent again): it never goes offline again
    lab.admin.ok("PATCH", f"/devices/{device['id']}", {"heartbeat_s": None})
    assert lab.admin.ok("GET", f"/devices/{device['id']}")["liveness"] is None
    stored = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/deliveries")
    assert len(stored["items"]) == 2


def test_what_a_person_gets_wrong_is_named(lab: Lab) -> None:
    device = ph_meter(lab)
    url = thresholds_of(device)
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"comparator": "outside", "value": 8}, {"upper"}),
        ({"comparator": "outside", "value": 8, "upper": 6}, {"upper"}),
        ({"comparator": ">", "value": 8, "hysteresis": -1, "hold_s": -2}, {"hysteresis", "hold_s"}),
        ({"comparator": "=>", "value": 8}, {"comparator"}),
        ({"comparator": ">", "value": "high"}, {"value"}),
        ({"comparator": ">", "value": 8, "level": "urgent"}, {"level"}),
        # found by a hostile probe: each once crashed publishing, the timer, or never closed
        ({"comparator": ">", "value": 5, "hold_s": 1e14}, {"hold_s"}),
        ({"comparator": ">", "value": True}, {"value"}),
        ({"comparator": "<", "value": 1.7e308, "hysteresis": 1.7e308}, {"hysteresis"}),
    ]
    for body, fields in cases:
        response = lab.admin.post(url, body)
        assert response.status_code == 422 and set(problem_fields(response)) == fields, (
            body,
            response.text,
        )
    status_only = f"/devices/{device['id']}/channels/{device['channels'][1]['id']}/thresholds"
    refused = lab.admin.post(status_only, {"comparator": ">", "value": 1})
    assert refused.status_code == 422 and "channel_id" in problem_fields(refused)
    unwatchable = lab.admin.post(
        "/devices",
        {"name": unique("d"), "channels": [PH_METER[0]], "heartbeat_s": 60},
    )
    assert unwatchable.status_code == 422 and "heartbeat_s" in problem_fields(unwatchable)
    for heartbeat in (0.001, True):  # under a second it would flap; true is not a number
        flapping = lab.admin.patch(f"/devices/{device['id']}", {"heartbeat_s": heartbeat})
        assert flapping.status_code == 422 and "heartbeat_s" in problem_fields(flapping)
    member, _ = lab.add_member()
    assert member.post(url, {"comparator": ">", "value": 8}).status_code == 403
    assert lab.admin.get(f"/devices/{device['id']}/channels/chn_nope/thresholds").status_code == 404
    assert lab.admin.ok("GET", url) == []  # nothing was stored


def test_incidents_are_listed_filtered_and_acknowledged(lab: Lab) -> None:
    device = ph_meter(lab)
    threshold = lab.admin.ok(
        "POST", thresholds_of(device), {"level": "warning", "comparator": "<", "value": 6}, 201
    )
    publish(lab.admin, reading(device, 5.0, datetime.now(UTC)))
    [incident] = lab.admin.ok("GET", f"/incidents?status=open&device_id={device['id']}")["items"]
    assert lab.admin.ok("GET", f"/incidents?level=critical&device_id={device['id']}")["items"] == []
    member, _ = lab.add_member()
    acknowledge = f"/incidents/{incident['id']}/acknowledge"
    assert member.post(acknowledge, {"note": "on it"}).status_code == 403
    done = lab.admin.ok("POST", acknowledge, {"note": "  probe recalibrated  "})
    assert (
        done["acknowledged_by"] == lab.admin_id
        and done["acknowledgement_note"] == "probe recalibrated"
    )
    assert done["acknowledged_at"] is not None
    # deleting the threshold closes its open incident: nothing else could
    assert lab.admin.delete(f"/thresholds/{threshold['id']}").status_code == 204
    closed = lab.admin.ok("GET", f"/incidents/{incident['id']}")
    assert closed["closed_at"] is not None and closed["threshold_id"] is None


def test_an_open_incident_closes_when_its_channel_or_device_goes(
    lab: Lab, receiver: Receiver
) -> None:
    """Its subscribers hear it closed, with the reason, and the incident stays listed."""
    device = ph_meter(lab)
    lab.admin.ok("POST", thresholds_of(device), {"comparator": ">", "value": 8.5}, 201)
    path, _, secret = subscribe(
        lab, receiver, device["channels"][0]["id"], ["incident.opened", "incident.closed"]
    )
    publish(lab.admin, reading(device, 9.0, datetime.now(UTC)))
    [incident] = lab.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"]
    lab.admin.ok("PATCH", f"/devices/{device['id']}", {"channels": PH_METER[1:]})
    closed = receiver.wait_for(path, 2)[1]
    body = Webhook(secret).verify(closed.body, closed.headers)
    assert (body["type"], body["data"]["reason"]) == ("incident.closed", "channel removed")
    kept = lab.admin.ok("GET", f"/incidents/{incident['id']}")
    assert kept["closed_at"] is not None and kept["channel_id"] is None

    other = ph_meter(lab)
    lab.admin.ok("POST", thresholds_of(other), {"comparator": "<", "value": 6}, 201)
    publish(lab.admin, reading(other, 5.0, datetime.now(UTC)))
    [second] = lab.admin.ok("GET", f"/incidents?status=open&device_id={other['id']}")["items"]
    assert lab.admin.delete(f"/devices/{other['id']}").status_code == 204
    gone = lab.admin.ok("GET", f"/incidents/{second['id']}")
    assert gone["closed_at"] is not None and gone["device_id"] is None


def test_a_channel_with_thresholds_keeps_what_they_need(lab: Lab) -> None:
    device = ph_meter(lab)
    lab.admin.ok("POST", thresholds_of(device), {"comparator": ">", "value": 8.5}, 201)
    plain = [PH_METER[0] | {"trigger_events": ["data_point.created"]}, PH_METER[1]]
    kept = lab.admin.ok("PATCH", f"/devices/{device['id']}", {"channels": plain})
    assert {"incident.opened", "incident.closed"} <= set(kept["channels"][0]["trigger_events"])
    unjudged = [PH_METER[0] | {"trigger_events": ["command.completed"]}, PH_METER[1]]
    refused = lab.admin.patch(f"/devices/{device['id']}", {"channels": unjudged})
    assert refused.status_code == 422
    assert "channels.0.trigger_events" in problem_fields(refused)
    stored = lab.admin.ok("GET", f"/devices/{device['id']}")["channels"][0]["trigger_events"]
    assert "data_point.created" in stored  # nothing was changed


def test_a_reading_dated_ahead_does_not_blind_the_threshold(lab: Lab) -> None:
    """A device whose clock runs a day ahead sends one reading; the readings after it, dated
    by a right clock, are still judged."""
    device = ph_meter(lab)
    lab.admin.ok("POST", thresholds_of(device), {"comparator": ">", "value": 5}, 201)
    now = datetime.now(UTC)
    publish(lab.admin, reading(device, 1.0, now + timedelta(hours=23)))
    publish(lab.admin, reading(device, 9.0, now + timedelta(seconds=1)))
    [incident] = lab.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"]
    assert incident["opened_value"] == 9.0


def test_a_channel_takes_at_most_twenty_thresholds(lab: Lab) -> None:
    device = ph_meter(lab)
    for limit in range(20):
        lab.admin.ok("POST", thresholds_of(device), {"comparator": ">", "value": limit}, 201)
    refused = lab.admin.post(thresholds_of(device), {"comparator": ">", "value": 99})
    assert refused.status_code == 422 and "channel_id" in problem_fields(refused)
    assert len(lab.admin.ok("GET", thresholds_of(device))) == 20


def test_publishers_of_one_watched_device_at_once_all_succeed(lab: Lab, server: LiveServer) -> None:
    """Each publish marks the watched device seen; on PostgreSQL a lock that fought the
    events' foreign key once deadlocked them (503s)."""
    device = ph_meter(lab, heartbeat_s=30)
    statuses: list[int] = []
    start = threading.Barrier(10)

    def publisher(value: float) -> None:
        headers = {"Authorization": f"Bearer {lab.admin.token}"}
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers) as client:
            start.wait()
            for _ in range(5):
                event = reading(device, value, datetime.now(UTC))
                statuses.append(client.post("/events", json=[event]).status_code)

    threads = [threading.Thread(target=publisher, args=(7.0 + i / 10,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [202] * 50


def test_one_threshold_the_timer_cannot_judge_fails_alone(lab: Lab, settings: Settings) -> None:
    """A threshold row damaged by hand (a hold no date can hold) is logged and skipped; the
    timer still opens another one whose hold ran out."""
    damaged, healthy = ph_meter(lab), ph_meter(lab)
    bad = lab.admin.ok("POST", thresholds_of(damaged), {"comparator": ">", "value": 5}, 201)
    lab.admin.ok("POST", thresholds_of(healthy), {"comparator": ">", "value": 5, "hold_s": 1}, 201)
    publish(lab.admin, reading(damaged, 1.0, datetime.now(UTC)))
    run_sql(
        settings.database_url,
        "UPDATE thresholds SET hold_s = 1e14, status = 'holding', since = last_at, "
        "last_value = 9 WHERE id = :id",
        id=bad["id"],
    )
    publish(lab.admin, reading(healthy, 9.0, datetime.now(UTC)))

    def opened() -> list[Any]:
        return list(lab.admin.ok("GET", f"/incidents?device_id={healthy['id']}")["items"])

    try:
        wait_until(lambda: len(opened()) == 1, "the timer to open the healthy one's incident")
        assert lab.admin.ok("GET", f"/incidents?device_id={damaged['id']}")["items"] == []
    finally:  # the damage goes: the server lives on for the tests after this one
        run_sql(settings.database_url, "DELETE FROM thresholds WHERE id = :id", id=bad["id"])
