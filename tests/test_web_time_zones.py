"""Times on the web pages say their zone, and "Replay failed since…" takes the moment the user
picked in the zone the page says: the browser's own with JavaScript, UTC without."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.api import Lab
from tests.delivery_helpers import Wired, run_sql, wire
from tests.live import LiveServer
from tests.receiver import Receiver, Reply
from tests.web_helpers import Html, in_own_thread, log_in, web_client

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TOKYO = timezone(timedelta(hours=9))  # no daylight saving time


@dataclass
class TwoFailures:
    wired: Wired
    path: str
    subscription_id: str
    older: str  # created two hours ago
    newer: str  # ten minutes ago

    def status(self, delivery_id: str) -> str:
        return str(self.wired.delivery(delivery_id)["status"])


def stage_two_failures(lab: Lab, receiver: Receiver, database_url: str) -> TwoFailures:
    wired = wire(lab, receiver)
    path = wired.path()
    subscription = wired.subscribe(receiver.script(path, Reply(500)), retry_schedule=[0])
    ids = []
    for value, age in ((1.0, timedelta(hours=2)), (2.0, timedelta(minutes=10))):
        wired.publish(wired.event(value))
        [delivery] = [
            d
            for d in wired.settle(subscription["id"], "failed", count=len(ids) + 1)
            if d["id"] not in ids
        ]
        ids.append(delivery["id"])
        created = (datetime.now(UTC) - age).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLite's form
        in_own_thread(
            run_sql,
            database_url,
            "UPDATE deliveries SET created_at = :created WHERE id = :id",
            created=created,
            id=delivery["id"],
        )
    receiver.script(path, Reply(200))  # what is replayed lands
    return TwoFailures(wired, path, subscription["id"], older=ids[0], newer=ids[1])


def test_a_replay_picked_in_tokyo_replays_exactly_the_failures_after_that_moment(
    browser: Browser,
    server: LiveServer,
    lab: Lab,
    receiver: Receiver,
    database_url: str,
    tmp_path: Path,
) -> None:
    staged = stage_two_failures(lab, receiver, database_url)
    attempts = staged.wired.delivery(staged.older)["attempt_count"]
    context = browser.new_context(timezone_id="Asia/Tokyo", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    log_in(page, server.url, f"admin@{lab.name}.example")
    page.goto(f"{server.url}/webhook-subscriptions/{staged.subscription_id}")

    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(TOKYO)
    page.get_by_label("Replay failed since").fill(an_hour_ago.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_contain_text("queued again")
    assert staged.status(staged.newer) in {"pending", "succeeded"}, "the newer was not replayed"
    staged.wired.settle(staged.subscription_id, "succeeded")
    older = staged.wired.delivery(staged.older)
    assert (older["status"], older["attempt_count"]) == ("failed", attempts), "older replayed"
    expect(page.get_by_role("status")).to_contain_text("1 failed delivery queued again")

    # the page says which zone it shows and takes, and shows the log's times in it
    expect(page.locator("#replay-zone")).to_contain_text("Asia/Tokyo")
    expect(page.locator("#replay-zone")).to_contain_text("UTC+09:00")
    created = datetime.fromisoformat(staged.wired.delivery(staged.newer)["created_at"])
    expect(page.locator(f"#delivery-{staged.newer} summary time")).to_have_text(
        created.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")
    )
    page.locator("#deliveries").screenshot(path=tmp_path / "delivery-log-tokyo.png")
    context.close()


def test_without_javascript_the_page_shows_and_takes_utc(
    server: LiveServer, lab: Lab, receiver: Receiver, database_url: str
) -> None:
    staged = stage_two_failures(lab, receiver, database_url)
    page_url = f"/webhook-subscriptions/{staged.subscription_id}"
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        page = Html(client.get(page_url).text)
        assert "UTC" in page.text_of("replay-zone")
        created = datetime.fromisoformat(staged.wired.delivery(staged.newer)["created_at"])
        shown = page.find("time", f"delivery-{staged.newer}")[0]  # the summary's
        assert shown.text == created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        response = client.post(
            f"{page_url}/replay", data={"csrf_token": page.csrf(), "since": an_hour_ago}
        )
        assert response.status_code == 303
        assert "1 failed delivery queued again" in client.get(page_url).text
    assert staged.status(staged.newer) in {"pending", "succeeded"}
    staged.wired.settle(staged.subscription_id, "succeeded")
    assert staged.status(staged.older) == "failed"


@pytest.mark.parametrize(
    ("since", "offset"), [("yesterday", ""), ("2026-13-40T25:00", ""), ("2026-01-01T10:00", "x")]
)
def test_a_moment_that_is_not_one_is_refused_beside_the_field_and_kept(
    server: LiveServer, lab: Lab, receiver: Receiver, since: str, offset: str
) -> None:
    wired = wire(lab, receiver)
    subscription = wired.subscribe(receiver.url(wired.path()))
    page_url = f"/webhook-subscriptions/{subscription['id']}"
    with web_client(server.url, f"admin@{lab.name}.example") as client:
        csrf = Html(client.get(page_url).text).csrf()
        response = client.post(
            f"{page_url}/replay", data={"csrf_token": csrf, "since": since, "utc_offset": offset}
        )
    assert response.status_code == 422
    page = Html(response.text)
    [field] = page.find("input", id="replay-since")
    assert field.attrs["value"] == since
    assert field.attrs.get("aria-invalid") == "true"
    assert "date and time" in page.text_of("replay-since-error")
