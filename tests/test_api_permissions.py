"""Who may call what: every route of SPEC §7 against every kind of caller.

Callers: SA server administrator, OA the organisation's administrator, M the member who owns the
subscription under test, M2 another member of the same organisation, OB the administrator of
another organisation, PUB a publishing-only token of OA, AN nobody. Destructive calls act on a
fresh object per caller, so each expectation stands on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api import PASSWORD, Api, Lab, new_lab, subscription_body, unique

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
    )


Path = Callable[[World], str]
Body = Callable[[World], Any] | None


def expect(spec: str) -> dict[str, int]:
    pairs = dict(part.split("=") for part in spec.split())
    return {caller: int(status) for caller, status in pairs.items()}


def sub(w: World) -> str:
    return f"/webhook-subscriptions/{w.subscription_id}"


def sub_body(w: World) -> dict[str, Any]:
    return subscription_body(w.device["channels"][0]["id"], HOOKS + "a")


ROUTES: list[tuple[str, str, Path, Body, str]] = [
    (
        "GET",
        "organizations",
        lambda w: "/organizations",
        None,
        "SA=200 OA=403 M=403 OB=403 PUB=403 AN=401",
    ),
    (
        "POST",
        "organizations",
        lambda w: "/organizations",
        lambda w: {"name": unique("org")},
        "SA=201 OA=403 M=403 OB=403 PUB=403 AN=401",
    ),
    (
        "GET",
        "organization",
        lambda w: f"/organizations/{w.lab.id}",
        None,
        "SA=200 OA=200 M=200 OB=404 PUB=403 AN=401",
    ),
    (
        "PATCH",
        "organization",
        lambda w: f"/organizations/{w.lab.id}",
        lambda w: {"webhooks_enabled": True},
        "SA=200 OA=403 M=403 OB=403 PUB=403 AN=401",
    ),
    ("GET", "users", lambda w: "/users", None, "SA=200 OA=200 M=403 PUB=403 AN=401"),
    (
        "POST",
        "users",
        lambda w: "/users",
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
        "user",
        lambda w: f"/users/{w.member_id}",
        None,
        "SA=200 OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "PATCH",
        "user",
        lambda w: f"/users/{w.member_id}",
        lambda w: {"name": "Renamed"},
        "SA=200 OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    ("PATCH", "own role", lambda w: f"/users/{w.member_id}", lambda w: {"role": "admin"}, "M=403"),
    (
        "DELETE",
        "user",
        lambda w: f"/users/{w.fresh_user()}",
        None,
        "SA=204 OA=204 M=404 OB=404 PUB=403 AN=401",
    ),
    ("GET", "me", lambda w: "/me", None, "SA=200 OA=200 M=200 OB=200 PUB=403 AN=401"),
    ("GET", "target urls", lambda w: "/target-urls", None, "SA=403 OA=200 M=200 PUB=403 AN=401"),
    (
        "POST",
        "target urls",
        lambda w: "/target-urls",
        lambda w: {"url": f"https://{unique('h')}.example.org/"},
        "SA=403 OA=201 M=403 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "target url",
        lambda w: f"/target-urls/{w.fresh_target_url()}",
        None,
        "SA=403 OA=204 M=403 OB=404 PUB=403 AN=401",
    ),
    ("GET", "devices", lambda w: "/devices", None, "SA=403 OA=200 M=200 PUB=403 AN=401"),
    (
        "POST",
        "devices",
        lambda w: "/devices",
        lambda w: {"name": "pH meter", "channels": []},
        "SA=403 OA=201 M=403 PUB=403 AN=401",
    ),
    (
        "GET",
        "device",
        lambda w: f"/devices/{w.device['id']}",
        None,
        "SA=403 OA=200 M=200 OB=404 PUB=403 AN=401",
    ),
    (
        "PATCH",
        "device",
        lambda w: f"/devices/{w.device['id']}",
        lambda w: {"model": "XS205 DU"},
        "SA=403 OA=200 M=403 OB=404 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "device",
        lambda w: f"/devices/{w.fresh_device()}",
        None,
        "SA=403 OA=204 M=403 OB=404 PUB=403 AN=401",
    ),
    (
        "GET",
        "channel grants",
        lambda w: "/channel-grants",
        None,
        "SA=403 OA=200 M=403 PUB=403 AN=401",
    ),
    (
        "POST",
        "channel grants",
        lambda w: "/channel-grants",
        lambda w: {"user_id": w.fresh_user(), "channel_id": w.device["channels"][0]["id"]},
        "SA=403 OA=201 M=403 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "channel grant",
        lambda w: f"/channel-grants/{w.fresh_grant()}",
        None,
        "SA=403 OA=204 M=403 OB=404 PUB=403 AN=401",
    ),
    ("GET", "channels", lambda w: "/channels", None, "SA=403 OA=200 M=200 PUB=403 AN=401"),
    ("GET", "event types", lambda w: "/event-types", None, "SA=200 OA=200 M=200 PUB=403 AN=401"),
    (
        "GET",
        "subscriptions",
        lambda w: "/webhook-subscriptions",
        None,
        "SA=403 OA=200 M=200 M2=200 PUB=403 AN=401",
    ),
    (
        "POST",
        "subscriptions",
        lambda w: "/webhook-subscriptions",
        sub_body,
        "SA=403 OA=201 M=201 M2=422 OB=422 PUB=403 AN=401",
    ),
    ("GET", "subscription", sub, None, "SA=403 OA=200 M=200 M2=404 OB=404 PUB=403 AN=401"),
    ("PUT", "subscription", sub, sub_body, "OA=200 M=200 M2=404 OB=404 PUB=403 AN=401"),
    (
        "PATCH",
        "subscription",
        sub,
        lambda w: {"description": "d"},
        "OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "POST",
        "deactivate",
        lambda w: sub(w) + "/deactivate",
        None,
        "OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "POST",
        "activate",
        lambda w: sub(w) + "/activate",
        None,
        "OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "GET",
        "secret",
        lambda w: sub(w) + "/secret",
        None,
        "SA=403 OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "POST",
        "rotate secret",
        lambda w: sub(w) + "/rotate-secret",
        None,
        "OA=200 M=200 M2=404 OB=404 PUB=403 AN=401",
    ),
    (
        "DELETE",
        "subscription",
        lambda w: f"/webhook-subscriptions/{w.fresh_subscription()}",
        None,
        "SA=403 OA=204 M=204 M2=404 OB=404 PUB=403 AN=401",
    ),
]

CASES = [
    pytest.param(method, path, body, caller, status, id=f"{method} {name} as {caller}")
    for method, name, path, body, spec in ROUTES
    for caller, status in expect(spec).items()
]


@pytest.mark.parametrize(("method", "path", "body", "caller", "status"), CASES)
def test_permission(
    world: World, method: str, path: Path, body: Body, caller: str, status: int
) -> None:
    response = world.callers[caller].request(
        method, path(world), json=body(world) if body else None
    )
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status


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
