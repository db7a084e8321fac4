"""The seed's procedures clicked through in Chromium, exactly as the help article writes them.

Runs on SQLite only: the pages call the same services the API tests run on both databases.
Screenshots of the overview, the form with its dialog, and the delivery log go to a temporary
folder, or to the folder LABHOOKS_SCREENSHOTS names: `make screenshots` names docs/screenshots/,
the README's pictures.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.api import PASSWORD, Api
from tests.delivery_helpers import Wired
from tests.receiver import Receiver
from tests.web_helpers import (
    log_in,
    member_of,
    open_overview,
    pick_events,
    record_csp_violations,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_the_seed_procedures(
    page: Page,
    server,
    lims: Wired,
    receiver: Receiver,
    screenshots: Path,
    csp_violations: list[str],
) -> None:
    member, _, email = member_of(lims)
    base = server.url
    target = receiver.url("/lims/samples")
    log_in(page, base, email)

    # -- Add Webhook Subscription ------------------------------------------------------
    open_overview(page)
    page.get_by_label("Actions").click()  # the three dots in the top right corner
    page.get_by_role("link", name="Add new Webhook Subscription").click()
    page.get_by_label("Target URL").fill(target)
    page.locator("#header-key-0").fill("Authorization")
    page.locator("#header-value-0").fill("Bearer first-token")
    page.get_by_role("button", name="ADD HEADER").click()
    rows = page.locator(".header-row")
    rows.nth(1).get_by_label("Key").fill("X-Lab")
    rows.nth(1).get_by_label("Value").fill("Lab 1")
    page.get_by_role("button", name="ADD HEADER").click()
    rows.nth(2).get_by_label("Key").fill("X-Temporary")
    rows.nth(2).get_by_role("button", name="Delete header").click()  # the button to delete a Header
    expect(rows).to_have_count(2)
    page.get_by_role("button", name="Selected Channels").click()
    pick_events(page, "balance", [("Weight", "data_point.created")])
    pick_events(page, "pH meter", [("pH", "data_point.created"), ("pH", "incident.opened")])
    page.screenshot(path=screenshots / "form-with-channel-dialog.png")
    page.get_by_role("button", name="CONFIRM").click()
    expect(page.locator("#selection-summary")).to_contain_text(
        "Balance XS205 · Weight: data_point.created"
    )
    page.get_by_role("button", name="SUBMIT").click()
    expect(page).to_have_url(re.compile(r"/webhook-subscriptions$"))  # redirected to the overview
    expect(page.get_by_role("status")).to_have_text("Webhook subscription added.")

    [stored] = member.ok("GET", "/webhook-subscriptions")["items"]
    assert stored["target_url"] == target
    assert [h["key"] for h in stored["headers"]] == ["Authorization", "X-Lab"]
    assert {c["device_name"]: c["events"] for c in stored["channels"]} == {
        "Balance XS205": ["data_point.created"],
        "pH meter SevenExcellence": ["data_point.created", "incident.opened"],
    }

    # -- View Webhook Subscription -----------------------------------------------------
    page.goto(f"{base}/")
    open_overview(page)
    row = page.locator("tbody tr", has_text=target)
    expect(row).to_contain_text("pH meter SevenExcellence · pH: incident.opened")
    page.screenshot(path=screenshots / "overview.png", full_page=True)

    # -- (De)Activate -------------------------------------------------------------------
    toggle = row.get_by_role("switch")
    toggle.click()
    expect(page.locator("tbody tr", has_text=target).get_by_role("switch")).to_have_attribute(
        "aria-checked", "false"
    )
    assert member.ok("GET", f"/webhook-subscriptions/{stored['id']}")["active"] is False
    page.locator("tbody tr", has_text=target).get_by_role("switch").click()
    expect(page.locator("tbody tr", has_text=target).get_by_role("switch")).to_have_attribute(
        "aria-checked", "true"
    )
    assert member.ok("GET", f"/webhook-subscriptions/{stored['id']}")["active"] is True

    # -- Edit/Update: re-enter a value, delete a header, change the URL ----------------
    page.locator("tbody tr", has_text=target).get_by_role("link", name=re.compile("^Edit")).click()
    new_target = receiver.url("/lims/samples/v2")
    page.get_by_label("Target URL").fill(new_target)
    page.locator("#header-value-0").fill("Bearer second-token")  # re-enter a key's value
    page.locator(".header-row").nth(1).get_by_role("button", name="Delete header").click()
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.get_by_role("status")).to_have_text("Webhook subscription saved.")
    edited = member.ok("GET", f"/webhook-subscriptions/{stored['id']}")
    assert edited["target_url"] == new_target and [h["key"] for h in edited["headers"]] == [
        "Authorization"
    ]

    # the re-entered value is what the LIMS now receives; the delivery log shows the attempt
    page.locator("tbody tr", has_text=new_target).get_by_role(
        "link", name=new_target, exact=True
    ).click()
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("status")).to_have_text("Test event sent.")
    [request] = receiver.wait_for("/lims/samples/v2", 1)
    assert request.headers["Authorization"] == "Bearer second-token"
    lims.settle(stored["id"], "succeeded")
    page.reload()
    page.locator("#delivery-log summary").first.click()
    attempt = page.locator(".attempt").first
    expect(attempt).to_contain_text("HTTP 200")
    expect(attempt).to_contain_text("webhook-signature: v1,")
    expect(attempt).to_contain_text("Authorization: ••••••••")
    # the default test event is a ping about no device (issue 13), its body shown indented
    expect(page.locator("#delivery-log .event-type").first).to_have_text("ping")
    expect(page.locator("#delivery-log pre.body").first).to_contain_text('"type": "ping"')
    page.screenshot(path=screenshots / "delivery-log.png", full_page=True)
    page.get_by_label("Status").select_option("failed")  # submits at once
    expect(page).to_have_url(re.compile(r"[?&]status=failed"))
    expect(page.locator("#empty-log")).to_contain_text("No deliveries with status failed")
    page.get_by_role("button", name="Reveal secret").click()
    expect(page.locator("#secret-value")).to_contain_text("whsec_")

    # -- Delete -------------------------------------------------------------------------
    open_overview(page)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tbody tr", has_text=new_target).get_by_role(
        "button", name=re.compile("^Delete")
    ).click()
    expect(page.get_by_role("status")).to_have_text("Webhook subscription deleted.")
    expect(page.locator("#empty-state")).to_be_visible()
    assert member.get(f"/webhook-subscriptions/{stored['id']}").status_code == 404
    # the dialog, its search, the toggles, header rows, the secret and the log, all under the
    # Content-Security-Policy
    assert csp_violations == []


def test_a_member_sees_only_channels_granted_to_them(page: Page, server, lims: Wired) -> None:
    _, _, email = member_of(lims)  # has the balance's weight and the pH meter's pH
    other = lims.admin.ok(
        "POST",
        "/users",
        {"email": f"other-{lims.lab.name}@lab.example", "name": "Other", "password": PASSWORD},
        201,
    )
    hidden = lims.lab.add_device(
        "Incubator Heracell",
        [
            {
                "key": "temp",
                "name": "Temperature",
                "unit": "°C",
                "trigger_events": ["data_point.created"],
            }
        ],
    )
    lims.lab.grant(other["id"], hidden["channels"][0]["id"])
    log_in(page, server.url, email)
    page.goto(f"{server.url}/webhook-subscriptions/new")
    page.get_by_role("button", name="Selected Channels").click()
    results = page.locator("#channel-results")
    expect(results).to_contain_text("Balance XS205")
    expect(results).not_to_contain_text("Incubator")
    expect(results).not_to_contain_text("Status")  # the balance's other channel is not granted
    page.get_by_label("Device name").fill("incubator")
    expect(results).to_contain_text("No device named like")


def test_a_validation_error_is_shown_beside_the_field_and_the_input_kept(
    page: Page, server, lims: Wired
) -> None:
    _, _, email = member_of(lims)
    log_in(page, server.url, email)
    page.goto(f"{server.url}/webhook-subscriptions/new")
    page.get_by_label("Target URL").fill("https://unregistered.example.org/in")
    page.locator("#header-key-0").fill("X-Api-Key")
    page.locator("#header-value-0").fill("kept-value")
    page.get_by_role("button", name="Selected Channels").click()
    pick_events(page, "balance", [("Weight", "data_point.created")])
    page.get_by_role("button", name="CONFIRM").click()
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.locator("#target_url-error")).to_contain_text(
        "is not registered for your organisation"
    )
    expect(page.get_by_label("Target URL")).to_have_value("https://unregistered.example.org/in")
    expect(page.get_by_label("Target URL")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#header-key-0")).to_have_value("X-Api-Key")
    expect(page.locator("#header-value-0")).to_have_value("kept-value")
    expect(page.locator("#selection-summary")).to_contain_text(
        "Balance XS205 · Weight: data_point.created"
    )
    page.get_by_label("Target URL").fill("not a url")
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.locator("#target_url-error")).to_be_visible()


def test_the_feature_banner_says_who_can_switch_webhooks_on(
    page: Page, server, lims: Wired
) -> None:
    _, _, email = member_of(lims)
    lims.lab.server_admin.ok("PATCH", f"/organizations/{lims.lab.id}", {"webhooks_enabled": False})
    log_in(page, server.url, email)
    open_overview(page)
    expect(page.locator("#feature-banner")).to_contain_text(
        "A server administrator can switch them on"
    )


def test_wrong_credentials_say_so_and_repeated_failures_are_limited(
    page: Page, server, lims: Wired
) -> None:
    _, _, email = member_of(lims)
    page.goto(f"{server.url}/login")
    for _ in range(5):
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#login-error")).to_have_text(
            "The e-mail address or the password is wrong."
        )
    log_in(page, server.url, email)  # even the right password waits now
    expect(page.locator("#login-error")).to_contain_text("Too many failed attempts")


def test_pages_are_readable_at_phone_width(
    browser: Browser, server, lims: Wired, screenshots: Path
) -> None:
    member, _, email = member_of(lims)
    lims.subscribe(lims.receiver.url("/phone"), api=member)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    violations = record_csp_violations(context)
    page = context.new_page()
    log_in(page, server.url, email)
    open_overview(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # no sideways scrolling
    page.screenshot(path=screenshots / "overview-phone.png", full_page=True)
    context.close()
    assert violations == []


def test_administrators_manage_organisations_urls_users_access_and_devices(
    page: Page, server, server_admin: Api, lims: Wired
) -> None:
    from tests.conftest import SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD

    # server administration: add an organisation, switch its webhooks on
    page.goto(f"{server.url}/login")
    page.get_by_label("E-mail").fill(SERVER_ADMIN_EMAIL)
    page.get_by_label("Password").fill(SERVER_ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Server Administration")).to_be_visible()
    name = f"Chemistry {lims.lab.name}"
    page.locator("#org-name").fill(name)
    page.get_by_role("button", name="Add organisation").click()
    expect(page.get_by_role("status")).to_have_text(f"Organisation {name} created.")
    switch = page.get_by_role("switch", name=f"Webhooks for {name}")
    expect(switch).to_have_attribute("aria-checked", "false")
    switch.click()
    expect(page.get_by_role("switch", name=f"Webhooks for {name}")).to_have_attribute(
        "aria-checked", "true"
    )
    page.get_by_role("button", name="Log out").click()

    # the organisation page: a bad URL is refused beside its field, input kept; then the rest
    log_in(page, server.url, f"admin@{lims.lab.name}.example")
    page.get_by_text("More", exact=True).click()
    page.get_by_role("link", name="Organisation").click()
    page.get_by_label("URL", exact=True).fill("https://eln.example.org/in#frag")
    page.get_by_role("button", name="Register URL").click()
    expect(page.locator("#url-error")).to_contain_text("fragment")
    expect(page.get_by_label("URL", exact=True)).to_have_value("https://eln.example.org/in#frag")
    page.get_by_label("URL", exact=True).fill("https://eln.example.org/in/")
    page.get_by_role("button", name="Register URL").click()
    expect(page.get_by_role("status")).to_have_text("https://eln.example.org/in/ registered.")

    page.locator("#user-email").fill(f"tech-{lims.lab.name}@lab.example")
    page.locator("#user-name").fill("Toni Technician")
    page.locator("#user-password").fill(PASSWORD)
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_contain_text("added")

    page.locator("#device-name").fill("Plate reader Spark")
    page.locator("#channel-0-key").fill("od")
    page.locator("#channel-0-name").fill("Optical density")
    page.get_by_label("run.completed").check()
    page.get_by_role("button", name="Add device").click()
    expect(page.get_by_role("status")).to_have_text("Device Plate reader Spark added.")

    page.get_by_label("User", exact=True).select_option(
        label=f"Toni Technician (tech-{lims.lab.name}@lab.example)"
    )
    page.get_by_label("Channel", exact=True).select_option(
        label="Plate reader Spark · Optical density"
    )
    page.get_by_role("button", name="Grant access").click()
    expect(page.get_by_role("status")).to_have_text("Channel access granted.")
    expect(page.locator("#channel-access")).to_contain_text(
        "Toni Technician → Plate reader Spark · Optical density"
    )


def test_unknown_pages_and_bad_addresses_answer_a_page_not_json(
    page: Page, server, lims: Wired
) -> None:
    _, _, email = member_of(lims)
    log_in(page, server.url, email)
    response = page.goto(f"{server.url}/no-such-page")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    response = page.goto(f"{server.url}/webhook-subscriptions/sub_nope")
    assert response is not None and response.status == 404
    expect(page.locator("main")).to_contain_text("Webhook subscription not found")
