"""The audit log (issue 12), on SQLite and on PostgreSQL, through the API as its readers use it:
each action the issue lists leaves one entry naming who did it, what it was done to and what
changed; no secret value (signing secret, header value, password, token) is ever in an entry; a
change that is refused leaves none; organisation administrators read their own organisation's
log, server administrators every one, members none; no route changes or removes an entry; the
web page lists them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.api import PASSWORD, Api, Lab, new_lab, subscription_body, unique
from tests.conftest import SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD
from tests.live import LiveServer
from tests.test_web_security import assert_ui_page
from tests.web_helpers import PHONE, Html, log_in, web_client

HIDDEN = "(hidden)"
HOOKS = "http://127.0.0.1:9/hooks/"  # registered, never reached: nothing here is delivered
HEADER_VALUE = "k-123-very-secret"


def entries(reader: Api, **filters: str) -> list[dict[str, Any]]:
    response = reader.get("/audit-log", params={"limit": "200", **filters})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def the_entry(reader: Api, target_id: str, action: str) -> dict[str, Any]:
    [entry] = entries(reader, target_id=target_id, action=action)
    return entry


def assert_no_secrets(reader: Api, *secrets: str, **filters: str) -> None:
    """Not in any entry the reader can see, in any field: the whole answer is searched."""
    text = json.dumps(entries(reader, **filters))
    for secret in secrets:
        assert secret not in text


class Scene:
    """A lab with a device, a registered prefix and the admin's name as entries show it."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.admin = lab.admin
        self.device = lab.add_device()
        self.channel_id: str = self.device["channels"][0]["id"]
        lab.register(HOOKS)
        self.admin_name = f"Admin <admin@{lab.name}.example>"

    def subscribe(self, by: Api | None = None, **extra: Any) -> dict[str, Any]:
        body = subscription_body(self.channel_id, HOOKS + "lims", **extra)
        body["headers"] = [{"key": "X-Api-Key", "value": HEADER_VALUE}]
        return dict((by or self.admin).ok("POST", "/webhook-subscriptions", body, 201))


@pytest.fixture
def scene(lab: Lab) -> Scene:
    return Scene(lab)


# -- subscriptions ---------------------------------------------------------------------------


def test_creating_a_subscription_names_its_fields_and_hides_header_values(scene: Scene) -> None:
    member, member_id = scene.lab.add_member()
    scene.lab.grant(member_id, scene.channel_id)
    created = scene.subscribe(by=member, description="LIMS")

    entry = the_entry(scene.admin, created["id"], "subscription.created")
    member_user = scene.admin.ok("GET", f"/users/{member_id}")
    assert entry["actor"] == f"{member_user['name']} <{member_user['email']}>"
    assert entry["actor_user_id"] == member_id
    assert entry["token_id"] is not None  # done with an API token
    assert (entry["target_type"], entry["organization_id"]) == ("subscription", scene.lab.id)
    changes = entry["changes"]
    assert changes["target_url"] == [None, HOOKS + "lims"]
    assert changes["description"] == [None, "LIMS"]
    assert changes["active"] == [None, True]
    assert changes["channels"] == [None, [f"{scene.channel_id} data_point.created"]]
    assert changes["headers"] == [None, ["X-Api-Key"]]  # a header's name is not a secret
    assert changes["header:X-Api-Key"] == [None, HIDDEN]
    assert_no_secrets(scene.admin, HEADER_VALUE, PASSWORD)


def test_changing_a_subscription_records_what_changed_and_only_that(scene: Scene) -> None:
    created = scene.subscribe()
    path = f"/webhook-subscriptions/{created['id']}"
    scene.admin.ok(
        "PATCH",
        path,
        {"description": "Sample register", "headers": [{"key": "X-Api-Key", "value": "k-new-1"}]},
    )
    entry = the_entry(scene.admin, created["id"], "subscription.updated")
    assert entry["actor"] == scene.admin_name
    assert entry["changes"] == {
        "description": [None, "Sample register"],
        "header:X-Api-Key": [HIDDEN, HIDDEN],  # the value changed; neither is shown
    }

    # the header sent without a value keeps its stored one: nothing changed, nothing recorded
    scene.admin.ok("PATCH", path, {"headers": [{"key": "X-Api-Key"}]})
    scene.admin.ok("PATCH", path, {"description": "Sample register"})
    assert len(entries(scene.admin, target_id=created["id"])) == 2  # created, updated
    assert_no_secrets(scene.admin, HEADER_VALUE, "k-new-1")


def test_deactivating_and_activating_a_subscription_are_recorded(scene: Scene) -> None:
    created = scene.subscribe()
    path = f"/webhook-subscriptions/{created['id']}"
    scene.admin.ok("POST", f"{path}/deactivate")
    scene.admin.ok("POST", f"{path}/activate")
    scene.admin.ok("PATCH", path, {"active": False})  # a toggle by PATCH reads as one too

    actions = [(e["action"], e["changes"]) for e in entries(scene.admin, target_id=created["id"])]
    assert actions[:3] == [  # newest first
        ("subscription.deactivated", {"active": [True, False]}),
        ("subscription.activated", {"active": [False, True]}),
        ("subscription.deactivated", {"active": [True, False]}),
    ]
    for entry in entries(scene.admin, target_id=created["id"]):
        assert entry["actor_user_id"] == scene.lab.admin_id


def test_deleting_a_subscription_records_what_it_was(scene: Scene) -> None:
    created = scene.subscribe()
    scene.admin.ok("DELETE", f"/webhook-subscriptions/{created['id']}", expect=204)

    entry = the_entry(scene.admin, created["id"], "subscription.deleted")
    assert entry["actor"] == scene.admin_name
    assert HOOKS + "lims" in entry["summary"]
    assert entry["changes"]["target_url"] == [HOOKS + "lims", None]
    assert entry["changes"]["header:X-Api-Key"] == [HIDDEN, None]
    assert_no_secrets(scene.admin, HEADER_VALUE)


def test_rotating_a_secret_is_recorded_without_either_secret(scene: Scene) -> None:
    created = scene.subscribe()
    path = f"/webhook-subscriptions/{created['id']}"
    old = scene.admin.ok("GET", f"{path}/secret")["key"]
    new = scene.admin.ok("POST", f"{path}/rotate-secret")["key"]
    assert old.startswith("whsec_") and new != old

    entry = the_entry(scene.admin, created["id"], "subscription.secret_rotated")
    assert entry["actor"] == scene.admin_name
    assert entry["changes"] == {"secret": [HIDDEN, HIDDEN]}
    assert_no_secrets(scene.admin, old, new, old.removeprefix("whsec_"), new.removeprefix("whsec_"))


def test_revealing_a_secret_is_recorded_without_it(scene: Scene) -> None:
    member, member_id = scene.lab.add_member()
    scene.lab.grant(member_id, scene.channel_id)
    created = scene.subscribe(by=member)
    secret = member.ok("GET", f"/webhook-subscriptions/{created['id']}/secret")["key"]

    entry = the_entry(scene.admin, created["id"], "subscription.secret_revealed")
    assert entry["actor_user_id"] == member_id
    assert "signing secret" in entry["summary"]
    assert entry["changes"] is None
    assert_no_secrets(scene.admin, secret, secret.removeprefix("whsec_"))


# -- target URLs, channel access, people -----------------------------------------------------


def test_registering_and_removing_a_target_url_are_recorded(scene: Scene) -> None:
    url = "http://127.0.0.1:9/lims/exact"
    registered = scene.lab.register(url)
    entry = the_entry(scene.admin, registered["id"], "target_url.registered")
    assert (entry["actor"], entry["target_type"]) == (scene.admin_name, "target_url")
    assert entry["changes"] == {"url": [None, url]}

    scene.admin.ok("POST", "/webhook-subscriptions", subscription_body(scene.channel_id, url), 201)
    scene.admin.ok("DELETE", f"/target-urls/{registered['id']}", expect=204)
    entry = the_entry(scene.admin, registered["id"], "target_url.removed")
    assert entry["changes"] == {"url": [url, None]}
    assert "1 subscription(s) deactivated" in entry["summary"]


def test_granting_and_taking_away_channel_access_are_recorded(scene: Scene) -> None:
    _, member_id = scene.lab.add_member()
    grant = scene.lab.grant(member_id, scene.channel_id)
    entry = the_entry(scene.admin, grant["id"], "channel_grant.created")
    assert entry["actor"] == scene.admin_name
    assert entry["changes"] == {
        "user_id": [None, member_id],
        "channel_id": [None, scene.channel_id],
    }

    scene.admin.ok("DELETE", f"/channel-grants/{grant['id']}", expect=204)
    entry = the_entry(scene.admin, grant["id"], "channel_grant.deleted")
    assert entry["changes"] == {
        "user_id": [member_id, None],
        "channel_id": [scene.channel_id, None],
    }


def test_a_role_change_is_recorded_and_a_refused_one_is_not(lab: Lab) -> None:
    _, member_id = lab.add_member()
    lab.admin.ok("PATCH", f"/users/{member_id}", {"role": "admin"})
    entry = the_entry(lab.admin, member_id, "user.updated")
    assert entry["actor_user_id"] == lab.admin_id
    assert entry["changes"] == {"role": ["member", "admin"]}
    assert "role from member to admin" in entry["summary"]

    # the organisation's only administrator demoting itself is refused: rolled back, no entry
    lab.admin.ok("PATCH", f"/users/{member_id}", {"role": "member"})
    refused = lab.admin.patch(f"/users/{lab.admin_id}", {"role": "member"})
    assert refused.status_code == 409, refused.text
    assert entries(lab.admin, target_id=lab.admin_id, action="user.updated") == []


def test_a_password_change_is_recorded_as_changed_only(lab: Lab) -> None:
    _, member_id = lab.add_member()
    new_password = "another horse battery " + unique("p")
    lab.admin.ok("PATCH", f"/users/{member_id}", {"password": new_password})
    entry = the_entry(lab.admin, member_id, "user.updated")
    assert entry["changes"] == {"password": [HIDDEN, HIDDEN]}
    assert_no_secrets(lab.admin, new_password, PASSWORD)


def test_adding_and_removing_a_user_are_recorded(lab: Lab) -> None:
    email = f"{unique('ana')}@{lab.name}.example".lower()
    body = {"email": email, "name": "Ana", "password": PASSWORD, "role": "member"}
    user = lab.admin.ok("POST", "/users", body, 201)
    entry = the_entry(lab.admin, user["id"], "user.created")
    assert entry["actor_user_id"] == lab.admin_id
    assert entry["changes"] == {
        "email": [None, email],
        "name": [None, "Ana"],
        "role": [None, "member"],
        "password": [None, HIDDEN],
    }

    lab.admin.ok("DELETE", f"/users/{user['id']}", expect=204)
    entry = the_entry(lab.admin, user["id"], "user.deleted")
    assert entry["changes"] == {
        "email": [email, None],
        "name": ["Ana", None],
        "role": ["member", None],
    }
    assert_no_secrets(lab.admin, PASSWORD)


# -- devices, thresholds, incidents ------------------------------------------------------------


def test_device_changes_are_recorded(lab: Lab) -> None:
    device = lab.add_device("Balance 7")
    entry = the_entry(lab.admin, device["id"], "device.created")
    assert entry["changes"]["name"] == [None, "Balance 7"]
    assert entry["changes"]["channels"][1]["weight"] == [
        "data_point.created",
        "command.completed",
    ]

    lab.admin.ok("PATCH", f"/devices/{device['id']}", {"name": "Balance 8"})
    entry = the_entry(lab.admin, device["id"], "device.updated")
    assert entry["changes"] == {"name": ["Balance 7", "Balance 8"]}

    lab.admin.ok("DELETE", f"/devices/{device['id']}", expect=204)
    entry = the_entry(lab.admin, device["id"], "device.deleted")
    assert entry["changes"]["name"] == ["Balance 8", None]
    assert entry["actor_user_id"] == lab.admin_id


def test_setting_and_removing_a_threshold_are_recorded(scene: Scene) -> None:
    path = f"/devices/{scene.device['id']}/channels/{scene.channel_id}/thresholds"
    threshold = scene.admin.ok("POST", path, {"comparator": ">", "value": 8.5}, 201)
    entry = the_entry(scene.admin, threshold["id"], "threshold.created")
    assert entry["actor"] == scene.admin_name
    assert entry["changes"]["comparator"] == [None, ">"]
    assert entry["changes"]["value"] == [None, 8.5]
    assert entry["changes"]["channel_id"] == [None, scene.channel_id]

    scene.admin.ok("DELETE", f"/thresholds/{threshold['id']}", expect=204)
    entry = the_entry(scene.admin, threshold["id"], "threshold.deleted")
    assert entry["changes"]["value"] == [8.5, None]


def test_acknowledging_an_incident_is_recorded(scene: Scene) -> None:
    path = f"/devices/{scene.device['id']}/channels/{scene.channel_id}/thresholds"
    scene.admin.ok("POST", path, {"comparator": "<", "value": 0}, 201)
    event = {
        "device_id": scene.device["id"],
        "channel_key": "weight",
        "type": "data_point.created",
        "data": {"value": -1},
    }
    scene.admin.ok("POST", "/events", event, 202)
    [incident] = scene.admin.ok("GET", f"/incidents?device_id={scene.device['id']}")["items"]
    scene.admin.ok("POST", f"/incidents/{incident['id']}/acknowledge", {"note": "on it"})

    entry = the_entry(scene.admin, incident["id"], "incident.acknowledged")
    assert entry["actor_user_id"] == scene.lab.admin_id
    assert entry["changes"] == {
        "acknowledged_by": [None, scene.lab.admin_id],
        "note": [None, "on it"],
    }


# -- the server administrator's actions ----------------------------------------------------------


def test_the_feature_switch_is_recorded_in_the_organisations_log(
    lab: Lab, server_admin: Api
) -> None:
    server_admin.ok("PATCH", f"/organizations/{lab.id}", {"webhooks_enabled": False})
    entry = the_entry(lab.admin, lab.id, "organization.updated")  # the lab's admins read it
    assert entry["actor"].endswith(f"<{SERVER_ADMIN_EMAIL}>")
    assert entry["organization_id"] == lab.id
    assert entry["changes"] == {"webhooks_enabled": [True, False]}
    assert "Switched webhooks off" in entry["summary"]


def test_creating_an_organisation_is_the_servers_own_entry(server_admin: Api, lab: Lab) -> None:
    created = server_admin.ok("POST", "/organizations", {"name": unique("org")}, 201)
    entry = the_entry(server_admin, created["id"], "organization.created")
    assert entry["organization_id"] is None
    assert entry["changes"] == {
        "name": [None, created["name"]],
        "webhooks_enabled": [None, False],
    }
    assert entries(lab.admin, target_id=created["id"]) == []  # not any organisation's


# -- reading -------------------------------------------------------------------------------


def test_who_reads_which_entries(lab: Lab, other_lab: Lab, server_admin: Api) -> None:
    mine = lab.add_device()
    theirs = other_lab.add_device()

    seen = {e["target_id"] for e in entries(lab.admin)}
    assert mine["id"] in seen and theirs["id"] not in seen
    refused = lab.admin.get("/audit-log", params={"organization_id": other_lab.id})
    assert refused.status_code == 403, refused.text

    everything = {e["target_id"] for e in entries(server_admin)}
    assert {mine["id"], theirs["id"]} <= everything
    one = entries(server_admin, organization_id=other_lab.id)
    assert theirs["id"] in {e["target_id"] for e in one}
    assert {e["organization_id"] for e in one} == {other_lab.id}

    member, _ = lab.add_member()
    response = member.get("/audit-log")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


def test_the_log_is_paged_newest_first(lab: Lab) -> None:
    for name in ("A", "B", "C"):
        lab.add_device(f"Device {name}")
    first = lab.admin.ok("GET", "/audit-log?limit=2&action=device.created")
    second = lab.admin.ok(
        "GET", f"/audit-log?limit=2&action=device.created&cursor={first['next_cursor']}"
    )
    summaries = [e["summary"] for e in first["items"] + second["items"]]
    assert summaries == [
        "Added the device Device C",
        "Added the device Device B",
        "Added the device Device A",
    ]
    assert second["next_cursor"] is None


def test_a_bad_filter_is_named(lab: Lab) -> None:
    response = lab.admin.get("/audit-log", params={"action": "x" * 101})
    assert response.status_code == 422
    assert "action" in json.dumps(response.json()["errors"])


def test_no_route_changes_or_removes_an_entry(server: LiveServer, lab: Lab) -> None:
    lab.add_device()
    document = httpx.get(f"{server.url}/openapi.json").json()
    audit_paths = {p: ops for p, ops in document["paths"].items() if "audit" in p}
    assert {p: set(ops) for p, ops in audit_paths.items()} == {"/api/v1/audit-log": {"get"}}
    [entry, *_] = entries(lab.admin)
    for method in ("DELETE", "PATCH", "PUT"):
        assert lab.admin.request(method, f"/audit-log/{entry['id']}").status_code in (404, 405)
    assert entry in entries(lab.admin)


# -- the web page ------------------------------------------------------------------------


@pytest.fixture
def admin_page(server: LiveServer, lab: Lab) -> Iterator[httpx.Client]:
    with web_client(server.url, f"admin@{lab.name}.example") as opened:
        yield opened


def test_the_web_page_lists_the_organisations_entries(
    scene: Scene, admin_page: httpx.Client
) -> None:
    created = scene.subscribe()
    scene.admin.ok("POST", f"/webhook-subscriptions/{created['id']}/deactivate")

    response = admin_page.get("/audit")
    assert response.status_code == 200, response.text
    assert_ui_page(response)
    page = Html(response.text)
    rows = page.find("tr", "audit-list")
    texts = [row.text for row in rows if row.attrs.get("class") == "audit-entry"]
    assert "subscription.deactivated" in texts[0]
    assert "Deactivated the webhook subscription to " + HOOKS + "lims" in texts[0]
    assert "subscription.created" in texts[1] and HIDDEN in texts[1]
    assert HEADER_VALUE not in response.text
    assert any(link.attrs.get("href") == "/audit" for link in page.find("a", "more-menu"))

    narrowed = Html(admin_page.get("/audit", params={"action": "subscription.created"}).text)
    shown = [r.text for r in narrowed.find("tr", "audit-list") if r.attrs.get("class")]
    assert len(shown) == 1 and "subscription.created" in shown[0]


def test_the_web_page_refuses_members(server: LiveServer, lab: Lab) -> None:
    _, user_id = lab.add_member()
    email = lab.admin.ok("GET", f"/users/{user_id}")["email"]
    with web_client(server.url, email) as member:
        assert member.get("/audit").status_code == 403
        assert not any(
            link.attrs.get("href") == "/audit"
            for link in Html(member.get("/webhook-subscriptions").text).find("a")
        )


def test_the_web_page_shows_server_administrators_every_organisation(
    server: LiveServer, server_admin: Api
) -> None:
    lab = new_lab(server_admin)
    with web_client(server.url, SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD) as admin:
        page = Html(admin.get("/audit", params={"organization_id": lab.id}).text)
        rows = [r.text for r in page.find("tr", "audit-list") if r.attrs.get("class")]
        assert any(f"Added Admin <admin@{lab.name}.example>" in row for row in rows)
        assert all(lab.name in row for row in rows)  # the organisation column names it


@pytest.fixture
def context_options() -> dict[str, Any]:
    return {"viewport": PHONE}


def test_the_web_page_is_reached_from_the_menu_and_fits_a_phone(
    page: Page, server: LiveServer, scene: Scene, screenshots: Path
) -> None:
    created = scene.subscribe()
    scene.admin.ok("POST", f"/webhook-subscriptions/{created['id']}/rotate-secret")
    log_in(page, server.url, f"admin@{scene.lab.name}.example")
    page.locator("#more-menu summary").click()
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    newest = page.locator("#audit-list tr.audit-entry").first
    expect(newest).to_contain_text("subscription.secret_rotated")
    expect(newest).to_contain_text("(hidden) → (hidden)")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshots / "audit-log-phone.png", full_page=True)
