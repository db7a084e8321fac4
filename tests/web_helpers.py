"""What the web UI tests share: Chromium, the seed's lab and member, logging in (by browser or by
httpx), the first steps of the seed's procedures, what the Content-Security-Policy refused, where
screenshots go (and one taken at phone width), and a small reader of the served HTML. The
fixtures built on these (`browser`, `context`, `page`, `screenshots`, `lims`) are in
tests/conftest.py."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.api import PASSWORD, Api, Lab
from tests.delivery_helpers import Wired, wire
from tests.receiver import Receiver

CHROMIUM = "/usr/bin/chromium"
# `make screenshots` names docs/screenshots/ here; otherwise a temporary folder, so that running
# the tests never rewrites the README's tracked pictures.
SCREENSHOTS_VARIABLE = "LABHOOKS_SCREENSHOTS"
# The `context` fixture's viewport is DESKTOP, unless a module's `context_options` say otherwise.
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


def screenshot_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get(SCREENSHOTS_VARIABLE)
    if not named:
        return tmp_path_factory.mktemp("screenshots")
    folder = Path(named)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright; skips (or fails under LABHOOKS_REQUIRE_BROWSER)
    when it is missing. Start it after every fixture that calls asyncio.run(): Playwright's sync
    API keeps an event loop running in this thread."""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("LABHOOKS_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


def in_own_thread(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """For asyncio.run() behind a call, while Playwright's loop runs in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call, *args, **kwargs).result()


def at_phone_width(page: Page, path: Path) -> None:
    """A screenshot at 390 px, after checking that nothing scrolls sideways (long keys wrap);
    then back to DESKTOP."""
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size(DESKTOP)


# Playwright's init scripts and bindings are not subject to the page's policy, so this listener
# runs on every page, in every frame, before the page's own scripts.
_CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (e) =>
  window.labhooksCspViolation(`${e.violatedDirective} refused ${e.blockedURI || "inline code"}`
    + ` in ${e.documentURI} (${e.sourceFile || "page"}:${e.lineNumber})`), true);"""


def record_csp_violations(context: BrowserContext) -> list[str]:
    """Every Content-Security-Policy violation in the context's pages, as it happens: the
    `securitypolicyviolation` events, and Chromium's console errors (which also catch one whose
    event a navigation cut short)."""
    violations: list[str] = []

    def on_event(report: str) -> None:
        violations.append(report)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    context.expose_function("labhooksCspViolation", on_event)
    context.add_init_script(_CSP_LISTENER)
    context.on("console", on_console)
    return violations


def log_in(page: Page, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def seed_lab(lab: Lab, receiver: Receiver) -> Wired:
    """The lab of the seed: two devices, a member with access to both, the LIMS registered."""
    wired = wire(lab, receiver)
    wired.ph = lab.add_device(  # type: ignore[attr-defined]
        "pH meter SevenExcellence",
        [
            {
                "key": "ph",
                "name": "pH",
                "unit": "pH",
                "trigger_events": ["data_point.created", "incident.opened"],
            }
        ],
    )
    return wired


def member_of(wired: Wired) -> tuple[Api, str, str]:
    email = f"scientist-{wired.lab.name}@lab.example"
    user = wired.admin.ok(
        "POST", "/users", {"email": email, "name": "Sam Scientist", "password": PASSWORD}, 201
    )
    for channel in (wired.device["channels"][0], wired.ph["channels"][0]):  # type: ignore[attr-defined]
        wired.lab.grant(user["id"], channel["id"])
    return wired.admin.as_(wired.admin.login(email)), user["id"], email


def open_overview(page: Page) -> None:
    """Steps 1-2 of every procedure: click More, navigate to Webhook Subscriptions."""
    page.get_by_text("More", exact=True).click()
    page.get_by_role("link", name="Webhook Subscriptions").click()
    expect(page.get_by_role("heading", name="Webhook Subscriptions")).to_be_visible()


def pick_events(page: Page, device_query: str, events: list[tuple[str, str]]) -> None:
    """In the pop-up: type the device's name, tick (channel, event) checkboxes."""
    search = page.get_by_label("Device name")
    search.fill(device_query)
    others = page.locator("#channel-results h3", has_not_text=re.compile(device_query, re.I))
    expect(others).to_have_count(0)  # the results are the search's, not the previous list
    for channel, event in events:
        group = page.locator(
            "#channel-results fieldset", has=page.locator("legend", has_text=channel)
        )
        group.get_by_label(event).check()


@contextmanager
def web_client(base: str, email: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    """An httpx client logged in through the login form, as a browser without JavaScript is."""
    with httpx.Client(base_url=base, timeout=30) as client:
        form = Html(client.get("/login").text)
        response = client.post(
            "/login", data={"csrf_token": form.csrf(), "email": email, "password": password}
        )
        assert response.status_code == 303, response.text
        yield client


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    within: list[str]  # the ids of the element and its ancestors
    text: str = ""


@dataclass
class _Open:
    element: Element
    parts: list[str] = field(default_factory=list)


class Html(HTMLParser):
    """The elements of a page, each with its text and the ids it sits in."""

    VOID = frozenset({"input", "br", "img", "meta", "link", "hr", "source", "col", "wbr"})
    SIBLINGS = frozenset({"option", "li"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[_Open] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SIBLINGS and self._open and self._open[-1].element.tag == tag:
            self.handle_endtag(tag)  # an unclosed <option> or <li> ends at its next sibling
        values = {k: v or "" for k, v in attrs}
        within = [*(self._open[-1].element.within if self._open else [])]
        if "id" in values:
            within.append(values["id"])
        element = Element(tag, values, within)
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(_Open(element))

    def handle_endtag(self, tag: str) -> None:
        if all(o.element.tag != tag for o in self._open):
            return
        while True:  # closes what was left open inside, as browsers do
            closed = self._open.pop()
            closed.element.text = "".join(closed.parts)
            if self._open:
                self._open[-1].parts.append(closed.element.text)
            if closed.element.tag == tag:
                return

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].parts.append(data)

    def find(self, tag: str, within: str | None = None, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag
            and (within is None or within in e.within)
            and all(e.attrs.get(k) == v for k, v in attrs.items())
        ]

    def link(self, rel: str, within: str | None = None) -> str | None:
        """The href of the one link with this rel in the part of the page named `within`."""
        found = self.find("a", within, rel=rel)
        assert len(found) <= 1, [e.attrs for e in found]
        return found[0].attrs["href"] if found else None

    def first_page_link(self, within: str | None = None) -> str | None:
        found = [e for e in self.find("a", within) if e.text.startswith("First page")]
        return found[0].attrs["href"] if found else None

    def options(self, select_id: str) -> list[tuple[str, str]]:
        return [(e.attrs.get("value", ""), e.text.strip()) for e in self.find("option", select_id)]

    def text_of(self, element_id: str) -> str:
        [element] = [e for e in self.elements if e.attrs.get("id") == element_id]
        return " ".join(element.text.split())

    def csrf(self) -> str:
        return self.find("input", name="csrf_token")[0].attrs["value"]
