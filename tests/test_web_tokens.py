"""The Tokens page: a gateway token made in the browser works at once and is shown only once,
a mistake is shown beside its field with the input kept, and a revoked token stops working.

Runs on SQLite only, as the other browser tests do.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.api import Lab
from tests.live import LiveServer
from tests.web_helpers import Html, at_phone_width, log_in, web_client

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def open_tokens(page: Page, server: LiveServer, email: str) -> None:
    log_in(page, server.url, email)
    page.get_by_text("More", exact=True).click()
    page.get_by_role("link", name="API Tokens").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API Tokens")


def test_a_gateway_token_is_made_shown_once_used_and_revoked(
    page: Page, server: LiveServer, lab: Lab
) -> None:
    balance = lab.add_device("Balance 2.14")
    lab.add_device("pH meter")
    open_tokens(page, server, f"admin@{lab.name}.example")
    page.get_by_label("Name").fill("balance gateway")
    page.get_by_label("Scope").select_option("publish")
    page.get_by_label("Device (publish tokens)").select_option(label="Balance 2.14")
    page.get_by_label("Expires in days").fill("90")
    page.get_by_role("button", name="Create token").click()

    expect(page.get_by_text("it will not be shown again")).to_be_visible()
    token = page.locator("#token-value").inner_text().strip()
    gateway = lab.admin.as_(token)
    reading = {
        "device_id": balance["id"],
        "channel_key": "weight",
        "type": "data_point.created",
        "data": {"value": 1.5},
    }
    gateway.ok("POST", "/events", reading, 202)
    row = page.locator("tr", has_text="balance gateway")
    expect(row).to_contain_text("publish")
    expect(row).to_contain_text("Balance 2.14")

    page.goto(f"{server.url}/tokens")  # back to the page: the token is gone from it for good
    expect(page.locator("#token-value")).to_have_count(0)
    assert token not in page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke balance gateway").click()
    expect(page.get_by_role("status")).to_contain_text("Token revoked")
    expect(page.locator("tr", has_text="balance gateway")).to_have_count(0)
    assert gateway.post("/events", json=reading).status_code == 401


def test_a_dismissed_confirmation_revokes_nothing(page: Page, server: LiveServer, lab: Lab) -> None:
    created = lab.admin.ok("POST", "/api-tokens", {"name": "keep me", "scope": "full"}, 201)
    open_tokens(page, server, f"admin@{lab.name}.example")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Revoke keep me").click()
    expect(page.locator("tr", has_text="keep me")).to_have_count(1)
    assert lab.admin.as_(created["token"]).get("/me").status_code == 200


def test_mistakes_are_shown_beside_their_field_with_the_input_kept(
    page: Page, server: LiveServer, lab: Lab
) -> None:
    open_tokens(page, server, f"admin@{lab.name}.example")
    page.get_by_label("Scope").select_option("full")
    page.get_by_label("Expires in days").fill("soon")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-name-error")).to_have_text(re.compile("name is required", re.I))
    expect(page.get_by_label("Name")).to_be_focused()

    page.get_by_label("Name").fill("export script")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-expires-error")).to_have_text(
        "The expiry must be a whole number of days"
    )
    expect(page.get_by_label("Name")).to_have_value("export script")
    expect(page.get_by_label("Expires in days")).to_have_value("soon")
    expect(page.get_by_label("Scope")).to_have_value("full")
    assert "export script" not in {t["name"] for t in lab.admin.ok("GET", "/api-tokens")["items"]}


def test_a_member_makes_only_full_tokens_and_sees_only_its_own(
    server: LiveServer, lab: Lab
) -> None:
    member, _ = lab.add_member()
    lab.admin.ok("POST", "/api-tokens", {"name": "org gateway", "scope": "publish"}, 201)
    email = member.ok("GET", "/me")["email"]
    with web_client(server.url, email) as client:
        page = Html(client.get("/tokens").text)
        assert [value for value, _ in page.options("token-scope")] == ["full"]
        assert not page.find("select", id="token-device")
        assert "org gateway" not in client.get("/tokens").text
        form = {"csrf_token": page.csrf(), "name": "gw", "scope": "publish"}
        refused = client.post("/tokens", data=form)
        assert refused.status_code == 403
    assert "gw" not in {t["name"] for t in member.ok("GET", "/api-tokens")["items"]}


def test_the_tokens_page_fits_a_phone_with_a_new_token_on_it(
    page: Page, server: LiveServer, lab: Lab, screenshots: Path
) -> None:
    lab.add_device("Incubator with a rather long name, bay 4")
    open_tokens(page, server, f"admin@{lab.name}.example")
    page.get_by_label("Name").fill("incubator gateway in the cold room")
    page.get_by_label("Scope").select_option("publish")
    page.get_by_label("Device (publish tokens)").select_option(
        label="Incubator with a rather long name, bay 4"
    )
    page.get_by_label("Expires in days").fill("365")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-value")).to_be_visible()
    at_phone_width(page, screenshots / "tokens-phone.png")
