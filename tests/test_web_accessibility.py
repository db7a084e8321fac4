"""Every page as a keyboard, a screen reader and a phone meet it: a skip link first, heading
levels in order, no sideways scrolling at 390 px, and menus that close on Escape (focus back on
their button) and on a click outside.

Runs on SQLite only, as test_web_ui.py does; screenshots go to a temporary folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.api import Api
from tests.conftest import SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD
from tests.delivery_helpers import Wired
from tests.live import LiveServer
from tests.web_helpers import PHONE, log_in, member_of, record_csp_violations

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SUBS = "/webhook-subscriptions"

# The levels of a page's headings in document order (a dialog's too: it is read when open).
HEADING_LEVELS = """[...document.querySelectorAll("h1, h2, h3, h4, h5, h6")]
  .map(h => Number(h.tagName[1]))"""


@dataclass(frozen=True)
class Visit:
    name: str
    who: str  # "member", "admin" (of the organisation) or "server"
    path: str
    then: str = ""  # "submit": SUBMIT the form empty; "dialog": open Selected Channels


def every_page(lims: Wired, member: Api) -> list[Visit]:
    subscription = lims.subscribe(lims.receiver.url("/every/page"), api=member)
    device = lims.device["id"]
    return [
        Visit("login", "", "/login"),
        Visit("overview-empty", "admin", SUBS),  # the admin's own: the member's are listed
        Visit("overview", "member", SUBS),
        Visit("form", "member", f"{SUBS}/new"),
        Visit("form-errors", "member", f"{SUBS}/new", then="submit"),
        Visit("form-dialog", "member", f"{SUBS}/new", then="dialog"),
        Visit("edit", "member", f"{SUBS}/{subscription['id']}/edit"),
        Visit("subscription", "member", f"{SUBS}/{subscription['id']}"),
        Visit("organisation", "admin", "/organization"),
        Visit("device", "admin", f"/organization/devices/{device}"),
        Visit("server-administration", "server", "/admin"),
        Visit("not-found", "member", "/no-such-page"),
    ]


def test_every_page_has_ordered_headings_and_fits_a_phone(
    browser: Browser, server: LiveServer, lims: Wired, screenshots: Path
) -> None:
    member, _, email = member_of(lims)
    logins = {
        "member": (email, None),
        "admin": (f"admin@{lims.lab.name}.example", None),
        "server": (SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD),
    }
    problems: list[str] = []
    for visit in every_page(lims, member):
        context = browser.new_context(viewport=PHONE)
        violations = record_csp_violations(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        if visit.who:
            address, password = logins[visit.who]
            if password:
                log_in(page, server.url, address, password)
            else:
                log_in(page, server.url, address)
        page.goto(f"{server.url}{visit.path}")
        if visit.then == "submit":
            page.get_by_role("button", name="SUBMIT").click()
            expect(page.locator(".field-error").first).to_be_visible()
        elif visit.then == "dialog":
            page.get_by_role("button", name="Selected Channels").click()
            expect(page.locator("#channel-results fieldset").first).to_be_visible()
        levels = page.evaluate(HEADING_LEVELS)
        if not levels or levels[0] != 1:
            problems.append(f"{visit.name}: the first heading is not h1: {levels}")
        for before, after in pairwise(levels):
            if after > before + 1:
                problems.append(f"{visit.name}: h{before} is followed by h{after}: {levels}")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            problems.append(f"{visit.name}: {width} px wide at {PHONE['width']} px")
        page.screenshot(path=screenshots / f"a11y-{visit.name}-phone.png", full_page=True)
        context.close()
        problems += [f"{visit.name}: {v}" for v in violations]
    assert problems == []


def test_a_skip_link_comes_first_and_leads_to_the_page_content(
    page: Page, server: LiveServer, lims: Wired
) -> None:
    _, _, email = member_of(lims)
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}")
    skip = page.get_by_role("link", name="Skip to main content")
    box = skip.bounding_box()
    assert box is None or box["width"] <= 1, box  # out of sight until it has the focus
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()  # shown while it has the focus
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")  # on into the page, past the header's menu
    assert page.evaluate("document.activeElement.closest('main') !== null")


def test_menus_close_on_escape_with_focus_back_and_on_a_click_outside(
    page: Page, server: LiveServer, lims: Wired
) -> None:
    _, _, email = member_of(lims)
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}")
    more = page.locator("#more-menu")
    summary = more.locator("summary")

    # by keyboard: open, move into the menu, Escape: closed, focus on the menu's button
    summary.focus()
    page.keyboard.press("Enter")
    expect(more).to_have_attribute("open", "")
    page.keyboard.press("Tab")
    expect(more.get_by_role("link", name="Webhook Subscriptions")).to_be_focused()
    page.keyboard.press("Escape")
    expect(more).not_to_have_attribute("open", "")
    expect(summary).to_be_focused()

    # the three dots the same way
    actions = page.locator("#actions-menu")
    actions.locator("summary").click()
    expect(actions).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(actions).not_to_have_attribute("open", "")
    expect(actions.locator("summary")).to_be_focused()

    # a click outside closes an open menu; a click inside it does not
    summary.click()
    expect(more).to_have_attribute("open", "")
    page.get_by_role("heading", name="Webhook Subscriptions").click()
    expect(more).not_to_have_attribute("open", "")
    actions.locator("summary").click()
    summary.click()  # opening another menu closes this one
    expect(actions).not_to_have_attribute("open", "")
    expect(more).to_have_attribute("open", "")
