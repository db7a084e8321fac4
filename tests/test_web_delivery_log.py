"""The delivery log in Chromium: a line per delivery saying what it was and how it went, failing
ones in red with their next retry, retry now, paging and filters over 120 deliveries, search by
event id and by delivery id (webhook-id), details that open one delivery at a time; and the same
log read without JavaScript.

Runs on SQLite only, as the other browser tests do. Screenshots (desktop and 390 px) go to the
temporary folder of tests/web_helpers.py, never into docs/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.api import Api, Lab, new_lab
from tests.delivery_helpers import Wired, make_due, run_sql, wire
from tests.live import LiveServer
from tests.receiver import Receiver, Reply
from tests.web_helpers import (
    DESKTOP,
    Html,
    at_phone_width,
    in_own_thread,
    log_in,
    web_client,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TOKYO = timezone(timedelta(hours=9))  # the browser's zone here; no daylight saving time
ZONE = "Asia/Tokyo, UTC+09:00"
RED, GREEN = "rgb(180, 35, 24)", "rgb(6, 118, 71)"  # app.css: --danger, --ok
MANY, FAILED, COMMANDS, OLD = 120, 15, 20, 40  # the crowded log: how many of each


@pytest.fixture
def context_options() -> dict[str, Any]:
    return {"viewport": DESKTOP, "timezone_id": "Asia/Tokyo"}


def in_tokyo(moment: str) -> str:
    return datetime.fromisoformat(moment).astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")


def open_log(page: Page, server: LiveServer, lab: Lab, subscription_id: str) -> None:
    log_in(page, server.url, f"admin@{lab.name}.example")
    page.goto(f"{server.url}/webhook-subscriptions/{subscription_id}")


def color(page: Page, selector: str) -> str:
    return str(page.locator(selector).evaluate("e => getComputedStyle(e).color"))


def test_a_delivery_failing_with_500_then_succeeding_shows_red_then_green(
    page: Page,
    server: LiveServer,
    lab: Lab,
    receiver: Receiver,
    database_url: str,
    screenshots: Path,
) -> None:
    wired = wire(lab, receiver)
    path = wired.path()
    refusal = Reply(500, body=b'{"error": "LIMS database locked"}')
    subscription = wired.subscribe(receiver.script(path, refusal, Reply()), retry_schedule=[0, 90])
    [event_id] = wired.publish(wired.event(12.3456))["event_ids"]
    [listed] = wired.attempted(subscription["id"], 1)
    delivery = wired.delivery(listed["id"])
    assert delivery["status"] == "pending"  # the API's word; the log's is "failing"
    open_log(page, server, lab, subscription["id"])

    line = f"#delivery-{delivery['id']}"
    expect(page.locator(f"{line} .status")).to_have_text("failing")
    assert color(page, f"{line} .status") == RED
    expect(page.locator(f"{line} .event-type")).to_have_text("data_point.created")
    expect(page.locator(f"{line} .source")).to_have_text(f"{wired.device['name']} · Weight")
    expect(page.locator(f"{line} .value")).to_have_text("12.3456 g")
    expect(page.locator(f"{line} .event-id")).to_contain_text(event_id)
    expect(page.locator(f"{line} .meta")).to_contain_text("1 attempt")
    expect(page.locator(f"{line} .code")).to_have_text("HTTP 500")
    # created a moment ago, the exact time in Tokyo on hover; the retry in a minute and a half
    expect(page.locator(f"{line} .when .ago")).to_have_text(re.compile(r"just now|1 min ago"))
    expect(page.locator(f"{line} .when .ago")).to_have_attribute(
        "title", f"{in_tokyo(delivery['created_at'])} ({ZONE})"
    )
    retry = page.locator(f"{line} .next time")
    shown = datetime.fromisoformat(retry.get_attribute("datetime") or "")
    assert abs(shown - datetime.fromisoformat(delivery["next_attempt_at"])) < timedelta(
        milliseconds=1
    )
    expect(retry).to_have_text(in_tokyo(delivery["next_attempt_at"]))
    expect(page.locator(f"{line} .next")).to_contain_text("next retry")
    expect(page.locator(f"{line} .next .ago")).to_have_text(re.compile(r"in [12] min"))
    expect(page.locator(f"{line} .next .ago")).to_have_attribute(
        "title", f"{in_tokyo(delivery['next_attempt_at'])} ({ZONE})"
    )
    expect(page.get_by_role("button", name=f"Retry now delivery {delivery['id']}")).to_be_visible()

    page.locator(f"{line} summary").click()
    details = page.locator(f"{line} .delivery-details")
    expect(details).to_contain_text("Attempt 1 of 2 failed; the next is due at")
    expect(details.locator(".attempt")).to_contain_text(
        "The target failed while handling the request (500 Internal Server Error)"
    )
    expect(details.locator(".attempt pre").last).to_have_text(
        '{\n  "error": "LIMS database locked"\n}'
    )
    expect(details.locator("pre.body")).to_contain_text('"value": 12.3456')
    expect(details.locator(".attempt")).to_contain_text("Authorization: ••••••••")
    page.screenshot(path=screenshots / "delivery-log-failing.png", full_page=True)
    at_phone_width(page, screenshots / "delivery-log-failing-phone.png")

    in_own_thread(make_due, database_url, delivery["id"])  # as if its 90 s had passed
    wired.settle(subscription["id"], "succeeded")
    page.reload()
    expect(page.locator(f"{line} .status")).to_have_text("succeeded")
    assert color(page, f"{line} .status") == GREEN
    expect(page.locator(f"{line} .next")).to_have_count(0)
    expect(page.locator(f"{line} .code")).to_have_text("HTTP 200")
    page.locator(f"{line} summary").click()
    attempts = page.locator(f"{line} .attempt")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1)).to_contain_text("Delivered: the target answered 200 OK.")
    expect(page.locator(f"{line} .outcome")).to_contain_text("Delivered on attempt 2")


def test_retry_now_sends_a_failing_delivery_at_once(
    page: Page, server: LiveServer, lab: Lab, receiver: Receiver
) -> None:
    wired = wire(lab, receiver)
    path = wired.path()
    url = receiver.script(path, Reply(503), Reply())
    subscription = wired.subscribe(url, retry_schedule=[0, 3600])  # the next retry in an hour
    wired.publish(wired.event())
    [delivery] = wired.attempted(subscription["id"], 1)
    open_log(page, server, lab, subscription["id"])
    expect(page.locator(".delivery .next .ago")).to_have_text(re.compile(r"in (1 h|\d\d min)"))
    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_role("status")).to_contain_text("Retrying now")
    receiver.wait_for(path, 2, timeout=10)
    wired.settle(subscription["id"], "succeeded")
    page.reload()
    expect(page.locator(f"#delivery-{delivery['id']} .status")).to_have_text("succeeded")
    expect(page.get_by_role("button", name="Retry now")).to_have_count(0)


# -- 120 deliveries: paging, filters, search, one delivery opened ---------------------------


@dataclass
class Crowd:
    wired: Wired
    subscription_id: str
    deliveries: list[dict[str, Any]]  # newest first, as the API lists them

    @property
    def lab(self) -> Lab:
        return self.wired.lab

    def ids(self, keep: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[str]:
        return [d["id"] for d in self.deliveries if keep(d)]


@pytest.fixture(scope="module")
def crowd(server_admin: Api, receiver: Receiver, database_url: str) -> Crowd:
    """120 deliveries of one subscription: every sixth a command.completed, the first 15 that
    reached the receiver failed (no retries), the 40 oldest created three days ago."""
    wired = wire(new_lab(server_admin), receiver)
    path = wired.path()
    url = receiver.script(path, *[Reply(500)] * FAILED, Reply())
    both = [{"channel_id": wired.channel_id, "events": ["data_point.created", "command.completed"]}]
    subscription = wired.subscribe(url, channels=both, retry_schedule=[0])
    command = {"type": "command.completed", "data": {"command": "tare", "result": "ok"}}
    events = [wired.event(float(i), **(command if i % 6 == 5 else {})) for i in range(MANY)]
    wired.publish(*events)
    wired.settle(subscription["id"], "failed", count=FAILED, timeout=60)
    wired.settle(subscription["id"], "succeeded", count=MANY - FAILED, timeout=60)
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S.%f")
    in_own_thread(
        run_sql,
        database_url,
        "UPDATE deliveries SET created_at = :created WHERE id IN (SELECT id FROM deliveries "
        "WHERE subscription_id = :subscription ORDER BY id LIMIT :old)",
        created=three_days_ago,
        subscription=subscription["id"],
        old=OLD,
    )
    listed = sorted(wired.all_deliveries(subscription["id"]), key=lambda d: d["id"], reverse=True)
    types = {e["id"]: e["type"] for e in _events(wired, listed)}
    for delivery in listed:
        delivery["type"] = types[delivery["event_id"]]
    return Crowd(wired, subscription["id"], listed)


def _events(wired: Wired, deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [wired.admin.ok("GET", f"/events/{d['event_id']}") for d in deliveries]


def shown_ids(page: Page) -> list[str]:
    return [
        (element.get_attribute("id") or "").removeprefix("delivery-")
        for element in page.locator("#delivery-log > li").all()
    ]


def every_page(page: Page) -> list[str]:
    """The ids on this page of the log and on every page its "Next page" leads to."""
    found = shown_ids(page)
    while (next_link := page.get_by_role("link", name="Next page")).count():
        next_link.click()
        expect(page.get_by_role("link", name="First page")).to_be_visible()
        found += shown_ids(page)
    return found


def test_the_log_pages_through_120_deliveries_newest_first(
    page: Page, server: LiveServer, crowd: Crowd
) -> None:
    open_log(page, server, crowd.lab, crowd.subscription_id)
    expect(page.locator("#delivery-log > li")).to_have_count(50)
    assert every_page(page) == crowd.ids()
    expect(page.locator("#delivery-log > li")).to_have_count(MANY - 100)  # the third page
    page.get_by_role("link", name="First page").click()
    assert shown_ids(page) == crowd.ids()[:50]


def test_the_filters_narrow_the_log_and_keep_what_was_chosen(
    page: Page, server: LiveServer, crowd: Crowd, screenshots: Path
) -> None:
    open_log(page, server, crowd.lab, crowd.subscription_id)

    page.get_by_label("Status").select_option("failed")  # submits at once
    expect(page).to_have_url(re.compile(r"[?&]status=failed(&|#|$)"))
    assert shown_ids(page) == crowd.ids(lambda d: d["status"] == "failed")
    assert len(shown_ids(page)) == FAILED
    for status in page.locator("#delivery-log .status").all():
        expect(status).to_have_text("failed")
        assert status.evaluate("e => getComputedStyle(e).color") == RED
    expect(page.get_by_label("Status")).to_have_value("failed")

    page.get_by_label("Event type").select_option("command.completed")  # the status stays
    expect(page).to_have_url(re.compile("event_type=command.completed"))
    wanted = crowd.ids(lambda d: d["status"] == "failed" and d["type"] == "command.completed")
    assert shown_ids(page) == wanted
    page.get_by_label("Status").select_option("")  # empty fields stay out of the address
    expect(page).to_have_url(re.compile(r"\?event_type=command.completed#deliveries$"))
    assert every_page(page) == crowd.ids(lambda d: d["type"] == "command.completed")
    assert len(crowd.ids(lambda d: d["type"] == "command.completed")) == COMMANDS
    page.get_by_role("link", name="Clear filters").click()

    # the time range, in the browser's zone: the last two days hold all but the 40 oldest
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).astimezone(TOKYO)
    page.get_by_label("From").fill(two_days_ago.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.get_by_label("From")).to_have_value(two_days_ago.strftime("%Y-%m-%dT%H:%M"))
    expect(page).to_have_url(re.compile(r"since_offset=540"))
    assert every_page(page) == crowd.ids()[: MANY - OLD]
    page.goto(f"{server.url}/webhook-subscriptions/{crowd.subscription_id}")
    page.get_by_label("To").fill(two_days_ago.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Filter", exact=True).click()
    assert shown_ids(page) == crowd.ids()[MANY - OLD :]
    page.locator("#deliveries").screenshot(path=screenshots / "delivery-log-filtered.png")

    # From after To: said beside To, everything typed kept, nothing listed
    page.get_by_label("From").fill(datetime.now(TOKYO).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.locator("#log-until-error")).to_have_text("must be later than From")
    expect(page.get_by_label("To")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("To")).to_have_value(two_days_ago.strftime("%Y-%m-%dT%H:%M"))
    expect(page.locator("#filter-invalid")).to_be_visible()


def test_search_by_event_id_and_by_delivery_id_opens_that_delivery(
    page: Page, server: LiveServer, crowd: Crowd
) -> None:
    command = next(d for d in crowd.deliveries[60:] if d["type"] == "command.completed")
    open_log(page, server, crowd.lab, crowd.subscription_id)
    page.get_by_label("Event or delivery id").fill(f" {command['event_id']} ")  # as pasted
    page.get_by_label("Event or delivery id").press("Enter")
    assert shown_ids(page) == [command["id"]]
    line = page.locator(f"#delivery-{command['id']}")
    expect(line.locator(".value")).to_have_text("tare: ok")
    expect(line.locator("details")).to_have_attribute("open", "")  # the one found, opened
    expect(line.locator(".delivery-details")).to_contain_text(command["id"])

    page.get_by_label("Event or delivery id").fill(command["id"])  # the webhook-id header
    page.get_by_label("Event or delivery id").press("Enter")
    assert shown_ids(page) == [command["id"]]
    expect(line.locator(".delivery-details")).to_contain_text(command["event_id"])

    page.get_by_label("Event or delivery id").fill("dlv_nope")
    page.get_by_label("Event or delivery id").press("Enter")
    expect(page.locator("#log-search-error")).to_contain_text("Enter a whole event id")
    expect(page.get_by_label("Event or delivery id")).to_have_value("dlv_nope")

    missing = "evt_" + "0" * 32
    page.get_by_label("Event or delivery id").fill(missing)
    page.get_by_label("Event or delivery id").press("Enter")
    expect(page.locator("#empty-log")).to_have_text(f"No deliveries with id {missing} yet.")


def test_one_delivery_opens_alone_with_its_details(
    page: Page, server: LiveServer, crowd: Crowd
) -> None:
    open_log(page, server, crowd.lab, crowd.subscription_id)
    third = crowd.ids()[2]
    page.locator(f"#delivery-{third} summary").click()
    expect(page.locator(f"#delivery-{third} .attempt")).to_contain_text("HTTP 200")
    expect(page.locator("#delivery-log details[open]")).to_have_count(1)
    expect(page.locator("#delivery-log .delivery-details")).to_have_count(1)  # fetched alone
    page.locator(f"#delivery-{third} summary").click()  # closed again
    expect(page.locator("#delivery-log details[open]")).to_have_count(0)


# -- without JavaScript -----------------------------------------------------------------------


def test_without_javascript_details_open_by_link_and_bad_filters_are_said(
    server: LiveServer, crowd: Crowd
) -> None:
    base = f"/webhook-subscriptions/{crowd.subscription_id}"
    first = crowd.ids()[0]
    with web_client(server.url, f"admin@{crowd.lab.name}.example") as client:
        page = Html(client.get(base).text)
        [link] = [a for a in page.find("a", f"delivery-{first}") if "open=" in a.attrs["href"]]
        opened = Html(client.get(link.attrs["href"]).text)
        assert opened.find("div", f"delivery-{first}", id=f"details-{first}")
        assert "Request headers" in opened.text_of(f"details-{first}")
        assert not opened.find("div", id=f"details-{crowd.ids()[1]}")
        # the address htmx fetches the details from leads a browser to the same
        moved = client.get(f"/deliveries/{first}")
        assert moved.status_code == 303 and f"open={first}" in moved.headers["location"]

        refused = client.get(base, params={"status": "bogus", "q": "x", "since": "yesterday"})
        assert refused.status_code == 422
        page = Html(refused.text)
        assert "must be one of" in page.text_of("status-filter-error")
        assert "Enter a whole event id" in page.text_of("log-search-error")
        assert "date and time" in page.text_of("log-since-error")
        [since] = page.find("input", id="log-since")
        assert since.attrs["value"] == "yesterday"
        assert not page.find("ul", id="delivery-log")
