"""The security headers a browser obeys and an auditor checks, on every kind of answer: pages
(logged in or not, errors too), API answers and problem documents, static files, the API's
documentation pages; HSTS only when served over HTTPS. The browser's side is in
test_web_browser_security.py (the policy refuses inline script and framing) and test_web_ui.py
(the UI works under the policy)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import httpx
import pytest

from tests.api import Api, Lab
from tests.conftest import SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD, settings_for
from tests.delivery_helpers import wire
from tests.live import LiveServer, fresh_database
from tests.receiver import Receiver
from tests.web_helpers import Html, web_client

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

UI_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
    "frame-ancestors": ["'none'"],
}


def policy(response: httpx.Response) -> dict[str, list[str]]:
    directives = [d.split() for d in response.headers["content-security-policy"].split(";")]
    return {name: sources for name, *sources in directives}


def assert_never_framed_nor_sniffed(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert policy(response)["frame-ancestors"] == ["'none'"]
    assert response.headers["referrer-policy"] == "same-origin"


def assert_ui_page(response: httpx.Response) -> None:
    """A page of the UI: the strict policy, not stored, and nothing inline it would refuse."""
    assert response.headers["content-type"].startswith("text/html")
    assert_never_framed_nor_sniffed(response)
    assert policy(response) == UI_POLICY
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers
    assert inline_code(Html(response.text)) == [], response.url


def inline_code(page: Html) -> list[str]:
    """What the UI's policy would block: inline scripts, handlers, styles, javascript: links."""
    found = []
    for element in page.elements:
        if element.tag == "script" and ("src" not in element.attrs or element.text.strip()):
            found.append(f"<script> {element.text[:60]!r}")
        if element.tag == "style":
            found.append(f"<style> {element.text[:60]!r}")
        found += [
            f"<{element.tag} {name}=…>"
            for name, value in element.attrs.items()
            if name.startswith(("on", "hx-on")) or name == "style" or "javascript:" in value
        ]
    return found


def sha256_source(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


@pytest.fixture
def subscription_with_a_delivery(lab: Lab, receiver: Receiver) -> str:
    """A subscription of `lab` whose delivery log shows one attempt."""
    wired = wire(lab, receiver)
    subscription = wired.subscribe(receiver.url(wired.path()))
    wired.publish(wired.event())
    wired.settle(subscription["id"], "succeeded")
    return str(subscription["id"])


def test_the_login_page_has_the_strict_policy_and_is_not_stored(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/login")
    assert response.status_code == 200
    assert_ui_page(response)  # it carries the session's CSRF token


def test_every_page_of_a_logged_in_user_has_the_strict_policy_and_is_not_stored(
    server: LiveServer, lab: Lab, subscription_with_a_delivery: str
) -> None:
    subscription_id = subscription_with_a_delivery
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        for path in (
            "/webhook-subscriptions",
            "/webhook-subscriptions/new",
            f"/webhook-subscriptions/{subscription_id}",
            f"/webhook-subscriptions/{subscription_id}/edit",
            "/organization",
        ):
            response = client.get(path)
            assert response.status_code == 200, path
            assert_ui_page(response)
        fragment = client.post(
            f"/webhook-subscriptions/{subscription_id}/secret",
            headers={"HX-Request": "true", "X-CSRF-Token": Html(response.text).csrf()},
        )
        assert fragment.status_code == 200 and "whsec_" in fragment.text
        assert fragment.headers["cache-control"] == "no-store"  # the signing secret
        assert_never_framed_nor_sniffed(fragment)
    with web_client(server.url, SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD) as client:
        assert_ui_page(client.get("/admin"))


def test_an_html_error_page_has_the_strict_policy(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/no-such-page")
    assert response.status_code == 404
    assert_ui_page(response)


def test_api_answers_and_problem_documents_are_not_sniffed_nor_framed(
    server: LiveServer, server_admin: Api
) -> None:
    answer = server_admin.get("/organizations")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    refused = server_admin.as_(None).get("/organizations")
    too_large = server_admin.post("/events", {"data": "x" * 100_000})  # past the body limit
    for response, status in ((answer, 200), (refused, 401), (too_large, 413)):
        assert response.status_code == status
        assert_never_framed_nor_sniffed(response)
        assert "strict-transport-security" not in response.headers
    for problem in (refused, too_large):
        assert problem.headers["content-type"] == "application/problem+json"


def test_static_files_are_not_sniffed_and_stay_cacheable(server: LiveServer) -> None:
    for path, kind in (("/static/app.css", "text/css"), ("/static/app.js", "text/javascript")):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
        assert_never_framed_nor_sniffed(response)
        assert "no-store" not in response.headers.get("cache-control", "")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_documentation_allows_exactly_what_it_loads(server: LiveServer, page: str) -> None:
    response = httpx.get(f"{server.url}{page}")
    assert response.status_code == 200
    assert_never_framed_nor_sniffed(response)
    allowed = policy(response)
    html = Html(response.text)
    scripts = allowed["script-src"]
    for script in html.find("script"):
        if "src" in script.attrs:  # vendored into the package: from this site, never a CDN
            assert script.attrs["src"].startswith("/static/vendor/")
            assert "'self'" in scripts
        else:
            assert sha256_source(script.text) in scripts  # by hash, not 'unsafe-inline'
    for link in html.find("link"):
        directive = "style-src" if link.attrs["rel"] == "stylesheet" else "img-src"
        assert link.attrs["href"].startswith("/static/vendor/")
        assert "'self'" in allowed[directive]
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "https:"} & set(scripts)
    assert not [s for sources in allowed.values() for s in sources if "://" in s]  # no CDN
    assert allowed["object-src"] == allowed["base-uri"] == ["'none'"]
    assert httpx.get(f"{server.url}/openapi.json").headers["x-content-type-options"] == "nosniff"


def test_hsts_is_sent_only_when_served_over_https(
    server: LiveServer, tmp_path: Path, database_url: str
) -> None:
    paths = ("/login", "/static/app.css", "/api/v1/organizations", "/no-such-page", "/docs")
    for path in paths:
        assert "strict-transport-security" not in httpx.get(f"{server.url}{path}").headers
    with (
        fresh_database(database_url, tmp_path) as url,
        LiveServer(settings_for(url, tmp_path, secure_cookies=True), with_worker=False) as secure,
    ):
        for path in paths:
            hsts = httpx.get(f"{secure.url}{path}").headers["strict-transport-security"]
            match = re.fullmatch(r"max-age=(\d+)", hsts)
            assert match and int(match[1]) >= 365 * 24 * 3600, (path, hsts)
