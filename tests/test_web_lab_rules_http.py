"""Lab rules on the web over HTTP, on SQLite and on PostgreSQL, read as a browser without
JavaScript reads them: thresholds added (every mistake named beside its field at once, what was
typed kept) and deleted on a device's page; incidents listed and filtered exactly, a page at a
time; acknowledged by administrators only; the menu's count of open incidents."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api import Lab, unique
from tests.live import LiveServer
from tests.web_helpers import Html, web_client

PH = {"key": "ph", "name": "pH", "unit": "pH", "trigger_events": ["data_point.created"]}
STATUS = {"key": "status", "name": "Status", "trigger_events": ["device.status_changed"]}


class Meter:
    """A pH meter of the lab, whose readings are published through the API, each later than
    the one before (a threshold ignores a reading older than the newest it has seen)."""

    _clock = itertools.count()

    def __init__(self, lab: Lab, name: str | None = None) -> None:
        self.lab = lab
        self.device = lab.add_device(name or unique("pH meter"), [PH, STATUS])
        self.id: str = self.device["id"]
        self.name: str = self.device["name"]
        self.ph, self.status = (c["id"] for c in self.device["channels"])
        self.t0 = datetime.now(UTC) - timedelta(hours=1)

    @property
    def page(self) -> str:
        return f"/organization/devices/{self.id}"

    def threshold(self, **rule: Any) -> dict[str, Any]:
        url = f"/devices/{self.id}/channels/{self.ph}/thresholds"
        return dict(self.lab.admin.ok("POST", url, rule, 201))

    def thresholds(self) -> list[dict[str, Any]]:
        return list(self.lab.admin.ok("GET", f"/devices/{self.id}/channels/{self.ph}/thresholds"))

    def publish(self, *values: float) -> None:
        events = [
            {
                "device_id": self.id,
                "channel_key": "ph",
                "type": "data_point.created",
                "data": {"value": value, "unit": "pH"},
                "occurred_at": (self.t0 + timedelta(seconds=next(self._clock))).isoformat(),
            }
            for value in values
        ]
        response = self.lab.admin.post("/events", events)
        assert response.status_code == 202, response.text

    def incidents(self, **params: str) -> list[dict[str, Any]]:
        response = self.lab.admin.get(
            "/incidents", params={"device_id": self.id, "limit": "200", **params}
        )
        assert response.status_code == 200, response.text
        return list(response.json()["items"])


@pytest.fixture
def client(server: LiveServer, lab: Lab) -> Iterator[httpx.Client]:
    with web_client(server.url, f"admin@{lab.name}.example") as opened:
        yield opened


@pytest.fixture
def member(server: LiveServer, lab: Lab) -> Iterator[httpx.Client]:
    _, user_id = lab.add_member()
    email = lab.admin.ok("GET", f"/users/{user_id}")["email"]
    with web_client(server.url, email) as opened:
        yield opened


def flash(page: Html) -> str:
    [shown] = [e.text for e in page.find("p") if e.attrs.get("class") == "flash"]
    return shown


def selected(page: Html, select_id: str) -> str:
    [chosen] = [e for e in page.find("option", select_id) if "selected" in e.attrs]
    return chosen.attrs["value"]


def followed(client: httpx.Client, response: httpx.Response) -> Html:
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return Html(page.text)


def adding(client: httpx.Client, meter: Meter, **fields: str) -> httpx.Response:
    page = Html(client.get(meter.page).text)
    form = {
        "csrf_token": page.csrf(),
        "channel_id": meter.ph,
        "level": "warning",
        "comparator": ">",
        "value": "",
        "upper": "",
        "hysteresis": "0",
        "hold_s": "0",
    }
    return client.post(f"{meter.page}/thresholds", data=form | fields)


# -- thresholds on a device's page -----------------------------------------------------------


def test_a_threshold_is_added_in_words_and_deleted(client: httpx.Client, lab: Lab) -> None:
    meter = Meter(lab)
    page = Html(client.get(meter.page).text)
    # only a channel with data points is offered
    assert page.options("threshold-channel") == [(meter.ph, "pH (pH)")]
    assert [v for v, _ in page.options("threshold-level")] == ["warning", "critical"]
    assert [v for v, _ in page.options("threshold-comparator")] == [">", ">=", "<", "<=", "outside"]
    assert "No thresholds yet." in page.text_of("thresholds")

    added = adding(client, meter, level="critical", value="8.5", hysteresis="0.2", hold_s="300")
    assert added.headers["location"] == meter.page
    page = followed(client, added)
    assert flash(page) == "Threshold on pH added: > 8.5, clears at 8.3 or below, held 5 min."
    [stored] = meter.thresholds()
    assert (stored["level"], stored["comparator"], stored["value"]) == ("critical", ">", 8.5)
    assert (stored["hysteresis"], stored["hold_s"], stored["upper"]) == (0.2, 300, None)
    row = page.text_of(f"threshold-{stored['id']}")
    assert row == "pH critical > 8.5, clears at 8.3 or below, held 5 min normal"

    ranged = adding(client, meter, comparator="outside", value="6", upper="8", hysteresis="0.5")
    assert "outside 6 to 8, clears inside 6.5 to 7.5" in flash(followed(client, ranged))

    csrf = page.csrf()
    gone = client.post(f"{meter.page}/thresholds/{stored['id']}/delete", data={"csrf_token": csrf})
    page = followed(client, gone)
    assert flash(page) == "Threshold on pH deleted (> 8.5, clears at 8.3 or below, held 5 min)."
    assert [t["comparator"] for t in meter.thresholds()] == ["outside"]
    assert not page.find("tr", id=f"threshold-{stored['id']}")


def test_every_mistake_is_named_beside_its_field_and_what_was_typed_is_kept(
    client: httpx.Client, lab: Lab
) -> None:
    meter = Meter(lab)
    typed = {"value": "high", "upper": "7", "hysteresis": "-1", "hold_s": "five"}
    # the status channel reports no data points (a form of another page, say)
    refused = adding(client, meter, channel_id=meter.status, **typed)
    assert refused.status_code == 422, refused.text
    page = Html(refused.text)
    errors = {
        e.attrs["id"].removesuffix("-error"): " ".join(e.text.split())
        for e in page.find("p", "thresholds")
        if e.attrs.get("class") == "field-error"
    }
    assert errors == {
        "threshold-channel": "Channel 'status' does not offer data_point.created; a threshold "
        "judges a channel's data points",
        "threshold-value": "The value must be a number, such as 8.5",
        "threshold-upper": "Only a range (outside) has an upper end",
        "threshold-hysteresis": "The hysteresis must be zero or more",
        "threshold-hold": "The hold time must be a number, such as 8.5",
    }
    for name, id_ in (
        ("value", "value"),
        ("upper", "upper"),
        ("hysteresis", "hysteresis"),
        ("hold_s", "hold"),
    ):
        [field] = page.find("input", id=f"threshold-{id_}")
        assert field.attrs["value"] == typed[name]
        assert field.attrs["aria-invalid"] == "true"
        assert f"threshold-{id_}-error" in field.attrs["aria-describedby"].split()
    [channel] = page.find("select", id="threshold-channel")
    assert channel.attrs["aria-describedby"] == "threshold-channel-error"
    # the fields in error are the first that are invalid on the page: the focus goes there
    invalid = [e.attrs["id"] for e in page.elements if e.attrs.get("aria-invalid") == "true"]
    assert invalid[0] == "threshold-channel"

    # numbers that parse: the service's own rule, beside the fields it names
    refused = adding(client, meter, comparator="outside", value="8", upper="6", level="critical")
    page = Html(refused.text)
    assert refused.status_code == 422
    assert (
        page.text_of("threshold-upper-error") == "The upper end must be above the lower end (value)"
    )
    assert selected(page, "threshold-level") == "critical"
    assert selected(page, "threshold-comparator") == "outside"
    empty = Html(adding(client, meter, value=" ").text)
    assert empty.text_of("threshold-value-error") == "The value is required"
    removed = Html(adding(client, meter, channel_id="chn_gone", value="8").text)
    assert "no longer exists" in removed.text_of("threshold-channel-error")
    assert meter.thresholds() == []  # nothing was stored


def test_deleting_a_threshold_closes_its_open_incident(client: httpx.Client, lab: Lab) -> None:
    meter = Meter(lab)
    threshold = meter.threshold(comparator="<", value=4)
    meter.publish(5.0, 3.5)
    [incident] = meter.incidents()
    page = Html(client.get(meter.page).text)
    assert "open" in page.text_of(f"threshold-{threshold['id']}")
    assert f"open-incident-{incident['id']}" in {e.attrs.get("id") for e in page.elements}
    [form] = [
        e for e in page.find("form") if e.attrs["action"].endswith(f"{threshold['id']}/delete")
    ]
    assert "Its open incident is closed." in form.attrs["data-confirm"]
    deleted = client.post(form.attrs["action"], data={"csrf_token": page.csrf()})
    page = followed(client, deleted)
    assert flash(page).endswith("Its open incident was closed.")
    assert meter.incidents(status="open") == []
    assert "None open." in page.text_of("open-incidents")


def test_the_device_page_and_its_forms_are_for_administrators(
    client: httpx.Client, member: httpx.Client, lab: Lab
) -> None:
    meter = Meter(lab)
    assert member.get(meter.page).status_code == 403
    csrf = Html(member.get("/incidents").text).csrf()
    data = {"csrf_token": csrf, "channel_id": meter.ph, "comparator": ">", "value": "1"}
    assert member.post(f"{meter.page}/thresholds", data=data).status_code == 403
    assert meter.thresholds() == []


# -- the incidents page ----------------------------------------------------------------------


def listed(client: httpx.Client, **params: str) -> list[str]:
    response = client.get("/incidents", params=params)
    assert response.status_code == 200, response.text
    rows = Html(response.text).find("tr", "incident-list")
    return [e.attrs["id"].removeprefix("incident-") for e in rows if "id" in e.attrs]


def test_incidents_are_listed_newest_first_and_filtered_exactly(
    client: httpx.Client, lab: Lab
) -> None:
    ph, other = Meter(lab, unique("pH meter A")), Meter(lab, unique("pH meter B"))
    ph.threshold(level="critical", comparator=">", value=8.5, hysteresis=0.2)
    other.threshold(level="warning", comparator="<", value=4)
    ph.publish(8.0, 8.7)  # opens
    other.publish(5.0, 3.9)  # opens
    ph.publish(8.4, 8.2)  # 8.4 is within the hysteresis; 8.2 closes
    ph.publish(8.9)  # opens again
    [first, again] = sorted(i["id"] for i in ph.incidents())
    [low] = [i["id"] for i in other.incidents()]

    assert listed(client) == [again, low]  # open by default, newest first
    assert listed(client, status="open") == [again, low]
    assert listed(client, status="closed") == [first]
    assert listed(client, status="all") == [again, low, first]
    assert listed(client, status="all", device_id=ph.id) == [again, first]
    assert listed(client, status="all", level="warning") == [low]
    assert listed(client, status="closed", level="critical", device_id=ph.id) == [first]
    assert listed(client, status="closed", device_id=other.id) == []
    assert listed(client, device_id="", level="") == [again, low]  # the form's "All"

    page = Html(client.get("/incidents", params={"status": "all"}).text)
    closed = page.text_of(f"incident-{first}")
    assert closed.startswith(f"{ph.name} · pH critical > 8.5 ")
    assert " at 8.7 pH " in closed and " at 8.2 pH " in closed and "not yet" in closed
    assert " open " in f" {page.text_of(f'incident-{again}')} "
    tags = [e.attrs.get("class") for e in page.find("span", f"incident-{low}")]
    assert "level level-warning" in tags and "level level-critical" not in tags
    [row] = page.find("tr", id=f"incident-{again}")
    assert row.attrs["class"] == "incident incident-critical"
    assert selected(page, "filter-status") == "all"
    devices = page.options("filter-device")
    assert devices[0] == ("", "All devices") and (ph.id, ph.name) in devices

    empty = Html(client.get("/incidents", params={"status": "closed", "level": "warning"}).text)
    assert empty.text_of("incident-list") == "No closed warning incidents."
    refused = client.get("/incidents", params={"status": "shut"})
    assert refused.status_code == 422 and "status" in refused.text


def test_incidents_come_fifty_a_page_and_the_pages_keep_the_filters(
    client: httpx.Client, lab: Lab
) -> None:
    meter = Meter(lab)
    meter.threshold(comparator=">", value=5)
    meter.publish(*[6.0, 4.0] * 51)  # 51 incidents opened and closed
    ids = sorted((i["id"] for i in meter.incidents(status="closed")), reverse=True)
    assert len(ids) == 51
    response = client.get("/incidents", params={"status": "closed", "device_id": meter.id})
    page = Html(response.text)
    assert listed(client, status="closed", device_id=meter.id) == ids[:50]
    following = page.link("next")
    assert following is not None
    params = httpx.URL(following).params
    assert (params["status"], params["device_id"]) == ("closed", meter.id)
    second = Html(client.get(following).text)
    rows = [e.attrs["id"] for e in second.find("tr", "incident-list") if "id" in e.attrs]
    assert rows == [f"incident-{ids[50]}"]
    assert second.link("next") is None and second.first_page_link() is not None


def test_an_administrator_acknowledges_with_a_note_and_comes_back_to_the_same_page(
    client: httpx.Client, member: httpx.Client, lab: Lab
) -> None:
    meter = Meter(lab)
    meter.threshold(level="critical", comparator=">", value=8.5)
    meter.publish(8.0, 9.1)
    [incident] = meter.incidents()
    here = f"?status=open&device_id={meter.id}"
    page = Html(client.get(f"/incidents{here}").text)
    [form] = page.find("form", f"incident-{incident['id']}")
    assert form.attrs["action"] == f"/incidents/{incident['id']}/acknowledge{here}"

    too_long = client.post(
        form.attrs["action"], data={"csrf_token": page.csrf(), "note": "x" * 2001}
    )
    assert too_long.status_code == 422
    refused = Html(too_long.text)
    note_id = f"note-{incident['id']}"
    assert refused.text_of(f"{note_id}-error") == "The note is longer than 2000 characters"
    [field] = refused.find("input", id=note_id)
    assert field.attrs["value"] == "x" * 2001 and field.attrs["aria-invalid"] == "true"
    assert meter.incidents()[0]["acknowledged_at"] is None

    done = client.post(
        form.attrs["action"], data={"csrf_token": page.csrf(), "note": " Probe recalibrated "}
    )
    assert done.headers["location"] == f"/incidents{here}"
    page = followed(client, done)
    assert flash(page) == f"Incident on {meter.name} · pH acknowledged."
    [stored] = meter.incidents()
    assert stored["acknowledged_by"] == lab.admin_id
    assert stored["acknowledgement_note"] == "Probe recalibrated"
    row = page.text_of(f"incident-{incident['id']}")
    assert "by Admin, " in row and "Probe recalibrated" in row and "Acknowledge again" in row

    # a member reads it all, and may not acknowledge
    seen = Html(member.get("/incidents").text)
    assert "by Admin, " in seen.text_of(f"incident-{incident['id']}")
    assert seen.find("form", f"incident-{incident['id']}") == []
    assert seen.find("input", name="note") == []
    refused_member = member.post(
        f"/incidents/{incident['id']}/acknowledge",
        data={"csrf_token": seen.csrf(), "note": "mine"},
    )
    assert refused_member.status_code == 403
    assert "organisation administrator" in refused_member.text
    assert meter.incidents()[0]["acknowledgement_note"] == "Probe recalibrated"
    assert meter.incidents()[0]["acknowledged_at"] == stored["acknowledged_at"]


def test_the_menu_counts_open_incidents_for_administrators(
    client: httpx.Client, member: httpx.Client, lab: Lab
) -> None:
    def badge(http: httpx.Client, path: str) -> str | None:
        page = Html(http.get(path).text)
        found = page.find("a", id="incident-badge")
        return " ".join(found[0].text.split()) if found else None

    meter = Meter(lab)
    assert badge(client, "/webhook-subscriptions") is None  # none open: no badge
    meter.threshold(comparator=">", value=8.5)
    other = Meter(lab)
    other.threshold(comparator="<", value=4)
    meter.publish(9.0)
    other.publish(3.0)
    for path in ("/webhook-subscriptions", "/organization", "/incidents", meter.page):
        assert badge(client, path) == "2 open incidents", path
    meter.publish(8.0)  # closes
    assert badge(client, "/incidents?status=closed") == "1 open incident"
    # members have the Incidents link in the menu, and no count
    page = Html(member.get("/webhook-subscriptions").text)
    assert badge(member, "/incidents") is None
    assert [e.text for e in page.find("a", "more-menu") if e.attrs["href"] == "/incidents"] == [
        "Incidents"
    ]
