"""Two API processes on one PostgreSQL store points of one channel at the same moments, each
crossing its threshold and clearing it, round after round: every round opens one incident and
closes it, whichever process stores which point, and no request fails."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests import live
from tests.api import new_lab
from tests.conftest import first_server_admin, settings_for, skip_or_fail
from tests.delivery_helpers import query
from tests.test_lab_rules import ph_meter, reading, thresholds_of

ROUNDS = 20


def test_two_api_processes_crossing_one_threshold_at_once_open_one_incident(
    tmp_path: Path,
) -> None:
    if reason := live.postgres_reachable():
        skip_or_fail(reason)
    with live.postgres_database() as url:
        live.migrate_database(url)
        settings = settings_for(url, tmp_path)
        port = live.free_port()
        environment = live.command_environment(
            LABHOOKS_DATABASE_URL=url, LABHOOKS_SECRET_KEY=str(settings.secret_key)
        )
        serve = ("serve", "--no-worker", "--no-migrate", "--port", str(port))
        with (
            live.LiveServer(settings, with_worker=False) as first,
            first_server_admin(first) as admin,
            live.labhooks_process(tmp_path / "second.log", *serve, env=environment),
        ):
            lab = new_lab(admin)
            device = ph_meter(lab)
            lab.admin.ok("POST", thresholds_of(device), {"comparator": ">", "value": 8.5}, 201)
            second = f"http://127.0.0.1:{port}"
            live.wait_until(lambda: _answers(second), "the second API process")
            t0 = datetime.now(UTC) - timedelta(minutes=5)
            token = lab.admin.token
            statuses: list[int] = []
            start = threading.Barrier(2)

            def publisher(base: str, offset_ms: int) -> None:
                headers = {"Authorization": f"Bearer {token}"}
                with httpx.Client(base_url=f"{base}/api/v1", headers=headers) as client:
                    start.wait()
                    for i in range(ROUNDS):  # the same crossing, at (nearly) the same times
                        for value, ms in ((9.0, 0), (8.0, 500)):
                            at = t0 + timedelta(seconds=i, milliseconds=ms + offset_ms)
                            event = reading(device, value, at)
                            statuses.append(client.post("/events", json=[event]).status_code)

            threads = [
                threading.Thread(target=publisher, args=(first.url, 0)),
                threading.Thread(target=publisher, args=(second, 1)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert statuses == [202] * (4 * ROUNDS)
            listed = f"/incidents?device_id={device['id']}&limit=200"
            incidents = lab.admin.ok("GET", listed)["items"]
            opened_events = _incident_events(url, device["id"])
    # a point older than the newest one seen is late and changes nothing, so each round's
    # first crossing opens and its first clearing closes, whichever process took them
    assert len(incidents) == ROUNDS and all(i["closed_at"] for i in incidents)
    assert opened_events == ROUNDS


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _incident_events(url: str, device_id: str) -> int:
    [(count,)] = query(
        url,
        "SELECT count(*) FROM events WHERE device_id = :device AND type = 'incident.opened'",
        device=device_id,
    )
    return int(count)
