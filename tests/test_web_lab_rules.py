"""Lab rules in Chromium, on SQLite and on PostgreSQL: an administrator adds a threshold on a
device's page (a mistake first, named beside its field, the focus on it), readings published
through the API cross it, the menu counts the open incident, the incidents page lists it and it
is acknowledged with a note; the threshold deleted after a confirmation closes it. Nothing
scrolls sideways at phone width."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Dialog, Page, expect

from tests.api import Lab, unique
from tests.live import LiveServer
from tests.web_helpers import PHONE, at_phone_width, log_in

PH = {"key": "ph", "name": "pH", "unit": "pH", "trigger_events": ["data_point.created"]}


def publish(lab: Lab, device: dict[str, Any], *values: float) -> None:
    """Readings a second apart, the last a minute ago."""
    start = datetime.now(UTC) - timedelta(minutes=1, seconds=len(values))
    events = [
        {
            "device_id": device["id"],
            "channel_key": "ph",
            "type": "data_point.created",
            "data": {"value": value, "unit": "pH"},
            "occurred_at": (start + timedelta(seconds=i)).isoformat(),
        }
        for i, value in enumerate(values)
    ]
    response = lab.admin.post("/events", events)
    assert response.status_code == 202, response.text


def incidents_of(lab: Lab, device: dict[str, Any]) -> list[dict[str, Any]]:
    return list(lab.admin.ok("GET", f"/incidents?device_id={device['id']}")["items"])


def test_a_threshold_crossed_opens_an_incident_that_is_acknowledged(
    page: Page, server: LiveServer, lab: Lab, screenshots: Path
) -> None:
    device = lab.add_device(unique("pH meter"), [PH])
    log_in(page, server.url, f"admin@{lab.name}.example")
    expect(page.locator("#incident-badge")).to_have_count(0)  # nothing open
    page.get_by_text("More", exact=True).click()
    page.get_by_role("link", name="Organisation").click()
    page.get_by_role("link", name=f"Edit {device['name']}").click()
    section = page.locator("#thresholds")
    expect(section).to_contain_text("No thresholds yet.")

    # a mistake first: named beside its field, what was typed kept, the focus on it
    section.get_by_label("Level").select_option("critical")
    section.get_by_label("Value").fill("eight and a half")
    section.get_by_label("Hysteresis").fill("0.2")
    section.get_by_role("button", name="Add threshold").click()
    value = section.get_by_label("Value")
    expect(value).to_be_focused()
    expect(value).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#threshold-value-error")).to_have_text(
        "The value must be a number, such as 8.5"
    )
    expect(value).to_have_value("eight and a half")
    expect(section.get_by_label("Level")).to_have_value("critical")
    expect(section.get_by_label("Hysteresis")).to_have_value("0.2")
    section.screenshot(path=screenshots / "threshold-refused.png")
    value.fill("8.5")
    section.get_by_role("button", name="Add threshold").click()
    expect(page.get_by_role("status")).to_have_text(
        "Threshold on pH added: > 8.5, clears at 8.3 or below."
    )
    row = section.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("> 8.5, clears at 8.3 or below")
    expect(row).to_contain_text("normal")

    publish(lab, device, 8.1, 8.7)  # crosses: opens at once (no hold)
    [incident] = incidents_of(lab, device)
    page.reload()
    page.screenshot(path=screenshots / "device-thresholds.png", full_page=True)
    badge = page.get_by_role("link", name="1 open incident", exact=True)
    expect(badge).to_be_visible()
    expect(row).to_contain_text("open")
    expect(page.locator("#open-incidents")).to_contain_text("opened")
    expect(page.locator("#open-incidents")).to_contain_text("8.7 pH")

    badge.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Incidents")
    listed = page.locator(f"#incident-{incident['id']}")
    expect(page.locator("#incident-list tbody tr")).to_have_count(1)
    expect(listed).to_contain_text(f"{device['name']} · pH")
    expect(listed.locator(".level-critical")).to_have_text(re.compile("critical", re.I))
    expect(listed).to_contain_text("> 8.5")
    expect(listed).to_contain_text("8.7 pH")
    expect(listed.locator("td[data-label=Closed]")).to_have_text("open")
    expect(listed.locator("td[data-label=Acknowledged]")).to_have_text("not yet")

    # the filters are a plain form: the address says what is shown
    page.get_by_label("Status").select_option("closed")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"status=closed"))
    expect(page.locator("#incident-list")).to_have_text("No closed incidents.")
    page.get_by_label("Status").select_option("open")
    page.get_by_label("Device").select_option(label=device["name"])
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"device_id={device['id']}"))

    listed.get_by_label("Note").fill("Probe recalibrated, watching it")
    listed.get_by_role("button", name=re.compile("^Acknowledge")).click()
    expect(page.get_by_role("status")).to_have_text(
        f"Incident on {device['name']} · pH acknowledged."
    )
    expect(page).to_have_url(re.compile(rf"device_id={device['id']}"))  # the same page
    expect(listed.locator("td[data-label=Acknowledged]")).to_contain_text("by Admin")
    expect(listed).to_contain_text("Probe recalibrated, watching it")
    [stored] = incidents_of(lab, device)
    assert stored["acknowledgement_note"] == "Probe recalibrated, watching it"
    assert stored["acknowledged_by"] == lab.admin_id
    page.screenshot(path=screenshots / "incidents.png", full_page=True)
    at_phone_width(page, screenshots / "incidents-phone.png")

    # deleting the threshold, once confirmed, closes the incident: the count goes
    page.goto(f"{server.url}/organization/devices/{device['id']}")
    delete = page.get_by_role("button", name=re.compile(r"^Delete threshold > 8\.5"))
    page.once("dialog", lambda dialog: dialog.dismiss())
    delete.click()
    expect(row).to_have_count(1)
    assert incidents_of(lab, device)[0]["closed_at"] is None  # dismissed: nothing happened
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    delete.click()
    expect(page.get_by_role("status")).to_contain_text("Its open incident was closed.")
    assert "Its open incident is closed." in messages[0]
    expect(page.locator("#incident-badge")).to_have_count(0)
    assert incidents_of(lab, device)[0]["closed_at"] is not None


def test_the_incidents_page_fits_a_phone(
    page: Page, server: LiveServer, lab: Lab, screenshots: Path
) -> None:
    """Long names and a long note wrap; the count stays readable."""
    long_name = "Incubator " + "Heracell-VIOS-250i-" * 4
    device = lab.add_device(long_name, [PH])
    url = f"/devices/{device['id']}/channels/{device['channels'][0]['id']}/thresholds"
    lab.admin.ok(
        "POST",
        url,
        {
            "level": "critical",
            "comparator": "outside",
            "value": 6.5,
            "upper": 7.5,
            "hysteresis": 0.1,
        },
        201,
    )
    publish(lab, device, 7.0, 8.123456)
    [incident] = incidents_of(lab, device)
    note = {"note": "Called the service engineer: " + "x" * 300}
    lab.admin.ok("POST", f"/incidents/{incident['id']}/acknowledge", note)
    page.set_viewport_size(PHONE)
    log_in(page, server.url, f"admin@{lab.name}.example")
    expect(page.get_by_role("link", name="1 open incident", exact=True)).to_be_visible()
    page.goto(f"{server.url}/incidents")
    expect(page.locator(f"#incident-{incident['id']}")).to_contain_text("outside 6.5 to 7.5")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshots / "incidents-narrow.png", full_page=True)
    page.goto(f"{server.url}/organization/devices/{device['id']}")
    expect(page.locator("#thresholds tbody tr")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
