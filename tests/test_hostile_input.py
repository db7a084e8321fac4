"""Input a hostile or unlucky client sends: every case answers a 4xx naming what is wrong, the
same on SQLite and PostgreSQL, and nothing of it is stored."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from labhooks.serving import HEAD_BYTES_LIMIT
from labhooks.settings import Settings
from tests.api import Api, Lab, problem_fields, subscription_body
from tests.delivery_helpers import Wired, query, wire
from tests.live import LiveServer
from tests.receiver import Receiver
from tests.web_helpers import Html, web_client


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


def raw(api: Api, method: str, path: str, body: str) -> httpx.Response:
    """A body as the client wrote it, for JSON that json.dumps would never produce."""
    return api.request(method, path, content=body, headers={"content-type": "application/json"})


def count(settings: Settings, table: str, where: str, **params: Any) -> int:
    [(found,)] = query(
        settings.database_url, f"SELECT count(*) FROM {table} WHERE {where}", **params
    )
    return int(found)


NUL = "\u0000"


def test_nul_in_any_text_field_is_refused_naming_the_field(
    wired: Wired, lab: Lab, settings: Settings
) -> None:
    admin = lab.admin
    device = admin.post("/devices", {"name": f"Bal{NUL}ance", "channels": []})
    assert device.status_code == 422 and "must not contain NUL" in problem_fields(device)["name"]
    url = admin.post("/target-urls", {"url": "https://x.example.org/", "description": NUL})
    assert url.status_code == 422 and "description" in problem_fields(url)
    body = subscription_body(wired.channel_id, wired.receiver.url("/in"), description=f"a{NUL}")
    subscription = admin.post("/webhook-subscriptions", body)
    assert subscription.status_code == 422 and "description" in problem_fields(subscription)
    header = subscription_body(wired.channel_id, wired.receiver.url("/in"))
    header["headers"] = [{"key": f"X{NUL}", "value": "v"}]
    assert "headers.0.key" in problem_fields(admin.post("/webhook-subscriptions", header))
    keyed = admin.post("/events", wired.event(idempotency_key=f"k{NUL}"))
    assert keyed.status_code == 422 and "idempotency_key" in problem_fields(keyed)
    device_id = admin.post("/events", wired.event(device_id=f"dev{NUL}"))
    assert device_id.status_code == 422 and "device_id" in problem_fields(device_id)
    search = admin.get("/devices", params={"q": f"bal{NUL}"})
    assert search.status_code == 422 and "q" in problem_fields(search)
    by_id = admin.get(f"/devices/{wired.device['id']}%00")
    assert by_id.status_code == 422 and "device_id" in problem_fields(by_id)
    login = admin.as_(None).post("/tokens", {"email": f"admin{NUL}@x.example", "password": "x"})
    assert login.status_code == 422 and "email" in problem_fields(login)
    # nothing of it was stored
    assert count(settings, "devices", "organization_id = :o", o=lab.id) == 1
    assert count(settings, "target_urls", "organization_id = :o", o=lab.id) == 1
    assert count(settings, "webhook_subscriptions", "organization_id = :o", o=lab.id) == 0
    assert count(settings, "events", "organization_id = :o", o=lab.id) == 0


def test_nul_inside_event_data_is_stored_and_delivered_as_json_allows_it(wired: Wired) -> None:
    path = wired.path()
    wired.subscribe(wired.receiver.script(path))
    published = wired.publish(wired.event(value=f"S-17{NUL}tail"))
    [request] = wired.receiver.wait_for(path, 1)
    assert b"S-17\\u0000tail" in request.body  # escaped on the wire: valid JSON
    assert request.json["data"]["value"] == f"S-17{NUL}tail"
    event = wired.admin.ok("GET", f"/events/{published['event_ids'][0]}")
    assert event["payload"]["data"]["value"] == f"S-17{NUL}tail"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"value": NaN, "unit": "g"}', "data.value"),
        ('{"value": Infinity, "unit": "g"}', "data.value"),
        ('{"value": -Infinity, "unit": "g"}', "data.value"),
        ('{"value": 1e400, "unit": "g"}', "data.value"),
        ('{"value": 1, "vendor": {"drift": [0.1, NaN]}}', "data.vendor.drift.1"),
        ('{"value": "\\ud800"}', "data.value"),
        ('{"value": 1, "\\udfff": 2}', "data"),
    ],
)
def test_event_data_that_is_not_strict_json_is_refused(
    wired: Wired, settings: Settings, data: str, field: str
) -> None:
    body = (
        f'{{"device_id": "{wired.device["id"]}", "channel_key": "weight", '
        f'"type": "data_point.created", "data": {data}}}'
    )
    response = raw(wired.admin, "POST", "/events", body)
    assert response.status_code == 422, response.text
    assert field in problem_fields(response)
    assert count(settings, "events", "device_id = :d", d=wired.device["id"]) == 0


def test_text_that_is_not_unicode_is_refused(lab: Lab, settings: Settings) -> None:
    response = raw(lab.admin, "POST", "/devices", '{"name": "Balance \\ud800", "channels": []}')
    assert response.status_code == 422 and "name" in problem_fields(response)
    assert count(settings, "devices", "organization_id = :o", o=lab.id) == 0


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+01:00",  # east of UTC: before year 1 once in UTC
        "9999-12-31T23:59:59-01:00",  # west of UTC: after year 9999
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "9999-12-31T00:00:00Z",
    ],
)
def test_a_time_outside_the_window_is_refused(
    wired: Wired, settings: Settings, moment: str
) -> None:
    response = wired.admin.post("/events", wired.event(occurred_at=moment))
    assert response.status_code == 422, response.text
    assert "1970" in problem_fields(response)["occurred_at"]
    assert count(settings, "events", "device_id = :d", d=wired.device["id"]) == 0


def test_the_window_itself_is_accepted(wired: Wired) -> None:
    for moment in ("1970-01-01T00:00:00Z", "2026-06-01T12:00:00+09:00", "2026-06-01T12:00:00"):
        assert wired.admin.post("/events", wired.event(occurred_at=moment)).status_code == 202


def test_a_key_reused_for_a_different_event_is_a_conflict(wired: Wired, settings: Settings) -> None:
    first = wired.publish(wired.event(value=1, idempotency_key="scan-1"))
    again = wired.publish(wired.event(value=1, idempotency_key="scan-1"))
    assert again["duplicates"] == [True] and again["event_ids"] == first["event_ids"]
    other = wired.admin.post("/events", wired.event(value=2, idempotency_key="scan-1"))
    assert other.status_code == 409 and "idempotency_key" in problem_fields(other)
    batch = wired.admin.post(
        "/events",
        [
            wired.event(value=3, idempotency_key="scan-2"),
            wired.event(value=4, idempotency_key="scan-1"),
        ],
    )
    assert batch.status_code == 409 and "1.idempotency_key" in problem_fields(batch)
    inside = wired.admin.post(
        "/events",
        [
            wired.event(value=5, idempotency_key="scan-3"),
            wired.event(value=6, idempotency_key="scan-3"),
        ],
    )
    assert inside.status_code == 409 and "1.idempotency_key" in problem_fields(inside)
    # all or nothing: scan-2 and scan-3 were not stored
    assert count(settings, "events", "device_id = :d", d=wired.device["id"]) == 1


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:0/in", "port 0"),
        ("http://2130706433/in", "shorthand"),
        ("http://127.1/in", "shorthand"),
        ("http://0x7f.1/in", "shorthand"),
    ],
)
def test_target_urls_no_sender_could_reach_are_refused(
    lab: Lab, settings: Settings, url: str, words: str
) -> None:
    response = lab.admin.post("/target-urls", {"url": url})
    assert response.status_code == 422 and words in problem_fields(response)["url"]
    assert count(settings, "target_urls", "organization_id = :o", o=lab.id) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Big": "x" * (17 * 1024)},
        {f"X-{i}": "x" * 1000 for i in range(70)},  # 70 KB in all
        {f"X-{i}": "1" for i in range(101)},
        {"X-Huge": "x" * (1024 * 1024)},
    ],
    ids=["one over 16 KiB", "over 64 KiB in all", "over 100 headers", "1 MiB"],
)
def test_oversized_request_headers_answer_431(lab: Lab, headers: dict[str, str]) -> None:
    response = lab.admin.get("/devices", headers=headers)
    assert response.status_code == 431
    assert response.json()["code"] == "request_headers_too_large"


def test_an_integer_beyond_a_float_is_no_reading_but_travels_exactly_as_extra_data(
    wired: Wired, settings: Settings
) -> None:
    huge = "1" + "0" * 400  # JSON has no limit on integers; a float would be Infinity
    as_value = raw(wired.admin, "POST", "/events", json.dumps(wired.event()).replace("1.5", huge))
    assert as_value.status_code == 422 and "data.value" in problem_fields(as_value)
    assert count(settings, "events", "device_id = :d", d=wired.device["id"]) == 0
    path = wired.path()
    wired.subscribe(wired.receiver.script(path))
    extra = json.dumps(wired.event()).replace('"unit": "g"', f'"unit": "g", "counts": {huge}')
    assert raw(wired.admin, "POST", "/events", extra).status_code == 202
    [request] = wired.receiver.wait_for(path, 1)
    assert request.json["data"]["counts"] == int(huge)


def test_event_data_nested_deeper_than_32_levels_is_refused(
    wired: Wired, settings: Settings
) -> None:
    deep = "[" * 40 + "1" + "]" * 40
    body = json.dumps(wired.event()).replace('"unit": "g"', f'"unit": "g", "n": {deep}')
    response = raw(wired.admin, "POST", "/events", body)
    assert response.status_code == 422 and "nests deeper than 32 levels" in response.text
    assert count(settings, "events", "device_id = :d", d=wired.device["id"]) == 0


def test_replay_since_takes_a_time_without_an_offset_as_utc_and_refuses_overflow(
    wired: Wired,
) -> None:
    subscription = wired.subscribe(wired.receiver.script(wired.path()))
    replay = f"/webhook-subscriptions/{subscription['id']}/replay"
    for naive in ("2026-11-28T00:00:00", "2026-11-28"):
        assert wired.admin.post(replay, {"since": naive}).status_code == 202
    for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        response = wired.admin.post(replay, {"since": moment})
        assert response.status_code == 422 and "since" in problem_fields(response)


@pytest.mark.parametrize("name", ["   ", "\t\n"])
def test_a_name_of_blanks_is_missing_not_empty(
    lab: Lab, server_admin: Api, settings: Settings, name: str
) -> None:
    organization = server_admin.post("/organizations", {"name": name})
    assert organization.status_code == 422 and "name" in problem_fields(organization)
    device = lab.admin.post("/devices", {"name": name, "channels": []})
    assert device.status_code == 422 and "name" in problem_fields(device)
    assert count(settings, "organizations", "name = ''") == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8199/pfx/..;/outside",  # Tomcat and Spring read ..; as ..
        "http://127.0.0.1:8199/pfx/%252e%252e/outside",  # decoded twice by some servers
        "http://127.0.0.1:8199/pfx/a%252fb",
        "http://127.1.:8199/pfx/",
        "http://127.0.0.1.:8199/pfx/",
    ],
)
def test_target_urls_that_escape_a_prefix_or_disguise_a_host_are_refused(
    lab: Lab, url: str
) -> None:
    response = lab.admin.post("/target-urls", {"url": url})
    assert response.status_code == 422 and "url" in problem_fields(response)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_web_forms_refuse_hostile_fields_with_a_page_not_a_500(
    wired: Wired, server: LiveServer
) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        login = Html(anonymous.get("/login").text)
        odd_token = anonymous.post(
            "/login", data={"csrf_token": "é", "email": "x", "password": "y"}
        )
        assert odd_token.status_code == 403 and "reload the page" in odd_token.text
        long_email = "a" * 500 + "@lab.example"
        data = {"csrf_token": login.csrf(), "email": long_email, "password": "whatever"}
        assert anonymous.post("/login", data=data).status_code == 401
    with web_client(server.url, f"admin@{wired.lab.name}.example") as admin:
        form = Html(admin.get("/webhook-subscriptions/new").text)
        posted = admin.post(
            "/webhook-subscriptions/new",
            data={
                "csrf_token": form.csrf(),
                "target_url": wired.receiver.url("/in"),
                "selected": f"{wired.channel_id}\u0000|data_point.created",
            },
        )
    assert posted.status_code == 422 and "must not contain NUL" in posted.text


def test_a_request_head_far_over_the_limit_is_refused_before_it_is_read_whole(
    server: LiveServer,
) -> None:
    """The server stops reading at the limit and closes: the 431 comes back, and the server
    goes on answering."""
    head = "X-Big: " + "x" * (300 * 1024)
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n".encode())
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_large_body_arriving_with_its_head_in_one_read_is_not_taken_for_a_large_head(
    lab: Lab, server: LiveServer
) -> None:
    """A client that writes head and body at once: only the head counts towards the 431 (both
    are under their limits here, and together over the head's)."""
    body = json.dumps({"name": "x" * (server.settings.max_body_bytes - 100)}).encode()
    padding = "".join(f"X-Padding-{i}: {'p' * 15_000}\r\n" for i in range(4))  # 60 KB
    head = (
        f"POST /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {lab.admin.token}\r\n"
        f"{padding}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    assert len(head) < HEAD_BYTES_LIMIT < len(head) + len(body)
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(head.encode() + body)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 422"), answer[:200]
    assert b'"name"' in answer
