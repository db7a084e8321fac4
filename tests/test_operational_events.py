"""Operational events: labhooks tells an organisation-level subscription about its own
subscriptions (disabled, secret rotated, a delivery exhausted), signed like every delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.api import PASSWORD, Lab, problem_fields, unique
from tests.delivery_helpers import Wired, query, wire
from tests.live import LiveServer
from tests.receiver import Received, Receiver, Reply
from tests.web_helpers import Html, web_client

OK = Reply()
FAIL = Reply(status=500, body=b"down")
GONE = Reply(status=410, body=b"gone")
ALL = ["subscription.disabled", "subscription.secret_rotated", "delivery.exhausted"]


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


def subscribe_organization(wired: Wired, path: str, events: list[str]) -> dict[str, Any]:
    """An organisation-level subscription: no channel, only operational events."""
    body = {"target_url": wired.receiver.url(path), "channels": [], "organization_events": events}
    return dict(wired.admin.ok("POST", "/webhook-subscriptions", body, 201))


def verified(wired: Wired, subscription: dict[str, Any], request: Received) -> dict[str, Any]:
    secret = wired.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    return dict(Webhook(secret).verify(request.body, request.headers))  # raises if it is not


def stored(database_url: str, subscription_id: str, event_type: str) -> list[Any]:
    """The deliveries of `event_type` queued to the subscription, with their event's device
    and channel."""
    return query(
        database_url,
        "SELECT d.id, e.device_id, e.channel_id FROM deliveries d JOIN events e "
        "ON e.id = d.event_id WHERE d.subscription_id = :s AND e.type = :t",
        s=subscription_id,
        t=event_type,
    )


def failing_since(database_url: str, subscription_id: str, since: datetime) -> None:
    """Stages a failing streak that began at `since`, as if the clock had moved on."""
    from sqlalchemy import update

    from labhooks.storage.database import Database
    from labhooks.storage.models import WebhookSubscription

    async def run() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.execute(
                    update(WebhookSubscription)
                    .where(WebhookSubscription.id == subscription_id)
                    .values(failing_since=since)
                )
        finally:
            await database.dispose()

    asyncio.run(run())


def test_a_410_sends_subscription_disabled_to_the_organisation_subscription_once(
    wired: Wired, database_url: str, server: LiveServer
) -> None:
    watch_path = wired.path()
    watcher = subscribe_organization(wired, watch_path, ALL)
    wired.receiver.script(watch_path, OK)
    gone = wired.subscribe(wired.receiver.script(wired.path(), GONE))
    wired.publish(wired.event())

    [request] = wired.receiver.wait_for(watch_path, 1)
    body = verified(wired, watcher, request)
    assert body["type"] == "subscription.disabled"
    assert body["data"]["organization_id"] == wired.lab.id
    assert body["data"]["subscription"]["id"] == gone["id"]
    assert body["data"]["subscription"]["target_url"] == gone["target_url"]
    assert "410" in body["data"]["reason"]
    assert "device" not in body["data"] and "channel" not in body["data"]

    [delivery] = wired.settle(watcher["id"], "succeeded")
    [(_, device_id, channel_id)] = stored(database_url, watcher["id"], "subscription.disabled")
    assert device_id is None and channel_id is None
    # an event about no device reads like any other, in the API and on the watcher's page
    event = wired.admin.ok("GET", f"/events/{body['data']['event_id']}")
    assert event["type"] == "subscription.disabled"
    assert wired.delivery(delivery["id"])["request_body"] == body
    assert wired.deliveries(watcher["id"], event_type="subscription.disabled") == [delivery]
    with web_client(server.url, f"admin@{wired.lab.name}.example") as admin:
        page = admin.get(f"/webhook-subscriptions/{watcher['id']}")
        assert page.status_code == 200 and "subscription.disabled" in page.text
        opened = admin.get(f"/deliveries/{delivery['id']}", follow_redirects=True)
        assert opened.status_code == 200 and delivery["id"] in opened.text
    # a 410 is reported as the subscription disabled, not as a delivery exhausted
    assert stored(database_url, watcher["id"], "delivery.exhausted") == []
    after = wired.admin.ok("GET", f"/webhook-subscriptions/{gone['id']}")
    assert after["active"] is False and after["disabled_reason"] == body["data"]["reason"]


def test_a_spent_retry_schedule_sends_delivery_exhausted_once(
    wired: Wired, database_url: str
) -> None:
    watch_path = wired.path()
    watcher = subscribe_organization(wired, watch_path, ["delivery.exhausted"])
    wired.receiver.script(watch_path, OK)
    failing = wired.subscribe(wired.receiver.script(wired.path(), FAIL), retry_schedule=[0])
    published = wired.publish(wired.event())

    [failed] = wired.settle(failing["id"], "failed")
    [request] = wired.receiver.wait_for(watch_path, 1)
    body = verified(wired, watcher, request)
    assert body["type"] == "delivery.exhausted"
    data = body["data"]
    assert data["delivery_id"] == failed["id"]
    assert data["failed_event_id"] == published["event_ids"][0]
    assert data["failed_event_type"] == "data_point.created"
    assert data["attempts"] == 1 and data["last_status_code"] == 500
    assert data["subscription"]["id"] == failing["id"]

    wired.settle(watcher["id"], "succeeded")
    assert len(stored(database_url, watcher["id"], "delivery.exhausted")) == 1
    # the failing subscription itself is still active: one failure disables nothing
    assert wired.admin.ok("GET", f"/webhook-subscriptions/{failing['id']}")["active"] is True


def test_failing_for_days_disables_with_the_automatic_reason(
    wired: Wired, database_url: str
) -> None:
    watch_path = wired.path()
    watcher = subscribe_organization(wired, watch_path, ["subscription.disabled"])
    wired.receiver.script(watch_path, OK)
    failing = wired.subscribe(wired.receiver.script(wired.path(), FAIL), retry_schedule=[0])
    failing_since(database_url, failing["id"], datetime(2000, 1, 1, tzinfo=UTC))
    wired.publish(wired.event())

    [request] = wired.receiver.wait_for(watch_path, 1)
    body = verified(wired, watcher, request)
    assert body["type"] == "subscription.disabled"
    assert body["data"]["subscription"]["id"] == failing["id"]
    assert "Deactivated automatically" in body["data"]["reason"]
    wired.settle(watcher["id"], "succeeded")
    assert len(stored(database_url, watcher["id"], "subscription.disabled")) == 1


def test_rotation_is_reported_and_a_disabled_organisation_subscription_hears_nothing_of_itself(
    wired: Wired, database_url: str
) -> None:
    # The first watcher answers 410 to what it is sent: it is disabled, the second hears of it.
    first_path, second_path = wired.path(), wired.path()
    first = subscribe_organization(wired, first_path, ALL)
    wired.receiver.script(first_path, GONE)
    second = subscribe_organization(wired, second_path, ["subscription.disabled"])
    wired.receiver.script(second_path, OK)
    rotated = wired.subscribe(wired.receiver.script(wired.path(), OK))
    wired.admin.ok("POST", f"/webhook-subscriptions/{rotated['id']}/rotate-secret")

    [request] = wired.receiver.wait_for(first_path, 1)
    body = Webhook(
        wired.admin.ok("GET", f"/webhook-subscriptions/{first['id']}/secret")["key"]
    ).verify(request.body, request.headers)
    assert body["type"] == "subscription.secret_rotated"
    assert body["data"]["subscription"]["id"] == rotated["id"]
    assert body["data"]["rotated_by"] == wired.lab.admin_id
    assert body["data"]["previous_secret_expires_at"]

    [notice] = wired.receiver.wait_for(second_path, 1)
    disabled = verified(wired, second, notice)
    assert disabled["type"] == "subscription.disabled"
    assert disabled["data"]["subscription"]["id"] == first["id"]
    wired.settle(second["id"], "succeeded")
    # never queued to the subscription it is about; the rotation is not sent to the second
    assert stored(database_url, first["id"], "subscription.disabled") == []
    assert stored(database_url, second["id"], "subscription.secret_rotated") == []
    assert len(stored(database_url, first["id"], "subscription.secret_rotated")) == 1


def test_organisation_events_are_checked_and_named(wired: Wired, lab: Lab) -> None:
    url = wired.receiver.url(wired.path())
    unknown = lab.admin.post(
        "/webhook-subscriptions",
        {"target_url": url, "channels": [], "organization_events": ["subscription.deleted"]},
    )
    assert unknown.status_code == 422
    assert "subscription.disabled" in problem_fields(unknown)["organization_events.0"]

    neither = lab.admin.post("/webhook-subscriptions", {"target_url": url, "channels": []})
    assert neither.status_code == 422 and "channels" in problem_fields(neither)

    both = wired.subscribe(url, organization_events=["delivery.exhausted"])
    assert both["organization_events"] == ["delivery.exhausted"] and both["channels"]

    only_events = subscribe_organization(wired, wired.path(), ["delivery.exhausted"])
    base = f"/webhook-subscriptions/{only_events['id']}"
    emptied = lab.admin.patch(base, {"organization_events": []})
    assert emptied.status_code == 422 and "organization_events" in problem_fields(emptied)
    assert lab.admin.ok("GET", base)["organization_events"] == ["delivery.exhausted"]


def test_a_member_cannot_subscribe_to_organisation_events(wired: Wired, lab: Lab) -> None:
    member, member_id = lab.add_member()
    lab.grant(member_id, wired.channel_id)
    url = wired.receiver.url(wired.path())
    refused = member.post(
        "/webhook-subscriptions",
        {
            "target_url": url,
            "channels": [{"channel_id": wired.channel_id, "events": ["data_point.created"]}],
            "organization_events": ["subscription.disabled"],
        },
    )
    assert refused.status_code == 403 and "organization_events" in refused.json()["detail"]
    assert member.ok("GET", "/webhook-subscriptions")["items"] == []

    own = wired.subscribe(url, api=member)  # without them, the member subscribes as before
    changed = member.patch(
        f"/webhook-subscriptions/{own['id']}", {"organization_events": ["delivery.exhausted"]}
    )
    assert changed.status_code == 403
    assert member.ok("GET", f"/webhook-subscriptions/{own['id']}")["organization_events"] == []


# -- the web UI: the owner's notice, and the form's choice -----------------------------------


def test_the_owner_sees_why_labhooks_disabled_a_subscription_and_what_failed(
    wired: Wired, lab: Lab, server: LiveServer
) -> None:
    email = f"{unique('owner')}@{lab.name}.example".lower()
    owner = lab.admin.ok(
        "POST", "/users", {"email": email, "name": "Sam", "password": PASSWORD}, 201
    )
    lab.grant(owner["id"], wired.channel_id)
    member = lab.admin.as_(lab.admin.login(email))
    gone = wired.subscribe(wired.receiver.script(wired.path(), GONE), api=member)
    failing = wired.subscribe(
        wired.receiver.script(wired.path(), FAIL), api=member, retry_schedule=[0]
    )
    wired.publish(wired.event())
    wired.settle(gone["id"], "failed")
    wired.settle(failing["id"], "failed")

    with web_client(server.url, email) as browser:
        overview = Html(browser.get("/webhook-subscriptions").text)
        disabled = overview.text_of(f"notice-{gone['id']}")
        assert "labhooks disabled this subscription" in disabled and "410 Gone" in disabled
        exhausted = overview.text_of(f"notice-{failing['id']}")
        assert "1 delivery failed after the last retry" in exhausted
        assert overview.find(
            "a",
            f"notice-{failing['id']}",
            href=(f"/webhook-subscriptions/{failing['id']}?status=failed#deliveries"),
        )
        page = Html(browser.get(f"/webhook-subscriptions/{gone['id']}").text)
        assert "410 Gone" in page.text_of(f"notice-{gone['id']}")
    # the notice is the owner's: the administrator, who sees the subscription, gets none
    with web_client(server.url, f"admin@{lab.name}.example") as admin:
        overview = Html(admin.get("/webhook-subscriptions").text)
        assert not overview.find("li", id=f"notice-{gone['id']}")
        assert overview.find("a", href=f"/webhook-subscriptions/{gone['id']}")
    # activated again, its notice goes; the failed delivery's stays until it is resent
    member.ok("PATCH", f"/webhook-subscriptions/{gone['id']}", {"active": True})
    with web_client(server.url, email) as browser:
        overview = Html(browser.get("/webhook-subscriptions").text)
        assert not overview.find("li", id=f"notice-{gone['id']}")
        assert overview.find("li", id=f"notice-{failing['id']}")


def test_an_administrator_chooses_organisation_events_on_the_form(
    wired: Wired, lab: Lab, server: LiveServer
) -> None:
    url = wired.receiver.url(wired.path())
    with web_client(server.url, f"admin@{lab.name}.example") as admin:
        form = Html(admin.get("/webhook-subscriptions/new").text)
        offered = [e.attrs["value"] for e in form.find("input", name="organization_events")]
        assert offered == ALL
        refused = admin.post(
            "/webhook-subscriptions/new",
            data={"csrf_token": form.csrf(), "target_url": url, "signature_scheme": "hmac"},
        )
        assert refused.status_code == 422
        again = Html(refused.text)
        assert "or organisation events" in again.text_of("channels-error")
        assert again.find("input", id="target_url")[0].attrs["value"] == url  # input kept
        saved = admin.post(
            "/webhook-subscriptions/new",
            data={
                "csrf_token": form.csrf(),
                "target_url": url,
                "signature_scheme": "hmac",
                "organization_events": ["subscription.disabled", "delivery.exhausted"],
            },
        )
        assert saved.status_code == 303, saved.text
    [created] = [
        s
        for s in lab.admin.ok("GET", "/webhook-subscriptions?limit=200")["items"]
        if s["target_url"] == url
    ]
    assert created["organization_events"] == ["subscription.disabled", "delivery.exhausted"]
    assert created["channels"] == []


def test_a_members_form_offers_no_organisation_events(
    wired: Wired, lab: Lab, server: LiveServer
) -> None:
    email = f"{unique('member')}@{lab.name}.example".lower()
    lab.admin.ok("POST", "/users", {"email": email, "name": "Mo", "password": PASSWORD}, 201)
    with web_client(server.url, email) as member:
        form = Html(member.get("/webhook-subscriptions/new").text)
    assert form.find("input", name="target_url")
    assert not form.find("input", name="organization_events")
