"""The subscription page's test event and signing secret, in Chromium: the test event is chosen
(ping by default, or a sample of a subscribed type), its body shown before it is sent, and what
the receiver gets is what was shown; the secret is revealed, copied and hidden again; the
"verify in Python / Node.js" code shown verifies real deliveries.

Runs on SQLite only. Screenshots go to the temporary folder of tests/web_helpers.py.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.api import Api
from tests.delivery_helpers import Wired
from tests.live import LiveServer
from tests.receiver import Received, Receiver
from tests.web_helpers import (
    DESKTOP,
    Html,
    at_phone_width,
    log_in,
    member_of,
    web_client,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SUBS = "/webhook-subscriptions"


@pytest.fixture
def context_options() -> dict[str, Any]:
    return {
        "viewport": DESKTOP,
        "timezone_id": "Europe/Berlin",
        "permissions": ["clipboard-read", "clipboard-write"],  # for the Copy buttons
    }


def subscribe_both_devices(lims: Wired, api: Api, **extra: Any) -> tuple[dict[str, Any], str]:
    """The member's subscription to the balance's weights and the pH meter's incidents."""
    path = lims.path()
    channels = [
        {"channel_id": lims.channel_id, "events": ["data_point.created"]},
        {"channel_id": lims.ph["channels"][0]["id"], "events": ["incident.opened"]},  # type: ignore[attr-defined]
    ]
    subscription = lims.subscribe(lims.receiver.url(path), api=api, channels=channels, **extra)
    return subscription, path


def without_fresh_fields(body: dict[str, Any]) -> dict[str, Any]:
    """A test event's body less what is made anew when it is sent: its event id and time."""
    data = {k: v for k, v in body["data"].items() if k != "event_id"}
    return {k: v for k, v in body.items() if k != "timestamp"} | {"data": data}


def shown_body(page: Page) -> dict[str, Any]:
    return dict(json.loads(page.locator("#test-body").text_content() or ""))


def test_the_test_event_is_chosen_shown_and_sent_as_shown(
    page: Page, server: LiveServer, lims: Wired, receiver: Receiver, screenshots: Path
) -> None:
    member, _, email = member_of(lims)
    subscription, path = subscribe_both_devices(lims, member)
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}/{subscription['id']}")

    # ping by default: shown, then sent as shown
    choices = page.locator("#test-event input[type=radio]")
    expect(choices).to_have_count(3)  # ping, and each subscribed type once
    expect(page.get_by_label("ping (default)")).to_be_checked()
    ping = shown_body(page)
    assert ping["type"] == "ping" and ping["data"]["test"] is True
    assert "device" not in ping["data"]  # about no device: no LIMS records a reading from it
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("status")).to_have_text("Test event sent.")
    [sent] = receiver.wait_for(path, 1)
    assert without_fresh_fields(sent.json) == without_fresh_fields(ping)

    # a sample of a subscribed type, chosen explicitly: its body replaces the ping's
    page.get_by_label("incident.opened").check()
    expect(page.locator("#test-preview-hint")).to_contain_text("incident.opened")
    sample = shown_body(page)
    assert sample["type"] == "incident.opened"
    assert sample["data"]["device"]["name"] == "pH meter SevenExcellence"
    assert sample["data"]["test"] is True
    page.screenshot(path=screenshots / "test-event-sample.png", full_page=True)
    at_phone_width(page, screenshots / "test-event-sample-phone.png")
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("status")).to_have_text("Test event sent.")
    _, received = receiver.wait_for(path, 2)
    assert without_fresh_fields(received.json) == without_fresh_fields(sample)
    expect(page.get_by_label("incident.opened")).to_be_checked()  # the choice stays

    # the log says what went out
    lims.settle(subscription["id"], "succeeded", count=2)
    page.reload()
    newest = page.locator("#delivery-log > li").first
    expect(newest.locator(".event-type")).to_have_text("incident.opened")
    expect(newest.locator(".source")).to_have_text("pH meter SevenExcellence · pH")
    expect(newest.locator(".value")).to_have_text("8.62 > 8.5 (warning)")
    expect(newest.locator(".tag")).to_have_text("test")
    older = page.locator("#delivery-log > li").nth(1)
    expect(older.locator(".event-type")).to_have_text("ping")
    expect(older.locator(".source")).to_have_count(0)


def test_without_javascript_the_choice_is_shown_and_only_a_subscribed_type_is_sent(
    server: LiveServer, lims: Wired, receiver: Receiver
) -> None:
    member, _, email = member_of(lims)
    subscription, path = subscribe_both_devices(lims, member)
    page_url = f"{SUBS}/{subscription['id']}"
    with web_client(server.url, email) as client:
        page = Html(client.get(page_url, params={"test_event": "data_point.created"}).text)
        assert json.loads(page.text_of("test-body"))["type"] == "data_point.created"
        [chosen] = page.find("input", "test-preview", name="event_type")
        assert chosen.attrs["value"] == "data_point.created"
        refused = client.post(
            f"{page_url}/test",
            data={"csrf_token": page.csrf(), "event_type": "device.status_changed"},
        )
        assert refused.status_code == 422
        assert "does not select this event type" in Html(refused.text).text_of("test-event-error")
        sent = client.post(
            f"{page_url}/test", data={"csrf_token": page.csrf(), "event_type": "data_point.created"}
        )
        assert sent.status_code == 303
        assert "test_event=data_point.created" in sent.headers["location"]
    [request] = receiver.wait_for(path, 1)
    assert request.json["type"] == "data_point.created" and request.json["data"]["test"] is True


def test_the_secret_is_copied_hidden_and_verifies_with_the_python_shown(
    page: Page,
    server: LiveServer,
    lims: Wired,
    receiver: Receiver,
    screenshots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member, _, email = member_of(lims)
    subscription, path = subscribe_both_devices(lims, member)
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}/{subscription['id']}")

    page.get_by_role("button", name="Reveal secret").click()
    secret = page.locator("#secret-value")
    expect(secret).to_contain_text("whsec_")
    assert secret.text_content() == member.ok("GET", f"{SUBS}/{subscription['id']}/secret")["key"]
    expect(page.get_by_role("button", name="Hide secret")).to_be_focused()  # Reveal became Hide
    expect(page.get_by_role("button", name="Reveal secret")).to_have_count(0)
    page.get_by_role("button", name="Copy the secret").click()
    expect(page.locator("button[data-copy=secret-value]")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret.text_content()
    page.get_by_text("Verify deliveries in Python or Node.js").click()
    expect(page.locator("#verify-snippets")).to_contain_text(
        "webhook-id, webhook-timestamp and webhook-signature, and this subscription's own: "
        "Authorization"
    )
    page.locator("#signature").screenshot(path=screenshots / "secret-revealed.png")
    at_phone_width(page, screenshots / "secret-revealed-phone.png")

    page.get_by_role("button", name="Hide secret").click()
    expect(page.locator("#secret-value")).to_have_count(0)
    expect(page.get_by_role("button", name="Reveal secret")).to_be_focused()

    # the Python shown verifies a real delivery, with the secret from the environment
    page.get_by_role("button", name="Send test event").click()
    [request] = receiver.wait_for(path, 1)
    monkeypatch.setenv("LABHOOKS_WEBHOOK_SECRET", str(secret_of(member, subscription)))
    verify = python_verifier(page.locator("#verify-python").text_content() or "")
    assert verify(request.body, request.headers)["type"] == "ping"
    with pytest.raises(Exception, match="No matching signature"):
        verify(request.body.replace(b"ping", b"pong"), request.headers)


def test_an_ed25519_subscription_shows_code_that_verifies_with_its_public_key(
    page: Page, server: LiveServer, lims: Wired, receiver: Receiver, tmp_path: Path
) -> None:
    member, _, email = member_of(lims)
    subscription, path = subscribe_both_devices(lims, member, signature_scheme="ed25519")
    [key] = subscription["public_keys"]
    log_in(page, server.url, email)
    page.goto(f"{server.url}{SUBS}/{subscription['id']}")
    page.get_by_text("Verify deliveries in Python or Node.js").click()
    python = page.locator("#verify-python").text_content() or ""
    node = page.locator("#verify-node").text_content() or ""
    assert key["key"] in python and key["key"] in node  # not secret: the code holds it
    page.get_by_role("button", name="Send test event").click()
    [request] = receiver.wait_for(path, 1)

    verify = python_verifier(python)
    assert verify(request.body, request.headers)["type"] == "ping"
    with pytest.raises(ValueError, match="no valid v1a signature"):
        verify(request.body + b" ", request.headers)

    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node.js code was not run")
    assert run_node(node, request, tmp_path) == "ping"
    tampered = Received(request.path, request.headers, request.body + b" ", request.at)
    with pytest.raises(AssertionError, match="no valid v1a signature"):
        run_node(node, tampered, tmp_path)


def secret_of(api: Api, subscription: dict[str, Any]) -> str:
    return str(api.ok("GET", f"{SUBS}/{subscription['id']}/secret")["key"])


def python_verifier(code: str) -> Any:
    """The page's Python, run as a receiver would run it: its `verify`."""
    namespace: dict[str, Any] = {}
    exec(compile(code, "verify.py", "exec"), namespace)  # noqa: S102 (the page's own code)
    return namespace["verify"]


def run_node(code: str, request: Received, folder: Path) -> str:
    """The page's Node.js, given the request as Node's http module would (lower-case header
    names, the body as a Buffer); what `verify` returned's type, or AssertionError with why."""
    script = folder / "verify.js"
    script.write_text(
        code
        + """
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
try {
  console.log(verify(Buffer.from(input.body, "base64"), input.headers).type);
} catch (error) {
  console.log(`refused: ${error.message}`);
}
"""
    )
    given = {
        "body": base64.b64encode(request.body).decode(),
        "headers": {name.lower(): value for name, value in request.headers.items()},
    }
    done = subprocess.run(
        ["node", str(script)],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    answer = done.stdout.strip()
    assert not answer.startswith("refused"), answer
    return answer
