"""Who may call what: every route the API serves against every kind of caller.

Callers: SA server administrator, OA the organisation's administrator, M the member who owns the
subscription under test, M2 another member of the same organisation, OB the administrator of
another organisation, PUB a publishing-only token of OA, AN nobody. Destructive calls act on a
fresh object per caller, so each expectation stands on its own. The list of routes is checked
against the served OpenAPI document, so a new route cannot be left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api import PASSWORD, Api, Lab, new_lab, subscription_body, unique
from tests.live import LiveServer

HOOKS = "http://127.0.0.1:9/hooks/"  # a closed loopback port: deliveries fail, locally


@dataclass
class World:
    lab: Lab
    callers: dict[str, Api]
    member_id: str
    device: dict[str, Any]
    subscription_id: str
    event_id: str
    delivery_id: str
    failing_subscription_id: str  # retries nothing: its deliveries fail at the first attempt

    def event(self) -> dict[str, Any]:
        return {
            "device_id": self.device["id"],
            "channel_key": "weight",
            "type": "data_point.created",
            "data": {"value": 1},
        }

    @property
    def admin(self) -> Api:
        return self.lab.admin

    def fresh_subscription(self) -> str:
        channel = self.device["channels"][0]["id"]
        member = self.callers["M"]
        return str(
            member.ok(
                "POST", "/webhook-subscriptions", subscription_body(channel, HOOKS + "x"), 201
            )["id"]
        )

    def fresh_user(self) -> str:
        body = {"email": f"{unique('u')}@x.example", "name": "U", "password": PASSWORD}
        return str(self.admin.ok("POST", "/users", body, 201)["id"])

    def fresh_target_url(self) -> str:
        return str(self.lab.register(f"https://{unique('h')}.example.org/")["id"])

    def fresh_device(self) -> str:
        return str(self.lab.add_device()["id"])

    def fresh_grant(self) -> str:
        user = self.fresh_user()
        return str(self.lab.grant(user, self.device["channels"][1]["id"])["id"])

    def thresholds(self) -> str:
        return (
            f"/devices/{self.device['id']}/channels/{self.device['channels'][0]['id']}/thresholds"
        )

    def fresh_threshold(self) -> str:
        body = {"comparator": ">", "value": 1000}
        return str(self.admin.ok("POST", self.thresholds(), body, 201)["id"])

    def fresh_incident(self) -> str:
        """An open incident: a threshold of its own device, crossed."""
        device = self.lab.add_device()
        channel = device["channels"][0]["id"]
        path = f"/devices/{device['id']}/channels/{channel}/thresholds"
        self.admin.ok("POST", path, {"comparator": "<", "value": 0}, 201)
        self.admin.ok(
            "POST",
            "/events",
            self.event() | {"device_id": device["id"], "data": {"value": -1}},
            202,
        )
        [incident] = self.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"]
        return str(incident["id"])

    def fresh_failed_delivery(self) -> str:
        """A delivery of the failing subscription that has failed, so it may be resent."""
        event_id = self.admin.ok("POST", "/events", self.event(), 202)["event_ids"][0]
        deliveries = self.admin.ok("GET", f"/events/{event_id}")["deliveries"]
        [delivery] = [d for d in deliveries if d["subscription_id"] == self.failing_subscription_id]
        deadline = time.monotonic() + 15
        while self.admin.ok("GET", f"/deliveries/{delivery['id']}")["status"] != "failed":
            assert time.monotonic() < deadline, "the delivery did not fail"
            time.sleep(0.05)
        return str(delivery["id"])


@pytest.fixture(scope="module")
def world(server_admin: Api) -> World:
    lab = new_lab(server_admin)
    member, member_id = lab.add_member()
    other_member, _ = lab.add_member()
    other = new_lab(server_admin)
    device = lab.add_device()
    lab.register(HOOKS)
    lab.grant(member_id, device["channels"][0]["id"])
    publish_token = lab.admin.as_(None).ok(
        "POST",
        "/tokens",
        {"email": f"admin@{lab.name}.example", "password": PASSWORD, "scope": "publish"},
        201,
    )["token"]
    callers = {
        "SA": server_admin,
        "OA": lab.admin,
        "M": member,
        "M2": other_member,
        "OB": other.admin,
        "PUB": lab.admin.as_(publish_token),
        "AN": lab.admin.as_(None),
    }
    channel = device["channels"][0]["id"]
    subscription = member.ok(
        "POST", "/webhook-subscriptions", subscription_body(channel, HOOKS + "a"), 201
    )
    failing = member.ok(
        "POST",
        "/webhook-subscriptions",
        subscription_body(channel, HOOKS + "failing", retry_schedule=[0]),
        201,
    )
    published = lab.admin.ok(
        "POST",
        "/events",
        {
            "device_id": device["id"],
            "channel_key": "weight",
            "type": "data_point.created",
            "data": {"value": 1},
        },
        202,
    )
    [delivery] = member.ok("GET", f"/webhook-subscriptions/{subscription['id']}/deliveries")[
        "items"
    ]
    return World(
        lab,
        callers,
        member_id,
        device,
        subscription["id"],
        published["event_ids"][0],
        delivery["id"],
        failing["id"],
    )


Fill = Callable[[World], str]
Body = Callable[[World], Any] | None


def expect(spec: str) -> dict[str, int]:
    pairs = dict(part.split("=") for part in spec.split())
    return {caller: int(status) for caller, status in pairs.items()}


def sub_body(w: World) -> dict[str, Any]:
    return subscription_body(w.device["channels"][0]["id"], HOOKS + "a")


def the_subscription(w: World) -> str:
    return w.subscription_id


SUBSCRIPTION = "/webhook-subscriptions/{subscription_id}"
ORG_ADMIN_ONLY = "SA=403 OA=200 M=403 PUB=403 AN=401"
OWNER_OR_ADMIN = "OA=200 M=200 M2=404 OB=404 PUB=403 AN=401"
THRESHOLDS = "/devices/{device_id}/channels/{channel_id}/thresholds"

# (method, route as the API serves it under /api/v1, how to fill its path, body, who gets what)
ROUTES: list[tuple[str, str, dict[str, Fill], Body, str]] = [
    ("GET", "/organizations", {}, None, "SA=200 OA=403 M=403 OB=403 PUB=403 AN=401"),
    (
        "POST",
        "/organizations",
        {},
        lambda w: {"name": unique("org")},
        "SA=201 OA=403 M=403 OB=403 PUB=403 AN=401",
    ),
    (
        "GET",
        "/organizations/{organization_id}",
        {"organization_id": lambda w: w.lab.id},
        None,
        "SA=200 OA=200 M=200 OB=404 PUB=403 AN=401",
    ),
    (
        "PATCH",
        "/organizations/{organization_id}",
        {"organization_id": lambda w: w.lab.id},
        lambda w: {"webhooks_enabled": True},
        "SA=200 OA=403 M=403 OB=403 PUB=403 AN=401",
    ),
    ("GET", "/users", {}, None, "SA=200 OA=200 M=403 PUB=403 AN=401"),
    (
        "POST",
        "/users",
        {},
        lambda w: {
            "email": f"{unique('n')}@x.example",
            "name": "N",
            "password": PASSWORD,
            "organization_id": w.lab.id,
        },
        "SA=201 OA=201 M=403 OB=403 PUB=403 AN=401",
    ),
    (
        "GET",
        "/users/{user_id}",
        {"user_id": lambda w: w.member_id},
        None,
        "SA=200 OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "PATCH",
        "/users/{user_id}",
        {"user_id": lambda w: w.member_id},
        lambda w: {"name": "Renamed"},
        "SA=200 OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "PATCH",
        "/users/{user_id}",
        {"user_id": lambda w: w.member_id},
        lambda w: {"role": "admin"},
        "M=403",
    ),
    (
        "DELETE",
        "/users/{user_id}",
        {"user_id": lambda w: w.fresh_user()},
        None,
        "SA=204 OA=204 M=404 OB=404 PUB=403 AN=401",
    ),
    ("GET", "/me", {}, None, "SA=200 OA=200 M=200 OB=200 PUB=403 AN=401"),
    (
        "POST",
        "/tokens",  # logging in: anyone with a password; a publishing token needs an admin's
        {},
        lambda w: {"email": f"admin@{w.lab.name}.example", "password": PASSWORD},
        "SA=201 OA=201 M=201 PUB=201 AN=201",
    ),
    ("GET", "/api-tokens", {}, None, "SA=200 OA=200 M=200 OB=200 PUB=403 AN=401"),
    (
        "POST",
        "/api-tokens",  # a gateway's token: organisation administrators only
        {},
        lambda w: {"name": "gateway", "scope": "publish"},
        "SA=403 OA=201 M=403 OB=201 PUB=403 AN=401",
    ),
    (
        "POST",
        "/api-tokens",  # a script's token: anyone, for themselves
        {},
        lambda w: {"name": "script", "scope": "full"},
        "SA=201 OA=201 M=201 OB=201 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "/api-tokens/{token_id}",  # the organisation's gateway token
        {
            "token_id": lambda w: w.admin.ok(
                "POST", "/api-tokens", {"name": "gateway", "scope": "publish"}, 201
            )["id"]
        },
        None,
        "SA=404 OA=204 M=404 OB=404 PUB=403 AN=401",
    ),
    ("GET", "/target-urls", {}, None, "SA=403 OA=200 M=200 PUB=403 AN=401"),
    (
        "POST",
        "/target-urls",
        {},
        lambda w: {"url": f"https://{unique('h')}.example.org/"},
        "SA=403 OA=201 M=403 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "/target-urls/{target_url_id}",
        {"target_url_id": lambda w: w.fresh_target_url()},
        None,
        "SA=403 OA=204 M=403 OB=404 PUB=403 AN=401",
    ),
    ("GET", "/devices", {}, None, "SA=403 OA=200 M=200 PUB=403 AN=401"),
    (
        "POST",
        "/devices",
        {},
        lambda w: {"name": "pH meter", "channels": []},
        "SA=403 OA=201 M=403 PUB=403 AN=401",
    ),
    (
        "GET",
        "/devices/{device_id}",
        {"device_id": lambda w: w.device["id"]},
        None,
        "SA=403 OA=200 M=200 OB=404 PUB=403 AN=401",
    ),
    (
        "PATCH",
        "/devices/{device_id}",
        {"device_id": lambda w: w.device["id"]},
        lambda w: {"model": "XS205 DU"},
        "SA=403 OA=200 M=403 OB=404 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "/devices/{device_id}",
        {"device_id": lambda w: w.fresh_device()},
        None,
        "SA=403 OA=204 M=403 OB=404 PUB=403 AN=401",
    ),
    ("GET", "/channel-grants", {}, None, ORG_ADMIN_ONLY),
    (
        "POST",
        "/channel-grants",
        {},
        lambda w: {"user_id": w.fresh_user(), "channel_id": w.device["channels"][0]["id"]},
        "SA=403 OA=201 M=403 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "/channel-grants/{grant_id}",
        {"grant_id": lambda w: w.fresh_grant()},
        None,
        "SA=403 OA=204 M=403 OB=404 PUB=403 AN=401",
    ),
    ("GET", "/channels", {}, None, "SA=403 OA=200 M=200 PUB=403 AN=401"),
    ("GET", "/event-types", {}, None, "SA=200 OA=200 M=200 PUB=403 AN=401"),
    ("GET", "/webhook-subscriptions", {}, None, "SA=403 OA=200 M=200 M2=200 PUB=403 AN=401"),
    (
        "POST",
        "/webhook-subscriptions",
        {},
        sub_body,
        "SA=403 OA=201 M=201 M2=422 OB=422 PUB=403 AN=401",
    ),
    (
        "GET",
        SUBSCRIPTION,
        {"subscription_id": the_subscription},
        None,
        "SA=403 OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    ("PUT", SUBSCRIPTION, {"subscription_id": the_subscription}, sub_body, OWNER_OR_ADMIN),
    (
        "PATCH",
        SUBSCRIPTION,
        {"subscription_id": the_subscription},
        lambda w: {"description": "d"},
        OWNER_OR_ADMIN,
    ),
    (
        "POST",
        SUBSCRIPTION + "/deactivate",
        {"subscription_id": the_subscription},
        None,
        OWNER_OR_ADMIN,
    ),
    (
        "POST",
        SUBSCRIPTION + "/activate",
        {"subscription_id": the_subscription},
        None,
        OWNER_OR_ADMIN,
    ),
    (
        "GET",
        SUBSCRIPTION + "/secret",
        {"subscription_id": the_subscription},
        None,
        "SA=403 " + OWNER_OR_ADMIN,
    ),
    (
        "POST",
        SUBSCRIPTION + "/rotate-secret",
        {"subscription_id": the_subscription},
        None,
        OWNER_OR_ADMIN,
    ),
    (
        "GET",
        SUBSCRIPTION + "/public-key",  # open to anyone, without a token: public keys are public
        {
            "subscription_id": lambda w: w.callers["M"].ok(
                "POST",
                "/webhook-subscriptions",
                sub_body(w) | {"signature_scheme": "ed25519"},
                201,
            )["id"]
        },
        None,
        "SA=200 OA=200 M=200 M2=200 OB=200 PUB=200 AN=200",
    ),
    (
        "GET",
        SUBSCRIPTION + "/public-key",  # an hmac subscription has none: 404, as an unknown id
        {"subscription_id": the_subscription},
        None,
        "SA=404 OA=404 M=404 M2=404 OB=404 PUB=404 AN=404",
    ),
    (
        "DELETE",
        SUBSCRIPTION,
        {"subscription_id": lambda w: w.fresh_subscription()},
        None,
        "SA=403 OA=204 M=204 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "GET",
        SUBSCRIPTION + "/deliveries",
        {"subscription_id": the_subscription},
        None,
        "SA=403 " + OWNER_OR_ADMIN,
    ),
    (
        "GET",
        "/deliveries/{delivery_id}",
        {"delivery_id": lambda w: w.delivery_id},
        None,
        "SA=403 " + OWNER_OR_ADMIN,
    ),
    (
        "POST",
        "/deliveries/{delivery_id}/resend",
        {"delivery_id": lambda w: w.fresh_failed_delivery()},
        None,
        "SA=403 OA=202 M=202 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "POST",
        SUBSCRIPTION + "/replay",
        {"subscription_id": the_subscription},
        lambda w: {"since": "2026-01-01T00:00:00Z"},
        "SA=403 OA=202 M=202 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "GET",
        SUBSCRIPTION + "/test",
        {"subscription_id": the_subscription},
        None,
        "SA=403 " + OWNER_OR_ADMIN,
    ),
    (
        "POST",
        SUBSCRIPTION + "/test",
        {"subscription_id": the_subscription},
        None,
        "SA=403 OA=202 M=202 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "POST",
        "/events",
        {},
        lambda w: w.event(),
        # another organisation's device is unknown to OB: refused naming device_id
        "SA=403 OA=202 M=403 M2=403 OB=422 PUB=202 AN=401",
    ),
    (
        "GET",
        "/events/{event_id}",
        {"event_id": lambda w: w.event_id},
        None,
        "SA=403 OA=200 M=200 M2=404 OB=404 PUB=404 AN=401",  # PUB: not its event
    ),
    (
        "GET",
        THRESHOLDS,
        {
            "device_id": lambda w: w.device["id"],
            "channel_id": lambda w: w.device["channels"][0]["id"],
        },
        None,
        "SA=403 OA=200 M=200 M2=200 OB=404 PUB=403 AN=401",
    ),
    (
        "POST",
        THRESHOLDS,
        {
            "device_id": lambda w: w.device["id"],
            "channel_id": lambda w: w.device["channels"][0]["id"],
        },
        lambda w: {"comparator": ">", "value": 1000},
        "SA=403 OA=201 M=403 OB=404 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "/thresholds/{threshold_id}",
        {"threshold_id": lambda w: w.fresh_threshold()},
        None,
        "SA=403 OA=204 M=403 OB=404 PUB=403 AN=401",
    ),
    ("GET", "/incidents", {}, None, "SA=403 OA=200 M=200 PUB=403 AN=401"),
    (
        "GET",
        "/incidents/{incident_id}",
        {"incident_id": lambda w: w.fresh_incident()},
        None,
        "SA=403 OA=200 M=200 M2=200 OB=404 PUB=403 AN=401",
    ),
    (
        "POST",
        "/incidents/{incident_id}/acknowledge",
        {"incident_id": lambda w: w.fresh_incident()},
        lambda w: {"note": "on it"},
        "SA=403 OA=200 M=403 OB=404 PUB=403 AN=401",
    ),
    ("GET", "/audit-log", {}, None, "SA=200 OA=200 M=403 M2=403 OB=200 PUB=403 AN=401"),
]

CASES = [
    pytest.param(method, route, fill, body, caller, status, id=f"{method} {route} as {caller}")
    for method, route, fill, body, spec in ROUTES
    for caller, status in expect(spec).items()
]


@pytest.mark.parametrize(("method", "route", "fill", "body", "caller", "status"), CASES)
def test_permission(
    world: World,
    method: str,
    route: str,
    fill: dict[str, Fill],
    body: Body,
    caller: str,
    status: int,
) -> None:
    path = route.format(**{name: value(world) for name, value in fill.items()})
    response = world.callers[caller].request(method, path, json=body(world) if body else None)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status


def test_every_served_route_is_in_the_matrix(server: LiveServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    served = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1/")
        for method in operations
    }
    assert served == {(method, route) for method, route, *_ in ROUTES}


def test_lists_never_show_another_organisations_items(world: World, server_admin: Api) -> None:
    other = world.callers["OB"]
    mine = {
        "/users": world.member_id,
        "/devices": world.device["id"],
        "/webhook-subscriptions": world.subscription_id,
    }
    for path, foreign_id in mine.items():
        ids = {item["id"] for item in other.ok("GET", path)["items"]}
        assert foreign_id not in ids, path
    assert world.callers["M2"].ok("GET", "/webhook-subscriptions")["items"] == []
    assert world.callers["M2"].ok("GET", "/channels")["items"] == []
