"""The delivery log over HTTP, on SQLite and on PostgreSQL, read as a browser without JavaScript
reads it: the states it shows (a pending delivery whose last attempt failed is failing), and the
filters by state, event type, time range and id selecting exactly the deliveries they name; a
delivery's details, whatever its target answered."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api import Lab
from tests.delivery_helpers import Wired, wire
from tests.live import LiveServer
from tests.receiver import Receiver, Reply
from tests.web_helpers import Html, web_client


@dataclass
class FourStates:
    """One ordered subscription with a delivery in each state the log shows, oldest first."""

    wired: Wired
    subscription_id: str
    succeeded: dict[str, Any]
    failed: dict[str, Any]  # 410 Gone
    failing: dict[str, Any]  # 500, retried in an hour
    pending: dict[str, Any]  # a command.completed, held behind the failing one (ordered)

    @property
    def page(self) -> str:
        return f"/webhook-subscriptions/{self.subscription_id}"


def four_states(lab: Lab, receiver: Receiver) -> FourStates:
    wired = wire(lab, receiver)
    path = wired.path()
    url = receiver.script(path, Reply(200), Reply(410), Reply(500))
    both = [{"channel_id": wired.channel_id, "events": ["data_point.created", "command.completed"]}]
    subscription = wired.subscribe(url, channels=both, ordered=True, retry_schedule=[0, 3600])
    sid = subscription["id"]

    wired.publish(wired.event(1.0))
    [succeeded] = wired.settle(sid, "succeeded")
    wired.publish(wired.event(2.0))
    [failed] = wired.settle(sid, "failed")  # 410 Gone: the subscription is switched off
    wired.admin.ok("PATCH", f"/webhook-subscriptions/{sid}", {"active": True})
    wired.publish(wired.event(3.0))
    wired.attempted(sid, 3)
    command = {"type": "command.completed", "data": {"command": "tare", "result": "ok"}}
    wired.publish(wired.event(**command))
    pending, failing = sorted(wired.all_deliveries(sid), key=lambda d: d["id"])[-1:-3:-1]
    assert (failing["status"], failing["attempt_count"]) == ("pending", 1)
    assert (pending["status"], pending["attempt_count"]) == ("pending", 0)
    return FourStates(wired, sid, succeeded, failed, failing, pending)


@pytest.fixture
def staged(lab: Lab, receiver: Receiver) -> FourStates:
    return four_states(lab, receiver)


@pytest.fixture
def client(server: LiveServer, lab: Lab) -> Iterator[httpx.Client]:
    with web_client(server.url, f"admin@{lab.name}.example") as opened:
        yield opened


def listed(client: httpx.Client, staged: FourStates, **params: str) -> list[str]:
    response = client.get(staged.page, params=params)
    assert response.status_code == 200, response.text
    page = Html(response.text)
    return [e.attrs["id"].removeprefix("delivery-") for e in page.find("li", "delivery-log")]


def test_each_state_filters_what_the_log_calls_it(client: httpx.Client, staged: FourStates) -> None:
    ids = {
        name: getattr(staged, name)["id"] for name in ("succeeded", "failed", "failing", "pending")
    }
    newest_first = [ids["pending"], ids["failing"], ids["failed"], ids["succeeded"]]
    assert listed(client, staged) == newest_first
    assert listed(client, staged, status="failing") == [ids["failing"]]
    assert listed(client, staged, status="failed") == [ids["failed"]]
    assert listed(client, staged, status="failing-or-failed") == [ids["failing"], ids["failed"]]
    assert listed(client, staged, status="pending") == [ids["pending"]]
    assert listed(client, staged, status="succeeded") == [ids["succeeded"]]
    assert listed(client, staged, status="cancelled") == []

    page = Html(client.get(staged.page).text)
    states = {e.attrs["id"]: e.attrs["class"] for e in page.find("li", "delivery-log")}
    assert states[f"delivery-{ids['failing']}"] == "delivery state-failing"
    assert "next retry" in page.text_of(f"delivery-{ids['failing']}")
    assert "Retry now" in page.text_of(f"delivery-{ids['failing']}")
    assert states[f"delivery-{ids['pending']}"] == "delivery state-pending"


def test_event_types_times_and_ids_select_what_they_name(
    client: httpx.Client, staged: FourStates
) -> None:
    older = [staged.failed["id"], staged.succeeded["id"]]
    assert listed(client, staged, event_type="command.completed") == [staged.pending["id"]]
    assert listed(client, staged, event_type="data_point.created") == [
        staged.failing["id"],
        *older,
    ]
    assert listed(client, staged, event_type="ping") == []

    # a moment given whole (with its offset) is taken as it is; `until` is exclusive
    since = staged.failing["created_at"].replace("Z", "+00:00")
    assert listed(client, staged, since=since) == [staged.pending["id"], staged.failing["id"]]
    assert listed(client, staged, until=since) == older
    assert listed(client, staged, until=since, status="succeeded") == [staged.succeeded["id"]]

    failed = staged.failed
    assert listed(client, staged, q=failed["event_id"]) == [failed["id"]]
    assert listed(client, staged, q=failed["id"].upper()) == [failed["id"]]
    assert listed(client, staged, q=failed["id"], status="succeeded") == []
    opened = Html(client.get(staged.page, params={"q": failed["id"]}).text)
    assert "410 Gone" in opened.text_of(f"details-{failed['id']}")  # the one found, opened


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"status": "retrying"}, "status-filter", "must be one of"),
        ({"event_type": "weight.changed"}, "type-filter", "is not an event type"),
        ({"q": "12345"}, "log-search", "Enter a whole event id"),
        ({"since": "9999-12-31T23:59", "since_offset": "-600"}, "log-since", "date and time"),
        ({"until": "2026-01-01T10:00", "until_offset": "99999999"}, "log-until", "date and time"),
        ({"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, "log-until", "later than"),
    ],
)
def test_a_filter_that_is_not_one_is_said_beside_its_field(
    client: httpx.Client,
    lab: Lab,
    receiver: Receiver,
    params: dict[str, str],
    field: str,
    message: str,
) -> None:
    wired = wire(lab, receiver)
    subscription = wired.subscribe(receiver.url(wired.path()))
    response = client.get(f"/webhook-subscriptions/{subscription['id']}", params=params)
    assert response.status_code == 422
    page = Html(response.text)
    assert message in page.text_of(f"{field}-error")
    assert page.text_of("filter-invalid")


def test_the_last_minute_of_year_9999_is_a_time_range_not_a_server_error(
    client: httpx.Client, staged: FourStates
) -> None:
    assert len(listed(client, staged, until="9999-12-31T23:59")) == 4


def test_details_show_whatever_the_target_answered(
    client: httpx.Client, lab: Lab, receiver: Receiver
) -> None:
    wired = wire(lab, receiver)
    path = wired.path()
    deep = b"[" * 30_000 + b"]" * 30_000  # JSON nested deeper than Python's parser recurses
    url = receiver.script(path, Reply(500, body=deep, headers={"Content-Type": "application/json"}))
    subscription = wired.subscribe(url, retry_schedule=[0])
    wired.publish(wired.event())
    [delivery] = wired.settle(subscription["id"], "failed")
    details = client.get(f"/deliveries/{delivery['id']}", headers={"HX-Request": "true"})
    assert details.status_code == 200
    page = Html(details.text)
    assert "500 Internal Server Error" in page.text_of(f"details-{delivery['id']}")
    assert deep.decode() in details.text  # shown as it came, not indented
