"""The Content-Security-Policy as Chromium enforces it: inline script refused and reported, no
labhooks page shown inside another site's frame. (The API documentation runs under its own
policy, offline, in test_api_docs.py; every test in test_web_ui.py also fails on any violation
while it clicks through the UI; the headers themselves are checked in test_web_security.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def context_options() -> dict[str, Any]:
    return {}  # Playwright's defaults


def test_the_policy_refuses_inline_script_and_framing(
    page: Page, server, csp_violations: list[str]
) -> None:
    victim = f"{server.url}/login"
    page.goto(victim)
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate(
            """() => {
              const script = document.createElement("script");
              script.textContent = "window.injected = true";
              document.head.append(script);
            }"""
        )
    assert page.evaluate("window.injected") is None
    assert any("script-src" in v for v in csp_violations), csp_violations

    # A page of another site frames the login page: shown only when served without both
    # headers (the check's control); either of them alone keeps it out.
    attacker = f'<iframe id="victim" title="labhooks" src="{victim}"></iframe>'

    def served_without(removed: tuple[str, ...]) -> Callable[[Route], None]:
        def handle(route: Route) -> None:
            response = route.fetch()
            kept = {k: v for k, v in response.headers.items() if k.lower() not in removed}
            route.fulfill(response=response, headers=kept)

        return handle

    both = ("content-security-policy", "x-frame-options")
    for removed in (both, both[:1], both[1:], ()):
        page.route(victim, served_without(removed))
        page.goto("about:blank")
        page.set_content(attacker)  # returns once the frame has loaded, or failed to
        framed = page.frame_locator("#victim").get_by_label("E-mail")
        if removed == both:
            expect(framed).to_be_visible()
        else:
            [frame] = page.main_frame.child_frames
            assert frame.url != victim, removed
            expect(framed).to_have_count(0)
        page.unroute(victim)
    csp_violations.clear()  # provoked on purpose
