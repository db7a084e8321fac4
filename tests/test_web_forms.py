"""The subscription form and the overview as issue 13 asks: the Selected Channels dialog applies
ticks only on CONFIRM (Cancel, the close button and Escape discard them), an empty form names
every missing field at once in plain words, a target deliveries may not reach is warned of, the
overview has an Add button and (for administrators) each subscription's owner, and the dialog
describes each trigger event.

Runs on SQLite only, as test_web_ui.py does; screenshots go to a temporary folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.delivery_helpers import Wired
from tests.live import LiveServer
from tests.web_helpers import PHONE, log_in, member_of, open_overview, pick_events

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SUBS = "/webhook-subscriptions"
# a private address outside the test server's LABHOOKS_ALLOWED_NETWORKS (loopback only)
PRIVATE_LIMS = "http://10.1.2.3/hooks/"


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement ? document.activeElement.id : ''"))


def saved_inputs(page: Page) -> list[str]:
    """What SUBMIT would send as the channel selection."""
    return list(
        page.locator("#selection-inputs input[name=selected]").evaluate_all(
            "inputs => inputs.map(i => i.value)"
        )
    )


def weight_box(page: Page):  # type: ignore[no-untyped-def]
    group = page.locator("#channel-results fieldset", has=page.locator("legend", has_text="Weight"))
    return group.get_by_role("checkbox", name=re.compile("^data_point.created"))


def test_the_channel_dialog_applies_ticks_only_on_confirm(
    page: Page, server: LiveServer, lims: Wired
) -> None:
    member, _, email = member_of(lims)
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}/new")
    dialog = page.locator("#channel-dialog")
    summary = page.locator("#selection-summary")
    opener = page.get_by_role("button", name="Selected Channels")

    # Escape discards the tick: the form says nothing is selected, and SUBMIT would send nothing
    opener.click()
    pick_events(page, "balance", [("Weight", "data_point.created")])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(summary).to_have_text("No channels selected yet.")
    assert saved_inputs(page) == []
    assert focused_id(page) == "open-channels"

    # Cancel and the close button discard it too; reopened, the box is not ticked
    for close in ("Cancel", "Close"):
        opener.click()
        expect(weight_box(page)).not_to_be_checked()
        weight_box(page).check()
        dialog.get_by_role("button", name=close, exact=True).click()
        expect(dialog).to_be_hidden()
        assert saved_inputs(page) == [], close
        assert focused_id(page) == "open-channels", close

    # one Escape in the search box, text typed, closes the dialog and applies nothing
    opener.click()
    pick_events(page, "bal", [("Weight", "data_point.created")])
    page.get_by_label("Device name").press("Escape")
    expect(dialog).to_be_hidden()
    assert saved_inputs(page) == []

    # only CONFIRM applies; an untick afterwards, cancelled, leaves the confirmed selection
    opener.click()
    pick_events(page, "balance", [("Weight", "data_point.created")])
    dialog.get_by_role("button", name="CONFIRM").click()
    expect(summary).to_have_text("Balance XS205 · Weight: data_point.created")
    assert saved_inputs(page) == [f"{lims.channel_id}|data_point.created"]
    opener.click()
    expect(weight_box(page)).to_be_checked()
    weight_box(page).uncheck()
    page.keyboard.press("Escape")
    expect(summary).to_have_text("Balance XS205 · Weight: data_point.created")
    opener.click()
    expect(weight_box(page)).to_be_checked()
    dialog.get_by_role("button", name="CONFIRM").click()

    # what the summary showed is what was saved
    page.get_by_label("Target URL").fill(lims.receiver.url("/dialog/confirmed"))
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.get_by_role("status")).to_have_text("Webhook subscription added.")
    [saved] = member.ok("GET", SUBS)["items"]
    assert [(c["channel_name"], c["events"]) for c in saved["channels"]] == [
        ("Weight", ["data_point.created"])
    ]


def test_an_empty_form_names_every_missing_field_at_once_in_plain_words(
    page: Page, server: LiveServer, lims: Wired, screenshots: Path
) -> None:
    _, _, email = member_of(lims)
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}/new")
    page.get_by_role("button", name="SUBMIT").click()
    url_error, channels_error = page.locator("#target_url-error"), page.locator("#channels-error")
    expect(url_error).to_contain_text("Enter a URL such as")
    expect(channels_error).to_contain_text("Choose at least one channel")
    expect(page.locator("main")).not_to_contain_text("List should have")
    expect(page.locator("main")).not_to_contain_text("validation")
    expect(page.get_by_label("Target URL")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("button", name="Selected Channels")).to_have_attribute(
        "aria-invalid", "true"
    )
    expect(page.get_by_label("Target URL")).to_be_focused()  # the first field in error
    page.screenshot(path=screenshots / "form-errors.png", full_page=True)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshots / "form-errors-phone.png", full_page=True)

    # a malformed URL with no channels: both again, the URL's own reason
    page.get_by_label("Target URL").fill("lims.example.org/in")
    page.get_by_role("button", name="SUBMIT").click()
    expect(url_error).to_have_text("The target URL must start with http:// or https://")
    expect(channels_error).to_contain_text("Choose at least one channel")
    expect(page.get_by_label("Target URL")).to_have_value("lims.example.org/in")

    # a good URL, channels still missing: focus goes to the first field in error, the button
    page.get_by_label("Target URL").fill(lims.receiver.url("/empty/form"))
    page.get_by_role("button", name="SUBMIT").click()
    expect(url_error).to_have_count(0)
    expect(channels_error).to_be_visible()
    expect(page.get_by_role("button", name="Selected Channels")).to_be_focused()


def test_a_target_deliveries_cannot_reach_is_warned_of_naming_the_setting(
    page: Page, server: LiveServer, lims: Wired, screenshots: Path
) -> None:
    log_in(page, server.url, f"admin@{lims.lab.name}.example")
    page.goto(f"{server.url}/organization")
    page.get_by_label("URL", exact=True).fill(PRIVATE_LIMS)
    page.get_by_role("button", name="Register URL").click()
    expect(page.get_by_role("status")).to_have_text(f"{PRIVATE_LIMS} registered.")
    warning = page.locator("#warning")
    expect(warning).to_contain_text("10.1.2.3")
    expect(warning).to_contain_text("LABHOOKS_ALLOWED_NETWORKS")
    page.screenshot(path=screenshots / "organization-warning.png")

    # subscribing to it warns on the overview; editing it warns again
    page.goto(f"{server.url}{SUBS}/new")
    page.get_by_label("Target URL").fill(f"{PRIVATE_LIMS}weights")
    page.get_by_role("button", name="Selected Channels").click()
    pick_events(page, "balance", [("Weight", "data_point.created")])
    page.get_by_role("button", name="CONFIRM").click()
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.get_by_role("status")).to_have_text("Webhook subscription added.")
    expect(warning).to_contain_text("LABHOOKS_ALLOWED_NETWORKS")
    expect(warning).to_contain_text("10.1.2.3")
    page.screenshot(path=screenshots / "overview-warning.png")
    page.locator("tbody tr", has_text="10.1.2.3").get_by_role(
        "link", name=re.compile("^Edit")
    ).click()
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.get_by_role("status")).to_have_text("Webhook subscription saved.")
    expect(warning).to_contain_text("LABHOOKS_ALLOWED_NETWORKS")

    # a target deliveries do reach (the receiver, on loopback, allowed here) warns of nothing
    page.goto(f"{server.url}{SUBS}/new")
    page.get_by_label("Target URL").fill(lims.receiver.url("/reachable"))
    page.get_by_role("button", name="Selected Channels").click()
    pick_events(page, "balance", [("Weight", "data_point.created")])
    page.get_by_role("button", name="CONFIRM").click()
    page.get_by_role("button", name="SUBMIT").click()
    expect(page.get_by_role("status")).to_have_text("Webhook subscription added.")
    expect(warning).to_have_count(0)


def test_the_overview_has_an_add_button_and_the_form_starts_at_target_url(
    page: Page, server: LiveServer, lims: Wired, screenshots: Path
) -> None:
    member, _, email = member_of(lims)
    log_in(page, server.url, email)
    open_overview(page)
    empty = page.locator("#empty-state")
    expect(empty).to_be_visible()
    empty.get_by_role("link", name="Add").click()
    expect(page.get_by_role("heading", name="Add new Webhook Subscription")).to_be_visible()
    expect(page.get_by_label("Target URL")).to_be_focused()

    lims.subscribe(lims.receiver.url("/add/button"), api=member)
    open_overview(page)
    add = page.locator(".page-head").get_by_role("link", name="Add", exact=True)
    expect(add).to_be_visible()
    page.screenshot(path=screenshots / "overview-add-button.png", full_page=True)
    add.click()
    expect(page).to_have_url(re.compile(rf"{SUBS}/new$"))
    # the seed's way stays: the three dots, then the menu's link
    open_overview(page)
    page.get_by_label("Actions").click()
    page.get_by_role("link", name="Add new Webhook Subscription").click()
    expect(page.get_by_label("Target URL")).to_be_focused()


def test_the_dialog_describes_each_trigger_event_from_the_catalogue(
    page: Page, server: LiveServer, lims: Wired, screenshots: Path
) -> None:
    _, _, email = member_of(lims)
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}/new")
    page.get_by_role("button", name="Selected Channels").click()
    ph = page.locator("#channel-results fieldset", has=page.locator("legend", has_text="pH"))
    expect(ph.locator("label", has_text="incident.opened")).to_contain_text(
        "A channel threshold is crossed."
    )
    expect(ph.locator("label", has_text="data_point.created")).to_contain_text(
        "A channel reports a new value."
    )
    page.screenshot(path=screenshots / "form-dialog-descriptions.png")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshots / "form-dialog-descriptions-phone.png")


def test_an_organisation_administrator_sees_each_subscriptions_owner(
    page: Page, server: LiveServer, lims: Wired, screenshots: Path
) -> None:
    member, _, email = member_of(lims)
    lims.subscribe(lims.receiver.url("/owned/by/member"), api=member)
    lims.subscribe(lims.receiver.url("/owned/by/admin"))
    log_in(page, server.url, f"admin@{lims.lab.name}.example")
    open_overview(page)
    expect(page.get_by_role("columnheader", name="Owner")).to_be_visible()
    by_member = page.locator("tbody tr", has_text="/owned/by/member")
    expect(by_member.locator("td[data-label=Owner]")).to_contain_text("Sam Scientist")
    expect(by_member.locator("td[data-label=Owner]")).to_contain_text(email)
    by_admin = page.locator("tbody tr", has_text="/owned/by/admin")
    expect(by_admin.locator("td[data-label=Owner]")).to_contain_text("you")
    page.screenshot(path=screenshots / "overview-owners.png")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshots / "overview-owners-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    # a member sees only their own: no owner column
    page.get_by_role("button", name="Log out").click()
    log_in(page, server.url, email)
    open_overview(page)
    expect(page.get_by_role("columnheader", name="Owner")).to_have_count(0)
