"""The delivery log over HTTP, on SQLite and on PostgreSQL, read as a browser without JavaScript
reads it: the states it shows (a pending delivery whose last attempt failed is failing), and the
filters by state, event type, time range and id selecting exactly the deliveries they name; a
delivery's details, whatever its target answered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from labhooks.domain.ids import new_id
from labhooks.storage.database import Database
from labhooks.storage.models import Delivery, DeliveryAttempt, utcnow
from tests.api import Lab
from tests.delivery_helpers import Wired, make_due, wire
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


def test_a_resent_delivery_counts_n_of_n_in_its_fresh_schedule(
    client: httpx.Client, lab: Lab, receiver: Receiver, database_url: str
) -> None:
    """Resend starts the schedule again but keeps counting attempts: "n of N" is the place in
    the schedule in force, the count in all beside it."""
    wired = wire(lab, receiver)
    subscription = wired.subscribe(
        receiver.script(wired.path(), Reply(500)), retry_schedule=[0, 3600]
    )
    sid = subscription["id"]
    wired.publish(wired.event())
    [delivery] = wired.attempted(sid, 1)
    make_due(database_url, delivery["id"])
    wired.settle(sid, "failed")  # attempt 2 of 2: given up

    def outcome() -> str:
        details = client.get(f"/deliveries/{delivery['id']}", headers={"HX-Request": "true"})
        [said] = Html(details.text).find(
            "dd", f"details-{delivery['id']}", **{"class": "outcome outcome-failing"}
        )
        return " ".join(said.text.split())

    # held (the subscription inactive), the resent delivery waits for its fresh schedule
    wired.admin.ok("POST", f"/webhook-subscriptions/{sid}/deactivate")
    wired.admin.ok("POST", f"/deliveries/{delivery['id']}/resend", None, 202)
    assert outcome().startswith(
        "Queued again after 2 attempts (the last failed), with a fresh schedule of 2 attempts;"
    ), outcome()
    wired.admin.ok("POST", f"/webhook-subscriptions/{sid}/activate")
    wired.attempted(sid, 3)  # the first of the fresh schedule, failed too
    said = outcome()
    assert said.startswith("Attempt 1 of 2 failed (3 attempts in all"), said


def test_a_deliverys_details_stay_readable_after_its_subscription_is_deleted(
    client: httpx.Client, lab: Lab, receiver: Receiver
) -> None:
    """SPEC §2.5: the history stays readable; the log's link to the details keeps working."""
    wired = wire(lab, receiver)
    subscription = wired.subscribe(receiver.script(wired.path(), Reply(500)), retry_schedule=[0])
    sid = subscription["id"]
    wired.publish(wired.event())
    [delivery] = wired.settle(sid, "failed")
    log = Html(client.get(f"/webhook-subscriptions/{sid}").text)
    [line] = log.find("details", f"delivery-{delivery['id']}")
    link = line.attrs["hx-get"]
    assert wired.admin.delete(f"/webhook-subscriptions/{sid}").status_code == 204

    fragment = client.get(link, headers={"HX-Request": "true"})
    assert fragment.status_code == 200, fragment.status_code
    said = Html(fragment.text).text_of(f"details-{delivery['id']}")
    assert "500 Internal Server Error" in said
    whole = client.get(link, follow_redirects=True)  # as a browser opens it by itself
    assert whole.status_code == 200, (whole.status_code, str(whole.url))
    assert "500 Internal Server Error" in Html(whole.text).text_of(f"details-{delivery['id']}")
    assert "deleted" in Html(whole.text).text_of("deleted-subscription")


def store(database_url: str, *rows: tuple[Any, list[dict[str, Any]]]) -> None:
    """Rows written behind the services' back, each (table, rows), for a test to stage."""

    async def run() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                for table, values in rows:
                    await connection.execute(insert(table), values)
        finally:
            await database.dispose()

    asyncio.run(run())


def switched_off(lab: Lab, receiver: Receiver) -> tuple[str, str]:
    """A subscription whose one event was delivered, then made inactive, so that nothing stored
    under it is sent; its id and the event's."""
    wired = wire(lab, receiver)
    sid = wired.subscribe(receiver.url(wired.path()))["id"]
    [event_id] = wired.publish(wired.event())["event_ids"]
    wired.settle(sid, "succeeded")
    wired.admin.ok("PATCH", f"/webhook-subscriptions/{sid}", {"active": False})
    return sid, event_id


def staged_outcomes(lab: Lab, receiver: Receiver, database_url: str) -> tuple[str, list[str]]:
    """An inactive subscription with a stored delivery for every (status, last answer, error,
    attempts made) worth telling apart; its id and theirs. Nothing is due: none is sent."""
    sid, event_id = switched_off(lab, receiver)
    later = utcnow() + timedelta(days=1)
    rows = [
        {
            "id": new_id("dlv"),
            "organization_id": lab.id,
            "subscription_id": sid,
            "event_id": event_id,
            "status": status,
            "attempt_count": count,
            "schedule_position": count,
            "next_attempt_at": later,
            "last_status_code": code,
            "last_error": error,
            "created_at": utcnow(),
        }
        for status, counts in (("pending", (0, 1, 3)), ("succeeded", (1,)), ("failed", (2,)))
        for count in counts
        for code in (None, 0, 199, 200, 299, 300, 410, 500)
        for error in (None, "", "timed out after 1.0 s")
    ]
    cancelled = rows[0] | {"id": new_id("dlv"), "status": "cancelled", "created_at": utcnow()}
    store(database_url, (Delivery, rows), (Delivery, [cancelled]))
    return sid, [row["id"] for row in [*rows, cancelled]]


def every_line(client: httpx.Client, path: str, **params: str) -> dict[str, str]:
    """Each delivery the log lists, on every page, with the state its line shows."""
    found: dict[str, str] = {}
    url: str | None = path
    while url:
        response = client.get(url, params=params if url == path else None)
        assert response.status_code == 200, response.text
        page = Html(response.text)
        for line in page.find("li", "delivery-log"):
            found[line.attrs["id"].removeprefix("delivery-")] = line.attrs["class"].removeprefix(
                "delivery state-"
            )
        url = page.link("next", "deliveries")
    return found


def test_the_state_filters_in_sql_select_what_state_of_says_in_python(
    client: httpx.Client, lab: Lab, receiver: Receiver, database_url: str
) -> None:
    sid, ids = staged_outcomes(lab, receiver, database_url)
    path = f"/webhook-subscriptions/{sid}"
    shown = every_line(client, path)  # each line's state: state_of, in Python
    assert set(ids) <= set(shown)
    assert set(shown.values()) == {"pending", "failing", "succeeded", "failed", "cancelled"}
    for status in ("pending", "failing", "succeeded", "failed", "cancelled"):
        wanted = {i for i, state in shown.items() if state == status}
        assert set(every_line(client, path, status=status)) == wanted, status
    either = {i for i, state in shown.items() if state in ("failing", "failed")}
    assert set(every_line(client, path, status="failing-or-failed")) == either


def test_an_attempt_shows_as_failed_exactly_when_its_delivery_counts_it_failed(
    client: httpx.Client, lab: Lab, receiver: Receiver, database_url: str
) -> None:
    """An attempt answered 200 with an error (even an empty one) did not succeed: the line says
    failing, and so does the attempt in the details; a 200 without one did."""
    sid, event_id = switched_off(lab, receiver)
    now = utcnow()
    answers = {
        new_id("dlv"): (code, error) for code, error in ((200, ""), (200, None), (500, None))
    }
    deliveries = [
        {
            "id": delivery_id,
            "organization_id": lab.id,
            "subscription_id": sid,
            "event_id": event_id,
            "status": "pending",
            "attempt_count": 1,
            "schedule_position": 1,
            "next_attempt_at": now + timedelta(days=1),
            "last_status_code": code,
            "last_error": error,
            "created_at": now,
        }
        for delivery_id, (code, error) in answers.items()
    ]
    attempts = [
        {
            "delivery_id": delivery_id,
            "number": 1,
            "started_at": now,
            "duration_ms": 12.0,
            "request_headers": {"webhook-id": delivery_id},
            "response_status": code,
            "error": error,
        }
        for delivery_id, (code, error) in answers.items()
    ]
    store(database_url, (Delivery, deliveries), (DeliveryAttempt, attempts))
    shown = every_line(client, f"/webhook-subscriptions/{sid}")
    for delivery_id in answers:
        details = client.get(f"/deliveries/{delivery_id}", headers={"HX-Request": "true"})
        [attempt] = Html(details.text).find("article", f"details-{delivery_id}")
        failed = attempt.attrs["class"] == "attempt attempt-failed"
        assert failed == (shown[delivery_id] == "failing"), (answers[delivery_id], attempt.attrs)


def test_the_log_filters_by_the_event_types_the_test_event_offers(
    client: httpx.Client, lab: Lab, receiver: Receiver
) -> None:
    wired = wire(lab, receiver)
    events = ["command.completed", "data_point.created"]
    subscription = wired.subscribe(
        receiver.url(wired.path()), channels=[{"channel_id": wired.channel_id, "events": events}]
    )
    page = Html(client.get(f"/webhook-subscriptions/{subscription['id']}").text)
    filters = [value for value, _ in page.options("type-filter") if value]
    offered = [e.attrs["value"] for e in page.find("input", "test-event", name="test_event")]
    assert filters == offered == ["ping", *events]
