"""Signature schemes in the web UI: chosen on the form, shown on the subscription page (the public
key of an ed25519 subscription openly, with the URL receivers fetch it from), switched and rotated
with the old key signing for 24 more hours, and verified as a receiver would.

Runs on SQLite only, as test_web_ui.py does. Screenshots of the form and of the page for each
scheme, at desktop and phone width, go to a temporary folder (`make screenshots` runs only
test_web_ui.py, so these never land in docs/).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.delivery_helpers import Wired
from tests.live import LiveServer
from tests.receiver import Receiver, verifies, versions
from tests.web_helpers import (
    DESKTOP,
    Html,
    at_phone_width,
    log_in,
    member_of,
    pick_events,
    web_client,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SUBS = "/webhook-subscriptions"
HMAC = "HMAC-SHA256 (shared secret, v1)"
ED25519 = "Ed25519 (public key, v1a)"
TOKYO = timezone(timedelta(hours=9))  # the browser's zone here; no daylight saving time


@pytest.fixture
def context_options() -> dict[str, Any]:
    return {
        "viewport": DESKTOP,
        "timezone_id": "Asia/Tokyo",
        "permissions": ["clipboard-read", "clipboard-write"],  # for the Copy buttons
    }


def in_tokyo(moment: str) -> str:
    """A time as the page shows it in this browser's zone."""
    return datetime.fromisoformat(moment).astimezone(TOKYO).strftime("%Y-%m-%d %H:%M")


def save(page: Page, message: str) -> None:
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.get_by_role("status")).to_have_text(message)


def test_an_ed25519_subscription_chosen_on_the_form_and_switched_back_to_hmac(
    page: Page, server: LiveServer, lims: Wired, receiver: Receiver, screenshots: Path
) -> None:
    member, _, email = member_of(lims)
    path = lims.path()
    target = receiver.url(path)
    log_in(page, server.url, email)

    # -- Add, choosing Ed25519; a refused submit keeps the choice -----------------------
    page.goto(f"{server.url}{SUBS}/new")
    expect(page.get_by_label(HMAC)).to_be_checked()  # the default
    expect(page.locator("#scheme-switch-hint")).to_have_count(0)  # nothing to switch from yet
    page.get_by_label("Target URL").fill("https://unregistered.example.org/in")
    page.get_by_role("button", name="Selected Channels").click()
    pick_events(page, "balance", [("Weight", "data_point.created")])
    page.get_by_role("button", name="CONFIRM").click()
    page.get_by_label(ED25519).check()
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.locator("#target_url-error")).to_contain_text("is not registered")
    expect(page.get_by_label(ED25519)).to_be_checked()
    page.get_by_label("Target URL").fill(target)
    page.screenshot(path=screenshots / "form-signature.png", full_page=True)
    at_phone_width(page, screenshots / "form-signature-phone.png")
    save(page, "Webhook subscription added.")
    row = page.locator("tbody tr", has_text=target)
    expect(row.locator(".tag")).to_have_text("ed25519")
    page.screenshot(path=screenshots / "overview-ed25519.png", full_page=True)

    [stored] = member.ok("GET", SUBS)["items"]
    assert stored["signature_scheme"] == "ed25519"
    [current] = stored["public_keys"]
    key = current["key"]

    # -- The page shows the key the public route answers, and that route's address -----
    row.get_by_role("link", name=target, exact=True).click()
    expect(page.locator("#signature-scheme")).to_have_text(ED25519)
    expect(page.locator("#public-key")).to_have_text(key)
    url = f"{server.url}/api/v1{SUBS}/{stored['id']}/public-key"
    expect(page.locator("#public-key-url")).to_have_attribute("href", url)
    expect(page.locator("#public-key-url")).to_have_text(url)
    assert httpx.get(url).json() == {"keys": [current]}  # as a receiver fetches it: no account
    expect(page.get_by_role("button", name="Reveal secret")).to_have_count(0)  # the key is shown
    expect(page.get_by_role("button", name="Rotate key")).to_be_visible()
    expect(page.locator("#previous-public-key")).to_have_count(0)
    page.get_by_role("button", name="Copy the public key").click()
    expect(page.locator("button[data-copy=public-key]")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.screenshot(path=screenshots / "subscription-ed25519.png", full_page=True)
    at_phone_width(page, screenshots / "subscription-ed25519-phone.png")

    # -- Send test event: a v1a signature that the key shown verifies -------------------
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("status")).to_have_text("Test event sent.")
    [request] = receiver.wait_for(path, 1)
    assert versions(request) == ["v1a"]
    assert verifies(key, request)
    lims.settle(stored["id"], "succeeded")
    page.reload()
    page.locator("#delivery-log summary").first.click()
    expect(page.locator(".attempt").first).to_contain_text("webhook-signature: v1a,")

    # -- An edit that leaves the choice alone keeps the key ------------------------------
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label(ED25519)).to_be_checked()
    expect(page.locator("label[for=scheme-ed25519]")).to_contain_text("(current)")
    expect(page.locator("#scheme-switch-hint")).to_contain_text("old one keeps signing for 24")
    page.get_by_text("More options").click()
    page.get_by_label("Description").fill("Weights for the LIMS")
    save(page, "Webhook subscription saved.")
    kept = member.ok("GET", f"{SUBS}/{stored['id']}")
    assert kept["description"] == "Weights for the LIMS"
    assert kept["signature_scheme"] == "ed25519" and kept["public_keys"] == [current]

    # -- Back to HMAC: a new secret; the key signs and stays published for 24 hours -----
    page.goto(f"{server.url}{SUBS}/{stored['id']}/edit")
    page.get_by_label(HMAC).check()
    page.screenshot(path=screenshots / "form-signature-switch.png", full_page=True)
    save(page, "Webhook subscription saved.")
    switched = member.ok("GET", f"{SUBS}/{stored['id']}")
    assert switched["signature_scheme"] == "hmac"
    [previous] = switched["public_keys"]
    assert previous["key"] == key
    expires = datetime.fromisoformat(previous["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)

    page.goto(f"{server.url}{SUBS}/{stored['id']}")
    expect(page.locator("#signature-scheme")).to_have_text(HMAC)
    expect(page.locator("#public-key")).to_have_count(0)
    expect(page.locator("#previous-public-key")).to_have_text(key)
    expiry = page.locator("#previous-key-expiry time")
    shown = datetime.fromisoformat(expiry.get_attribute("datetime") or "")
    assert abs(shown - expires) < timedelta(milliseconds=1)
    expect(expiry).to_have_text(in_tokyo(previous["expires_at"]))  # app.js: the browser's zone
    expect(page.locator("#signature")).to_contain_text("Times are in Asia/Tokyo, UTC+09:00")
    expect(page.locator("#public-key-url")).to_have_text(url)  # receivers still find the key
    assert httpx.get(url).json() == {"keys": [previous]}
    expect(page.get_by_role("button", name="Rotate secret")).to_be_visible()
    page.get_by_role("button", name="Reveal secret").click()
    expect(page.locator("#secret-value")).to_contain_text("whsec_")
    page.screenshot(path=screenshots / "subscription-hmac-after-ed25519.png", full_page=True)
    at_phone_width(page, screenshots / "subscription-hmac-after-ed25519-phone.png")


def test_rotating_an_ed25519_key_says_key_and_lists_both_keys(
    page: Page, server: LiveServer, lims: Wired
) -> None:
    member, _, email = member_of(lims)
    subscription = lims.subscribe(
        lims.receiver.url(lims.path()), api=member, signature_scheme="ed25519"
    )
    [old] = subscription["public_keys"]
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}/{subscription['id']}")
    asked: list[str] = []

    def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    page.get_by_role("button", name="Rotate key").click()
    expect(page.get_by_role("status")).to_have_text(
        "Key rotated. Deliveries carry signatures of both keys for the next 24 hours."
    )
    assert asked == ["Rotate the key? The old one keeps signing for 24 hours."]
    new, previous = member.ok("GET", f"{SUBS}/{subscription['id']}")["public_keys"]
    assert previous["key"] == old["key"] and new["key"] != old["key"]
    expect(page.locator("#public-key")).to_have_text(new["key"])
    expect(page.locator("#previous-public-key")).to_have_text(old["key"])
    expect(page.locator("#previous-key-expiry")).to_have_text(
        f"stops signing at {in_tokyo(previous['expires_at'])}"
    )


def test_the_form_without_javascript_keeps_an_unsent_scheme_and_refuses_an_unknown_one(
    server: LiveServer, lims: Wired
) -> None:
    member, _, email = member_of(lims)
    subscription = lims.subscribe(
        lims.receiver.url(lims.path()), api=member, signature_scheme="ed25519"
    )
    edit = f"{SUBS}/{subscription['id']}/edit"
    with web_client(server.url, email) as client:
        form = Html(client.get(edit).text)
        [checked] = [r for r in form.find("input", type="radio") if "checked" in r.attrs]
        assert checked.attrs["value"] == "ed25519"
        fields = {
            "csrf_token": form.csrf(),
            "target_url": subscription["target_url"],
            "header_key": "Authorization",
            "header_value": "",  # kept
            "selected": f"{lims.channel_id}|data_point.created",
        }
        assert client.post(edit, data=fields).status_code == 303  # no scheme sent: kept
        kept = member.ok("GET", f"{SUBS}/{subscription['id']}")
        assert kept["signature_scheme"] == "ed25519"
        assert kept["public_keys"] == subscription["public_keys"]

        refused = client.post(edit, data=fields | {"signature_scheme": "rsa"})
        assert refused.status_code == 422
        page = Html(refused.text)
        assert "'hmac' or 'ed25519'" in page.text_of("signature_scheme-error")  # the API's
        radios = page.find("input", type="radio")
        assert [r.attrs.get("aria-invalid") for r in radios] == ["true", "true"]
        assert not [r for r in radios if "checked" in r.attrs]  # "rsa" is none of them
        [target] = page.find("input", id="target_url")
        assert target.attrs["value"] == subscription["target_url"]  # the rest as typed

        # to HMAC without a browser: the page says the previous key stops signing, in UTC
        assert client.post(edit, data=fields | {"signature_scheme": "hmac"}).status_code == 303
        detail = Html(client.get(f"{SUBS}/{subscription['id']}").text)
        assert detail.text_of("signature-scheme") == HMAC
        assert detail.text_of("previous-public-key") == subscription["public_keys"][0]["key"]
        assert detail.text_of("previous-key-expiry").endswith(" UTC")
        assert detail.find("button", id="reveal-secret")


def test_an_hmac_subscription_switched_to_ed25519_says_until_when_the_secret_signs(
    server: LiveServer, lims: Wired
) -> None:
    member, _, email = member_of(lims)
    subscription = lims.subscribe(lims.receiver.url(lims.path()), api=member)
    page = f"{SUBS}/{subscription['id']}"
    with web_client(server.url, email) as client:
        before = Html(client.get(page).text)
        assert before.text_of("signature-scheme") == HMAC
        assert not before.find("dd", id="previous-secret")
        assert not before.find("a", id="public-key-url")  # no key to publish
        switched = member.ok("PATCH", page, {"signature_scheme": "ed25519"})
        # the HMAC page, still open elsewhere, reveals what receivers now verify with
        revealed = client.post(f"{page}/secret", data={"csrf_token": before.csrf()}).text
        after = Html(client.get(page).text)
    assert after.text_of("public-key") == switched["public_keys"][0]["key"]
    assert Html(revealed).text_of("secret-value") == switched["public_keys"][0]["key"]
    assert "now signs with Ed25519" in revealed
    assert after.text_of("previous-secret").startswith("stops signing at ")
    assert not after.find("button", id="reveal-secret")
    assert not after.find("code", id="previous-public-key")
