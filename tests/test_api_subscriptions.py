"""The seed's procedures through the API, and every subscription rule with the input that breaks it.

Each bad input must answer the right 4xx naming the field, and leave nothing half-saved.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import Api, Lab, problem_fields, subscription_body

HOOKS = "https://lims.example.org/hooks/"
SUBS = "/webhook-subscriptions"


@pytest.fixture
def setup(lab: Lab) -> dict[str, Any]:
    """A member with access to the weight channel of two balances, and the registered prefix."""
    member, member_id = lab.add_member()
    balance = lab.add_device("Balance Lab 1")
    ph_meter = lab.add_device(
        "pH meter 7",
        [
            {
                "key": "ph",
                "name": "pH",
                "unit": "pH",
                "trigger_events": ["data_point.created", "incident.opened"],
            }
        ],
    )
    for channel in (balance["channels"][0], ph_meter["channels"][0]):
        lab.grant(member_id, channel["id"])
    lab.register(HOOKS)
    return {"member": member, "member_id": member_id, "balance": balance, "ph": ph_meter}


def count_subscriptions(api: Api) -> int:
    return len(api.ok("GET", SUBS)["items"])


def test_seed_add_view_edit_toggle_delete(lab: Lab, setup: dict[str, Any]) -> None:
    member: Api = setup["member"]
    weight = setup["balance"]["channels"][0]["id"]
    ph = setup["ph"]["channels"][0]["id"]

    # Add: target URL, two headers, events of two devices
    created = member.ok(
        "POST",
        SUBS,
        {
            "target_url": HOOKS + "samples",
            "headers": [
                {"key": "Authorization", "value": "Bearer t0ken"},
                {"key": "X-Lab", "value": "L1"},
            ],
            "channels": [
                {"channel_id": weight, "events": ["data_point.created"]},
                {"channel_id": ph, "events": ["data_point.created", "incident.opened"]},
            ],
        },
        201,
    )
    assert created.pop("warning") is None  # only write answers carry it
    assert created["active"] is True
    assert [h["key"] for h in created["headers"]] == ["Authorization", "X-Lab"]
    assert all("value" not in h and h["masked_value"] for h in created["headers"])
    assert {c["device_name"]: c["events"] for c in created["channels"]} == {
        "Balance Lab 1": ["data_point.created"],
        "pH meter 7": ["data_point.created", "incident.opened"],
    }

    # View: the overview lists it, the detail shows it, header values never come back
    listed = member.ok("GET", SUBS)["items"]
    assert [s["id"] for s in listed] == [created["id"]]
    path = f"{SUBS}/{created['id']}"
    assert member.ok("GET", path) == created
    assert "t0ken" not in member.get(path).text

    # Edit: re-enter one value, keep another untouched, delete nothing, add a header; change URL
    edited = member.ok(
        "PUT",
        path,
        {
            "target_url": HOOKS + "samples/v2",
            "headers": [
                {"key": "Authorization", "value": "Bearer new"},
                {"key": "X-Lab"},
                {"key": "X-Extra", "value": "1"},
            ],
            "channels": [
                {"channel_id": weight, "events": ["data_point.created", "command.completed"]}
            ],
        },
    )
    assert edited["target_url"] == HOOKS + "samples/v2"
    assert [h["key"] for h in edited["headers"]] == ["Authorization", "X-Lab", "X-Extra"]
    assert edited["channels"][0]["events"] == ["data_point.created", "command.completed"]

    # Edit: delete a header with PATCH (the list given is the new list)
    patched = member.ok("PATCH", path, {"headers": [{"key": "X-Lab"}]})
    assert [h["key"] for h in patched["headers"]] == ["X-Lab"]
    assert patched["target_url"] == HOOKS + "samples/v2"  # untouched fields stay

    # (De)activate
    assert member.ok("POST", path + "/deactivate")["active"] is False
    assert member.ok("POST", path + "/activate")["active"] is True
    assert member.ok("PATCH", path, {"active": False})["active"] is False

    # Delete
    assert member.delete(path).status_code == 204
    assert member.get(path).status_code == 404
    assert count_subscriptions(member) == 0


def test_kept_header_values_are_the_stored_ones(lab: Lab, setup: dict[str, Any]) -> None:
    """A header sent without a value keeps its stored secret; a new header needs one."""
    member: Api = setup["member"]
    weight = setup["balance"]["channels"][0]["id"]
    created = member.ok("POST", SUBS, subscription_body(weight, HOOKS + "k"), 201)
    path = f"{SUBS}/{created['id']}"
    response = member.patch(path, {"headers": [{"key": "x-api-key"}, {"key": "X-New"}]})
    assert response.status_code == 422
    assert problem_fields(response) == {"headers.1.value": "enter a value for this new header"}
    # the stored value is still valid input for the size rule and kept on a no-op update
    kept = member.ok("PATCH", path, {"headers": [{"key": "X-Api-Key"}]})
    assert [h["key"] for h in kept["headers"]] == ["X-Api-Key"]


def test_secret_is_whsec_and_rotation_changes_it(lab: Lab, setup: dict[str, Any]) -> None:
    member: Api = setup["member"]
    created = member.ok(
        "POST", SUBS, subscription_body(setup["balance"]["channels"][0]["id"], HOOKS), 201
    )
    path = f"{SUBS}/{created['id']}"
    secret = member.ok("GET", path + "/secret")["key"]
    assert secret.startswith("whsec_")
    rotated = member.ok("POST", path + "/rotate-secret")["key"]
    assert rotated.startswith("whsec_") and rotated != secret
    assert member.ok("GET", path + "/secret")["key"] == rotated
    other = member.ok(
        "POST", SUBS, subscription_body(setup["balance"]["channels"][0]["id"], HOOKS), 201
    )
    assert member.ok("GET", f"{SUBS}/{other['id']}/secret")["key"] not in (secret, rotated)


BAD_INPUTS = [
    ("unregistered URL", {"target_url": "https://eln.example.org/in"}, 422, "target_url"),
    (
        "prefix matched mid-segment",
        {"target_url": "https://lims.example.org/hooksy"},
        422,
        "target_url",
    ),
    ("other scheme", {"target_url": "http://lims.example.org/hooks/a"}, 422, "target_url"),
    ("dot segments", {"target_url": HOOKS + "../admin"}, 422, "target_url"),
    ("not a URL", {"target_url": "lims"}, 422, "target_url"),
    (
        "CR/LF in a header value",
        {"headers": [{"key": "X-A", "value": "a\r\nX-Evil: 1"}]},
        422,
        "headers.0.value",
    ),
    (
        "reserved header",
        {"headers": [{"key": "X-Ok", "value": "1"}, {"key": "Webhook-Signature", "value": "v1,x"}]},
        422,
        "headers.1.key",
    ),
    ("header name with a space", {"headers": [{"key": "X A", "value": "1"}]}, 422, "headers.0.key"),
    ("new header without value", {"headers": [{"key": "X-A"}]}, 422, "headers.0.value"),
    (
        "too many headers",
        {"headers": [{"key": f"X-{i}", "value": "v"} for i in range(33)]},
        422,
        "headers",
    ),
    ("no channels", {"channels": []}, 422, "channels"),
    (
        "no events",
        {"channels": [{"channel_id": "@weight", "events": []}]},
        422,
        "channels.0.events",
    ),
    (
        "event the channel does not offer",
        {"channels": [{"channel_id": "@weight", "events": ["run.started"]}]},
        422,
        "channels.0.events.0",
    ),
    (
        "channel without access",
        {"channels": [{"channel_id": "@status", "events": ["device.status_changed"]}]},
        422,
        "channels.0.channel_id",
    ),
    (
        "another organisation's channel",
        {"channels": [{"channel_id": "@foreign", "events": ["data_point.created"]}]},
        422,
        "channels.0.channel_id",
    ),
    (
        "unknown channel id",
        {"channels": [{"channel_id": "chn_nope", "events": ["data_point.created"]}]},
        422,
        "channels.0.channel_id",
    ),
    ("negative rate limit", {"rate_limit_per_s": -1}, 422, "rate_limit_per_s"),
    ("target URL of the wrong type", {"target_url": 42}, 422, "target_url"),
]


def resolve(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return ids[value[1:]]
    if isinstance(value, list):
        return [resolve(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("change", "status", "field"), [pytest.param(c, s, f, id=n) for n, c, s, f in BAD_INPUTS]
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_saved(
    lab: Lab, other_lab: Lab, setup: dict[str, Any], change: dict[str, Any], status: int, field: str
) -> None:
    member: Api = setup["member"]
    ids = {
        "weight": setup["balance"]["channels"][0]["id"],
        "status": setup["balance"]["channels"][1]["id"],
        "foreign": other_lab.add_device()["channels"][0]["id"],
    }
    body = subscription_body(ids["weight"], HOOKS + "a") | resolve(change, ids)
    response = member.post(SUBS, body)
    assert response.status_code == status, response.text
    assert field in problem_fields(response)
    assert count_subscriptions(member) == 0

    # the same input as an update leaves the stored subscription exactly as it was
    created = member.ok("POST", SUBS, subscription_body(ids["weight"], HOOKS + "a"), 201)
    created.pop("warning")
    path = f"{SUBS}/{created['id']}"
    response = member.patch(path, resolve(change, ids))
    assert response.status_code == status, response.text
    assert field in problem_fields(response)
    assert member.ok("GET", path) == created


def test_feature_switched_off_refuses_create_and_activate_and_says_why(
    lab: Lab, setup: dict[str, Any]
) -> None:
    member: Api = setup["member"]
    body = subscription_body(setup["balance"]["channels"][0]["id"], HOOKS + "a")
    created = member.ok("POST", SUBS, body, 201)
    path = f"{SUBS}/{created['id']}"
    member.ok("POST", path + "/deactivate")
    lab.server_admin.ok("PATCH", f"/organizations/{lab.id}", {"webhooks_enabled": False})

    for response in (
        member.post(SUBS, body),
        member.post(path + "/activate"),
        member.patch(path, {"active": True}),
    ):
        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "webhooks_disabled"
        assert "server administrator" in problem["detail"]
    assert count_subscriptions(member) == 1
    assert member.ok("GET", path)["active"] is False
    # editing an inactive subscription still works; switching back on allows activation
    assert member.ok("PATCH", path, {"description": "waiting"})["description"] == "waiting"
    lab.server_admin.ok("PATCH", f"/organizations/{lab.id}", {"webhooks_enabled": True})
    assert member.ok("POST", path + "/activate")["active"] is True


def test_unregistering_a_url_deactivates_its_subscriptions_with_a_reason(
    lab: Lab, setup: dict[str, Any]
) -> None:
    member: Api = setup["member"]
    weight = setup["balance"]["channels"][0]["id"]
    exact = lab.register("https://eln.example.org/inbox")
    on_prefix = member.ok("POST", SUBS, subscription_body(weight, HOOKS + "a"), 201)
    on_exact = member.ok(
        "POST", SUBS, subscription_body(weight, "https://eln.example.org/inbox"), 201
    )

    assert lab.admin.delete(f"/target-urls/{exact['id']}").status_code == 204
    gone = member.ok("GET", f"{SUBS}/{on_exact['id']}")
    assert gone["active"] is False
    assert "https://eln.example.org/inbox" in gone["disabled_reason"]
    assert member.ok("GET", f"{SUBS}/{on_prefix['id']}")["active"] is True
    response = member.post(f"{SUBS}/{on_exact['id']}/activate")
    assert response.status_code == 409 and "target_url" in problem_fields(response)


def test_admin_sees_and_manages_every_subscription_of_the_organisation(
    lab: Lab, setup: dict[str, Any]
) -> None:
    member: Api = setup["member"]
    weight = setup["balance"]["channels"][0]["id"]
    created = member.ok("POST", SUBS, subscription_body(weight, HOOKS + "a"), 201)
    assert [s["id"] for s in lab.admin.ok("GET", SUBS)["items"]] == [created["id"]]
    # the owner's access counts: the admin may not add a channel the member cannot access
    status_channel = setup["balance"]["channels"][1]["id"]
    response = lab.admin.patch(
        f"{SUBS}/{created['id']}",
        {"channels": [{"channel_id": status_channel, "events": ["device.status_changed"]}]},
    )
    assert response.status_code == 422
    assert "owner" in problem_fields(response)["channels.0.channel_id"]
    assert lab.admin.ok("POST", f"{SUBS}/{created['id']}/deactivate")["active"] is False


def test_channel_list_shows_only_accessible_channels_and_searches_device_names(
    lab: Lab, setup: dict[str, Any]
) -> None:
    member: Api = setup["member"]
    names = {(c["device"]["name"], c["key"]) for c in member.ok("GET", "/channels")["items"]}
    assert names == {("Balance Lab 1", "weight"), ("pH meter 7", "ph")}
    found = member.get("/channels", params={"device_q": "BAL"}).json()
    assert {c["device"]["name"] for c in found["items"]} == {"Balance Lab 1"}
    assert len(lab.admin.ok("GET", "/channels")["items"]) == 3
