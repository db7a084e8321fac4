"""Organisations, users, tokens, target URLs, devices, grants and paging through the API."""

from __future__ import annotations

import pytest

from tests.api import PASSWORD, Api, Lab, problem_fields, unique


def test_organisation_starts_with_webhooks_off_and_names_are_unique(server_admin: Api) -> None:
    name = unique("Org")
    created = server_admin.ok("POST", "/organizations", {"name": name}, 201)
    assert created["webhooks_enabled"] is False
    response = server_admin.post("/organizations", {"name": name})
    assert response.status_code == 409 and "name" in problem_fields(response)
    switched = server_admin.ok(
        "PATCH", f"/organizations/{created['id']}", {"webhooks_enabled": True}
    )
    assert switched == created | {"webhooks_enabled": True}


def test_users_tokens_and_me(lab: Lab, anonymous: Api) -> None:
    member, member_id = lab.add_member()
    me = member.ok("GET", "/me")
    assert me["id"] == member_id and me["role"] == "member" and me["organization_id"] == lab.id
    assert "password" not in str(me) and "hash" not in str(me)

    wrong = anonymous.post("/tokens", {"email": me["email"], "password": "nope nope"})
    assert wrong.status_code == 401
    unknown = anonymous.post("/tokens", {"email": "ghost@x.example", "password": PASSWORD})
    assert unknown.status_code == 401 and unknown.json()["detail"] == wrong.json()["detail"]
    bad_token = anonymous.as_("lh_not-a-token").get("/me")
    assert bad_token.status_code == 401 and bad_token.headers["www-authenticate"] == "Bearer"

    duplicate = lab.admin.post(
        "/users", {"email": me["email"].upper(), "name": "x", "password": PASSWORD}
    )
    assert duplicate.status_code == 409 and "email" in problem_fields(duplicate)
    short = lab.admin.post("/users", {"email": "new@x.example", "name": "x", "password": "short"})
    assert short.status_code == 422 and "password" in problem_fields(short)
    bad_email = lab.admin.post("/users", {"email": "not-mail", "name": "x", "password": PASSWORD})
    assert bad_email.status_code == 422 and "email" in problem_fields(bad_email)
    bad_role = lab.admin.post(
        "/users", {"email": "r@x.example", "name": "x", "password": PASSWORD, "role": "owner"}
    )
    assert bad_role.status_code == 422 and "role" in problem_fields(bad_role)

    # a member may change its own name and password, not its role
    unproven = member.patch(f"/users/{member_id}", {"password": "another password"})
    assert unproven.status_code == 422 and "current_password" in problem_fields(unproven)
    wrong = {"password": "another password", "current_password": "not it at all"}
    assert "current_password" in problem_fields(member.patch(f"/users/{member_id}", wrong))
    new = {"password": "another password", "current_password": PASSWORD}
    member.ok("PATCH", f"/users/{member_id}", new)
    assert member.as_(None).login(me["email"], "another password").startswith("lh_")
    # an admin promotes; an admin cannot delete itself
    assert lab.admin.ok("PATCH", f"/users/{member_id}", {"role": "admin"})["role"] == "admin"
    assert lab.admin.delete(f"/users/{lab.admin_id}").status_code == 409


def test_an_organisation_keeps_at_least_one_administrator(lab: Lab) -> None:
    only = lab.admin.patch(f"/users/{lab.admin_id}", {"role": "member"})
    assert only.status_code == 409 and "role" in problem_fields(only)
    assert "only administrator" in only.json()["detail"]
    removal = lab.server_admin.delete(f"/users/{lab.admin_id}")
    assert removal.status_code == 409 and "only administrator" in removal.json()["detail"]
    assert lab.admin.ok("GET", "/me")["role"] == "admin"

    # with a second administrator, the first may step down, and then the second is the last
    second, second_id = lab.add_member("admin")
    assert lab.admin.ok("PATCH", f"/users/{lab.admin_id}", {"role": "member"})["role"] == "member"
    assert second.patch(f"/users/{second_id}", {"role": "member"}).status_code == 409
    lab.server_admin.ok("PATCH", f"/users/{lab.admin_id}", {"role": "admin"})
    assert lab.server_admin.delete(f"/users/{second_id}").status_code == 204


def test_server_admin_must_name_an_existing_organisation_for_users(server_admin: Api) -> None:
    body = {"email": f"{unique('u')}@x.example", "name": "U", "password": PASSWORD}
    missing = server_admin.post("/users", body)
    assert missing.status_code == 422 and "organization_id" in problem_fields(missing)
    wrong = server_admin.post("/users", body | {"organization_id": "org_nope"})
    assert wrong.status_code == 422 and "organization_id" in problem_fields(wrong)


def test_deleting_a_user_deletes_its_subscriptions(lab: Lab) -> None:
    member, member_id = lab.add_member()
    device = lab.add_device()
    lab.grant(member_id, device["channels"][0]["id"])
    lab.register("https://lims.example.org/")
    member.ok(
        "POST",
        "/webhook-subscriptions",
        {
            "target_url": "https://lims.example.org/x",
            "channels": [
                {"channel_id": device["channels"][0]["id"], "events": ["data_point.created"]}
            ],
        },
        201,
    )
    assert len(lab.admin.ok("GET", "/webhook-subscriptions")["items"]) == 1
    assert lab.admin.delete(f"/users/{member_id}").status_code == 204
    assert member.get("/me").status_code == 401
    assert lab.admin.ok("GET", "/webhook-subscriptions")["items"] == []


def test_target_urls_are_canonical_and_unique(lab: Lab) -> None:
    created = lab.admin.ok(
        "POST",
        "/target-urls",
        {"url": "HTTPS://LIMS.example.org:443/in/", "description": "LIMS"},
        201,
    )
    assert created["url"] == "https://lims.example.org/in/"
    again = lab.admin.post("/target-urls", {"url": "https://lims.example.org/in/"})
    assert again.status_code == 409 and "url" in problem_fields(again)
    bad = lab.admin.post("/target-urls", {"url": "https://lims.example.org/in#x"})
    assert bad.status_code == 422 and "fragment" in problem_fields(bad)["url"]
    assert [u["url"] for u in lab.admin.ok("GET", "/target-urls")["items"]] == [
        "https://lims.example.org/in/"
    ]


def test_devices_channels_keep_ids_by_key_and_validate_events(lab: Lab) -> None:
    device = lab.add_device("HPLC 1100")
    weight = device["channels"][0]
    assert weight["id"].startswith("chn_") and weight["trigger_events"] == [
        "data_point.created",
        "command.completed",
    ]

    unknown = lab.admin.post(
        "/devices",
        {"name": "x", "channels": [{"key": "a", "name": "A", "trigger_events": ["boiled"]}]},
    )
    assert unknown.status_code == 422 and "channels.0.trigger_events.0" in problem_fields(unknown)
    twice = lab.admin.post(
        "/devices",
        {"name": "x", "channels": [{"key": "a", "name": "A"}, {"key": "a", "name": "B"}]},
    )
    assert twice.status_code == 422 and "channels.1.key" in problem_fields(twice)

    updated = lab.admin.ok(
        "PATCH",
        f"/devices/{device['id']}",
        {
            "channels": [
                {
                    "key": "weight",
                    "name": "Net weight",
                    "unit": "mg",
                    "trigger_events": ["data_point.created"],
                },
                {"key": "run", "name": "Run", "trigger_events": ["run.started"]},
            ]
        },
    )
    by_key = {c["key"]: c for c in updated["channels"]}
    assert by_key["weight"]["id"] == weight["id"] and by_key["weight"]["unit"] == "mg"
    assert set(by_key) == {"weight", "run"}
    found = lab.admin.get("/devices", params={"q": "hplc"}).json()["items"]
    assert [d["id"] for d in found] == [device["id"]]


def test_removing_an_offered_event_removes_it_from_subscriptions(lab: Lab) -> None:
    device = lab.add_device()
    weight = device["channels"][0]
    lab.register("https://lims.example.org/")
    created = lab.admin.ok(
        "POST",
        "/webhook-subscriptions",
        {
            "target_url": "https://lims.example.org/",
            "channels": [
                {"channel_id": weight["id"], "events": ["data_point.created", "command.completed"]}
            ],
        },
        201,
    )
    lab.admin.ok(
        "PATCH",
        f"/devices/{device['id']}",
        {
            "channels": [
                {"key": "weight", "name": "Weight", "trigger_events": ["data_point.created"]}
            ]
        },
    )
    after = lab.admin.ok("GET", f"/webhook-subscriptions/{created['id']}")
    assert after["channels"][0]["events"] == ["data_point.created"]


def test_grants_are_checked_and_unique(lab: Lab, other_lab: Lab) -> None:
    _, member_id = lab.add_member()
    channel = lab.add_device()["channels"][0]["id"]
    foreign_user = other_lab.add_member()[1]
    grant = lab.grant(member_id, channel)
    again = lab.admin.post("/channel-grants", {"user_id": member_id, "channel_id": channel})
    assert again.status_code == 409
    foreign = lab.admin.post("/channel-grants", {"user_id": foreign_user, "channel_id": "chn_x"})
    assert foreign.status_code == 422 and set(problem_fields(foreign)) == {"user_id", "channel_id"}
    listed = lab.admin.get("/channel-grants", params={"user_id": member_id}).json()["items"]
    assert [g["id"] for g in listed] == [grant["id"]]


def test_cursor_pagination_walks_every_item_once(lab: Lab) -> None:
    made = [lab.add_device(f"Incubator {i}")["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = lab.admin.get("/devices", params=params).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    for bad in ({"limit": 0}, {"limit": 201}, {"cursor": "%%%"}):
        response = lab.admin.get("/devices", params=bad)
        assert response.status_code == 422 and set(problem_fields(response)) <= {"limit", "cursor"}


def test_event_catalogue_serves_a_schema_per_type(lab: Lab) -> None:
    types = {t["name"]: t for t in lab.admin.ok("GET", "/event-types")["items"]}
    assert set(types) == {
        "data_point.created",
        "device.status_changed",
        "incident.opened",
        "incident.closed",
        "command.completed",
        "command.failed",
        "run.started",
        "run.completed",
    }
    assert types["device.status_changed"]["schema"]["properties"]["status"]["enum"] == [
        "online",
        "offline",
        "error",
    ]
    assert "value" in types["data_point.created"]["schema"]["required"]


@pytest.mark.parametrize(
    "path", ["/organizations/org_nope", "/devices/dev_nope", "/webhook-subscriptions/sub_nope"]
)
def test_unknown_ids_answer_a_404_problem(lab: Lab, server_admin: Api, path: str) -> None:
    caller = server_admin if path.startswith("/organizations") else lab.admin
    response = caller.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Not Found"
