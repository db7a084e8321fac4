"""The organisation page as issue 13 asks: devices added with several channels, edited and
deleted; users' roles changed and users removed (after a confirmation, never oneself); "Add
user" proposes a member.

Runs on SQLite only, as test_web_ui.py does; screenshots go to a temporary folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.api import Lab
from tests.conftest import SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD
from tests.delivery_helpers import wire
from tests.live import LiveServer
from tests.receiver import Receiver
from tests.web_helpers import PHONE, Html, log_in, web_client

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def open_organisation(page: Page, server: LiveServer, lab: Lab) -> None:
    log_in(page, server.url, f"admin@{lab.name}.example")
    page.get_by_text("More", exact=True).click()
    page.get_by_role("link", name="Organisation").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(lab.name)


def fill_channel(page: Page, index: int, key: str, name: str, unit: str, events: list[str]) -> None:
    row = page.locator(".channel-row").nth(index)
    row.get_by_label("Key").fill(key)
    row.get_by_label("Name").fill(name)
    row.get_by_label("Unit").fill(unit)
    for event in events:
        row.get_by_role("checkbox", name=re.compile(f"^{re.escape(event)}")).check()


def channels_of(lab: Lab, name: str) -> list[tuple[str, str, list[str]]]:
    [device] = [d for d in lab.admin.ok("GET", "/devices")["items"] if d["name"] == name]
    return [(c["key"], c["name"], c["trigger_events"]) for c in device["channels"]]


def test_a_device_is_added_with_several_channels_then_edited_and_deleted(
    page: Page, server: LiveServer, lab: Lab, screenshots: Path
) -> None:
    open_organisation(page, server, lab)
    devices = page.locator("#devices")
    devices.get_by_label("Device name").fill("Plate reader Spark")
    devices.get_by_label("Model").fill("Spark 10M")
    fill_channel(page, 0, "od", "Optical density", "", ["run.completed"])
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator(".channel-row")).to_have_count(2)
    expect(page.locator(".channel-row").nth(1).get_by_label("Key")).to_be_focused()
    fill_channel(page, 1, "temp", "Temperature", "°C", ["data_point.created", "incident.opened"])
    page.get_by_role("button", name="Add device").click()
    expect(page.get_by_role("status")).to_have_text("Device Plate reader Spark added.")
    assert channels_of(lab, "Plate reader Spark") == [
        ("od", "Optical density", ["run.completed"]),
        ("temp", "Temperature", ["data_point.created", "incident.opened"]),
    ]
    page.screenshot(path=screenshots / "organization.png", full_page=True)

    # edit: rename, drop a channel, add one; a bad key is refused beside it, the rest kept
    page.get_by_role("link", name="Edit Plate reader Spark").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit device Plate reader Spark")
    expect(page.locator(".channel-row")).to_have_count(2)
    page.get_by_label("Device name").fill("Plate reader Spark 2")
    page.locator(".channel-row").nth(1).get_by_role("button", name="Remove channel").click()
    expect(page.locator(".channel-row")).to_have_count(1)
    page.get_by_role("button", name="Add channel").click()
    fill_channel(page, 1, "lum inescence", "Luminescence", "RLU", ["data_point.created"])
    page.get_by_role("button", name="Save device").click()
    key = page.locator(".channel-row").nth(1).get_by_label("Key")
    expect(key).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".channel-row").nth(1).locator(".field-error")).to_contain_text(
        "letters, digits"
    )
    expect(key).to_have_value("lum inescence")
    expect(page.get_by_label("Device name")).to_have_value("Plate reader Spark 2")
    expect(key).to_be_focused()
    page.screenshot(path=screenshots / "device-edit-error.png", full_page=True)
    key.fill("lum")
    page.get_by_role("button", name="Save device").click()
    expect(page.get_by_role("status")).to_have_text("Device Plate reader Spark 2 saved.")
    assert channels_of(lab, "Plate reader Spark 2") == [
        ("od", "Optical density", ["run.completed"]),
        ("lum", "Luminescence", ["data_point.created"]),
    ]

    # delete, after a confirmation (dismissed first: nothing happens)
    delete = page.get_by_role("button", name="Delete Plate reader Spark 2")
    page.once("dialog", lambda dialog: dialog.dismiss())
    delete.click()
    expect(page.locator("#devices")).to_contain_text("Plate reader Spark 2")
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    delete.click()
    expect(page.get_by_role("status")).to_have_text("Device Plate reader Spark 2 deleted.")
    assert "Plate reader Spark 2" in messages[0]
    assert not [d for d in lab.admin.ok("GET", "/devices")["items"] if "Spark" in d["name"]]


def test_a_device_form_without_a_name_says_so_and_never_fails(
    page: Page, server: LiveServer, lab: Lab
) -> None:
    open_organisation(page, server, lab)
    fill_channel(page, 0, "od", "Optical density", "", ["run.completed"])
    page.get_by_role("button", name="Add device").click()
    expect(page.locator("#device-name-error")).to_be_visible()
    expect(page.get_by_label("Device name")).to_be_focused()
    expect(page.locator(".channel-row").nth(0).get_by_label("Key")).to_have_value("od")
    expect(
        page.locator(".channel-row").nth(0).get_by_role("checkbox", name=re.compile("^run.comp"))
    ).to_be_checked()


def test_roles_change_and_users_are_removed_but_never_oneself(
    page: Page, server: LiveServer, lab: Lab
) -> None:
    _, member_id = lab.add_member()
    name = lab.admin.ok("GET", f"/users/{member_id}")["name"]
    open_organisation(page, server, lab)
    expect(page.locator("#user-role")).to_have_value("member")  # "Add user" proposes a member
    users = page.locator("#users")
    row = users.locator("tbody tr", has_text=name)

    row.get_by_label(f"Role of {name}", exact=True).select_option("admin")
    row.get_by_role("button", name=f"Save role of {name}").click()
    expect(page.get_by_role("status")).to_have_text(f"{name} is now admin.")
    assert lab.admin.ok("GET", f"/users/{member_id}")["role"] == "admin"

    # the administrator's own row offers neither a role change nor removal
    own = users.locator("tbody tr", has_text=f"admin@{lab.name}.example")
    expect(own).to_contain_text("(you)")
    expect(own.get_by_role("button")).to_have_count(0)
    expect(own.get_by_role("combobox")).to_have_count(0)

    remove = users.get_by_role("button", name=f"Remove {name}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    remove.click()
    expect(users).to_contain_text(name)
    page.once("dialog", lambda dialog: dialog.accept())
    remove.click()
    expect(page.get_by_role("status")).to_have_text(f"User {name} removed.")
    expect(users).not_to_contain_text(name)
    assert lab.admin.get(f"/users/{member_id}").status_code == 404

    # removing oneself by a hand-made request: refused in words, no server error
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        csrf = Html(client.get("/organization").text).csrf()
        answer = client.post(
            f"/organization/users/{lab.admin_id}/delete",
            data={"csrf_token": csrf},
            follow_redirects=True,
        )
        assert answer.status_code == 200
        assert "cannot delete your own account" in answer.text
        answer = client.post(
            f"/organization/users/{lab.admin_id}/role",
            data={"csrf_token": csrf, "role": "member"},
            follow_redirects=True,
        )
        assert answer.status_code == 200
        assert "cannot change your own role" in answer.text
    assert lab.admin.ok("GET", f"/users/{lab.admin_id}")["role"] == "admin"


def test_add_user_proposes_a_member_on_server_administration_too(
    page: Page, server: LiveServer, lab: Lab
) -> None:
    log_in(page, server.url, SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD)
    expect(page.get_by_role("heading", name="Server Administration")).to_be_visible()
    expect(page.locator("#user-role")).to_have_value("member")


def test_the_organisation_page_fits_a_phone(
    browser: Browser, server: LiveServer, lab: Lab, screenshots: Path
) -> None:
    lab.add_member()
    lab.add_device("Balance XS205")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    open_organisation(page, server, lab)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshots / "organization-phone.png", full_page=True)
    page.get_by_role("link", name=re.compile("^Edit Balance")).click()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshots / "device-edit-phone.png", full_page=True)
    context.close()


def test_odd_device_and_user_posts_answer_a_page_never_a_server_error(
    server: LiveServer, lab: Lab
) -> None:
    """Forms as no page sends them: rows without tokens, events of no row, NUL, an unknown role,
    users and devices that are not there."""
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        csrf = Html(client.get("/organization").text).csrf()
        posts = [
            {"name": "Odd", "channel_key": ["a", "b"], "channel_row": "x", "trigger_events": "y|z"},
            {"name": "Odd", "channel_key": "a\u0000", "channel_name": "A"},
            {"name": "Odd", "channel_key": "a", "trigger_events": ["x|run.started", "nonsense"]},
            {"name": "", "channel_row": ["1", "1"], "channel_key": ["a", "a"]},
        ]
        for data in posts:
            answer = client.post("/organization/devices", data={"csrf_token": csrf, **data})
            assert answer.status_code in (303, 422), (data, answer.status_code)
            assert "field-error" in answer.text or answer.status_code == 303, data
        user_id = lab.add_member()[1]
        answer = client.post(
            f"/organization/users/{user_id}/role",
            data={"csrf_token": csrf, "role": "owner"},
            follow_redirects=True,
        )
        assert answer.status_code == 200 and 'id="warning"' in answer.text
        for path in ("/organization/users/usr_nope/role", "/organization/users/usr_nope/delete"):
            answer = client.post(path, data={"csrf_token": csrf, "role": "admin"})
            assert answer.status_code == 404, path
        for path in ("/organization/devices/dev_nope", "/organization/devices/dev_nope/delete"):
            assert client.post(path, data={"csrf_token": csrf}).status_code == 404, path
        assert client.get("/organization/devices/dev_nope").status_code == 404


def test_a_stored_channels_key_is_read_only_and_the_page_says_what_removing_does(
    page: Page, server: LiveServer, lab: Lab
) -> None:
    device = lab.add_device("Balance XS205")
    open_organisation(page, server, lab)
    page.get_by_role("link", name="Edit Balance XS205").click()
    rows = page.locator(".channel-row")
    expect(rows.nth(0).get_by_label("Key")).to_have_value("weight")
    expect(rows.nth(0).get_by_label("Key")).not_to_be_editable()
    expect(rows.nth(1).get_by_label("Key")).not_to_be_editable()
    expect(rows.nth(0).get_by_label("Name")).to_be_editable()
    hint = page.locator("#device-hint")
    expect(hint).to_contain_text("Removing a channel deletes it: its access grants")
    expect(hint).to_contain_text("every subscription's selection of it")
    page.get_by_role("button", name="Add channel").click()
    expect(rows.nth(2).get_by_label("Key")).to_be_editable()  # a new channel's key is typed
    fill_channel(page, 2, "temp", "Temperature", "°C", ["data_point.created"])
    rows.nth(0).get_by_label("Name").fill("Mass")
    page.get_by_role("button", name="Save device").click()
    expect(page.get_by_role("status")).to_have_text("Device Balance XS205 saved.")
    stored = lab.admin.ok("GET", f"/devices/{device['id']}")["channels"]
    assert [(c["key"], c["name"]) for c in stored] == [
        ("weight", "Mass"),
        ("status", "Status"),
        ("temp", "Temperature"),
    ]
    assert stored[0]["id"] == device["channels"][0]["id"]


def device_post(edit: Html) -> dict[str, list[str]]:
    """What the device page's form posts as it was served (no channel row added or removed)."""
    data: dict[str, list[str]] = {"csrf_token": [edit.csrf()]}
    for field_id in ("device-name", "device-model"):
        [field] = edit.find("input", id=field_id)
        data[field.attrs["name"]] = [field.attrs.get("value", "")]
    for field in edit.find("input", "channel-rows"):
        if field.attrs.get("type") != "checkbox" or "checked" in field.attrs:
            data.setdefault(field.attrs["name"], []).append(field.attrs.get("value", ""))
    return data


def test_a_changed_key_posted_for_a_stored_channel_keeps_it_its_access_and_selections(
    server: LiveServer, lab: Lab, receiver: Receiver
) -> None:
    """The key is read-only in the page, but a post is what counts: the row names its channel,
    so the channel keeps its id, its grants and the subscriptions' selections of it."""
    wired = wire(lab, receiver)
    device = wired.device
    _, member_id = lab.add_member()
    grant = lab.grant(member_id, wired.channel_id)
    subscription = wired.subscribe(receiver.url(wired.path()))
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        data = device_post(Html(client.get(f"/organization/devices/{device['id']}").text))
        assert data["channel_key"] == ["weight", "status"]
        data["channel_key"] = ["mass", "status"]  # overtyped, as the page once allowed
        answer = client.post(f"/organization/devices/{device['id']}", data=data)
        assert answer.status_code == 303, answer.text
    stored = lab.admin.ok("GET", f"/devices/{device['id']}")["channels"]
    assert [(c["id"], c["key"]) for c in stored] == [
        (c["id"], c["key"]) for c in device["channels"]
    ]
    grants = lab.admin.ok("GET", "/channel-grants")["items"]
    assert grant["id"] in [g["id"] for g in grants]
    selected = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}")["channels"]
    assert [c["channel_id"] for c in selected] == [wired.channel_id]


def test_a_row_naming_a_channel_the_device_lacks_is_refused_beside_it(
    server: LiveServer, lab: Lab
) -> None:
    """A channel removed meanwhile (in another tab, by another administrator) is not made
    again from a stale page: the row says so, and nothing is saved."""
    device = lab.add_device("Balance XS205")
    other = lab.add_device("Other balance")
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        data = device_post(Html(client.get(f"/organization/devices/{device['id']}").text))
        data["name"] = ["Renamed"]
        data["channel_id"] = [data["channel_id"][0], other["channels"][1]["id"]]
        answer = client.post(f"/organization/devices/{device['id']}", data=data)
        assert answer.status_code == 422
        assert "no longer" in Html(answer.text).text_of("channel-1-key-error")
    assert lab.admin.ok("GET", f"/devices/{device['id']}")["name"] == "Balance XS205"


def test_an_event_that_names_no_row_is_no_rows_event(server: LiveServer, lab: Lab) -> None:
    """Every row's events are posted as `<row>|<event>`; a bare event name belongs to none."""
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        csrf = Html(client.get("/organization").text).csrf()
        data = {
            "csrf_token": csrf,
            "name": "Bare events",
            "channel_row": "0",
            "channel_key": "od",
            "channel_name": "OD",
            "trigger_events": ["0|run.started", "run.completed"],
        }
        assert client.post("/organization/devices", data=data).status_code == 303
    assert channels_of(lab, "Bare events") == [("od", "OD", ["run.started"])]
