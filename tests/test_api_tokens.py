"""Gateway credentials: /api-tokens made by a logged-in caller, used, listed, revoked, expired,
held to one device, audited; each run on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.api import Lab, problem_fields
from tests.delivery_helpers import query, run_sql
from tests.live import LiveServer


def reading(device: dict[str, Any], value: float = 1.0) -> dict[str, Any]:
    return {
        "device_id": device["id"],
        "channel_key": "weight",
        "type": "data_point.created",
        "data": {"value": value, "unit": "g"},
    }


def gateway(lab: Lab, **extra: Any) -> dict[str, Any]:
    body = {"name": "balance gateway", "scope": "publish", **extra}
    return dict(lab.admin.ok("POST", "/api-tokens", body, 201))


def events_of(server: LiveServer, device: dict[str, Any]) -> int:
    rows = query(
        server.settings.database_url,
        "SELECT count(*) FROM events WHERE device_id = :device",
        device=device["id"],
    )
    return int(rows[0][0])


def listed(lab: Lab, token_id: str) -> dict[str, Any] | None:
    items = lab.admin.ok("GET", "/api-tokens")["items"]
    return next((t for t in items if t["id"] == token_id), None)


def test_a_publish_token_publishes_cannot_read_and_stops_the_moment_it_is_revoked(
    lab: Lab, server: LiveServer
) -> None:
    device = lab.add_device()
    created = gateway(lab)
    token = lab.admin.as_(created["token"])

    published = token.ok("POST", "/events", reading(device), 202)
    assert lab.admin.ok("GET", f"/events/{published['event_ids'][0]}")["device_id"] == device["id"]

    refused = token.get("/devices")
    assert refused.status_code == 403
    assert "only publish" in refused.json()["detail"]

    lab.admin.ok("DELETE", f"/api-tokens/{created['id']}", expect=204)
    revoked = token.post("/events", json=reading(device, 2.0))
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["detail"]
    assert events_of(server, device) == 1
    assert listed(lab, created["id"]) is None
    assert lab.admin.delete(f"/api-tokens/{created['id']}").status_code == 404


def test_the_token_is_shown_once_and_lists_never_show_it(lab: Lab) -> None:
    device = lab.add_device()
    created = gateway(lab, device_id=device["id"], expires_in_days=30)
    assert created["token"]
    shown = listed(lab, created["id"])
    assert shown is not None
    assert "token" not in shown
    assert created["token"] not in lab.admin.get("/api-tokens").text
    assert shown["scope"] == "publish"
    assert shown["device_id"] == device["id"]
    assert shown["owner_id"] == lab.admin_id
    assert shown["expires_at"] is not None
    assert shown["expired"] is False


def test_an_expired_token_answers_401_saying_it_expired(lab: Lab, server: LiveServer) -> None:
    device = lab.add_device()
    created = gateway(lab, expires_in_days=1)
    token = lab.admin.as_(created["token"])
    token.ok("POST", "/events", reading(device), 202)
    run_sql(  # its day has passed: it expired the moment it was made
        server.settings.database_url,
        "UPDATE api_tokens SET expires_at = created_at WHERE id = :id",
        id=created["id"],
    )
    expired = token.post("/events", json=reading(device, 2.0))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert events_of(server, device) == 1
    shown = listed(lab, created["id"])
    assert shown is not None and shown["expired"] is True


def test_a_token_held_to_one_device_cannot_publish_another_devices_events(
    lab: Lab, server: LiveServer
) -> None:
    balance, other = lab.add_device(), lab.add_device()
    token = lab.admin.as_(gateway(lab, device_id=balance["id"])["token"])
    token.ok("POST", "/events", reading(balance), 202)

    refused = token.post("/events", json=[reading(balance, 2.0), reading(other, 3.0)])
    assert refused.status_code == 422
    assert problem_fields(refused) == {
        "1.device_id": f"this token publishes only for device {balance['id']}"
    }
    # all or none: the batch's reading of its own device was not stored either
    assert events_of(server, balance) == 1
    assert events_of(server, other) == 0


def test_who_may_make_which_token(lab: Lab, other_lab: Lab) -> None:
    member, _ = lab.add_member()
    refused = member.post("/api-tokens", json={"name": "gw", "scope": "publish"})
    assert refused.status_code == 403
    own = member.ok("POST", "/api-tokens", {"name": "my script", "scope": "full"}, 201)
    assert member.as_(own["token"]).ok("GET", "/me")["email"].startswith("user")
    # a member sees its own tokens only; an administrator also the organisation's gateways
    gateway_token = gateway(lab)
    assert {t["id"] for t in member.ok("GET", "/api-tokens")["items"]} >= {own["id"]}
    assert gateway_token["id"] not in {t["id"] for t in member.ok("GET", "/api-tokens")["items"]}
    assert listed(lab, gateway_token["id"]) is not None
    assert listed(lab, own["id"]) is None  # a member's full token is its own business
    # another organisation's administrator cannot see or revoke it
    assert other_lab.admin.delete(f"/api-tokens/{gateway_token['id']}").status_code == 404


def test_bad_input_names_the_field(lab: Lab) -> None:
    device = lab.add_device()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"scope": "publish"}, "name"),
        ({"name": "x", "scope": "everything"}, "scope"),
        ({"name": "x", "scope": "full", "device_id": device["id"]}, "device_id"),
        ({"name": "x", "scope": "publish", "device_id": "dev_nope"}, "device_id"),
        ({"name": "x", "scope": "publish", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "scope": "publish", "expires_in_days": 0}, "expires_in_days"),
        (
            {
                "name": "x",
                "scope": "publish",
                "expires_in_days": 3,
                "expires_at": "2099-01-01T00:00:00Z",
            },
            "expires_in_days",
        ),
    ]
    cases += [
        (
            {"name": "x", "scope": "publish", "device_ids": [device["id"], device["id"]]},
            "device_ids",
        ),
        ({"name": "x", "scope": "publish", "device_ids": ["dev_nope"]}, "device_ids"),
    ]
    before = len(lab.admin.ok("GET", "/api-tokens")["items"])
    for body, field in cases:
        response = lab.admin.post("/api-tokens", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in problem_fields(response), (body, response.text)
    assert len(lab.admin.ok("GET", "/api-tokens")["items"]) == before


def test_issuing_and_revoking_are_audited_without_the_token(lab: Lab, server: LiveServer) -> None:
    created = gateway(lab)
    lab.admin.ok("DELETE", f"/api-tokens/{created['id']}", expect=204)
    rows = query(
        server.settings.database_url,
        "SELECT action, actor_user_id, summary, changes FROM audit_log "
        "WHERE target_id = :id ORDER BY id",
        id=created["id"],
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("token.issued", lab.admin_id),
        ("token.revoked", lab.admin_id),
    ]
    assert all(created["token"] not in str(r) for r in rows)


def test_device_ids_is_the_contracts_spelling_of_one_device(lab: Lab, server: LiveServer) -> None:
    balance, other = lab.add_device(), lab.add_device()
    created = gateway(lab, device_ids=[balance["id"]])
    assert created["device_id"] == balance["id"]
    assert created["device_ids"] == [balance["id"]]
    token = lab.admin.as_(created["token"])
    token.ok("POST", "/events", reading(balance), 202)
    assert token.post("/events", json=reading(other)).status_code == 422
    assert events_of(server, other) == 0
