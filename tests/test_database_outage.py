"""The database stops under a running server (a private PostgreSQL cluster, started by the
test): every request answers 503 with Retry-After, the readiness probe says why, pages answer a
page; when it is back, so is everything, and nothing published before was lost."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests import private_postgres
from tests.api import new_lab
from tests.conftest import first_server_admin, settings_for, skip_or_fail
from tests.delivery_helpers import wire
from tests.live import LiveServer, migrate_database
from tests.receiver import Receiver
from tests.web_helpers import web_client


def test_a_stopped_database_answers_503_and_service_resumes_when_it_is_back(
    tmp_path: Path, receiver: Receiver
) -> None:
    if reason := private_postgres.unavailable():
        skip_or_fail(reason)
    with private_postgres.private_cluster() as cluster:
        migrate_database(cluster.url)
        settings = settings_for(cluster.url, tmp_path)
        with LiveServer(settings) as server, first_server_admin(server) as root:
            wired = wire(new_lab(root), receiver)
            path = wired.path()
            subscription = wired.subscribe(wired.receiver.script(path))
            before = wired.publish(wired.event(1))["event_ids"][0]
            with web_client(server.url, f"admin@{wired.lab.name}.example") as browser:
                cluster.stop()
                try:
                    down = wired.admin.post("/events", wired.event(2))
                    assert down.status_code == 503, down.text
                    assert down.headers["Retry-After"] == "5"
                    assert down.json()["code"] == "unavailable"
                    ready = httpx.get(f"{server.url}/readyz")
                    assert ready.status_code == 503 and ready.json()["reason"]
                    page = browser.get("/webhook-subscriptions")  # a page, not a problem document
                    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
                    assert "text/html" in page.headers["content-type"]
                    assert "try again in a few seconds" in page.text
                finally:
                    cluster.start()
            assert httpx.get(f"{server.url}/readyz").status_code == 200
            after = wired.publish(wired.event(3))["event_ids"][0]
            delivered = {r.event_id for r in wired.receiver.wait_for(path, 2, timeout=30)}
            assert delivered == {before, after}
            assert len(wired.deliveries(subscription["id"])) == 2


def test_the_first_request_after_a_quiet_restart_is_served(tmp_path: Path) -> None:
    """The database restarts while nobody asks anything: the server's pooled connections are
    closed under it, and the next request gets a new one rather than a 503. (No worker: its
    polling would find a closed connection first, and have the pool renewed.)"""
    if reason := private_postgres.unavailable():
        skip_or_fail(reason)
    with private_postgres.private_cluster() as cluster:
        migrate_database(cluster.url)
        settings = settings_for(cluster.url, tmp_path)
        with LiveServer(settings, with_worker=False) as server, first_server_admin(server) as root:
            lab = new_lab(root)
            assert lab.admin.get("/me").status_code == 200
            cluster.restart()
            assert lab.admin.get("/me").status_code == 200
            assert lab.admin.get("/devices").status_code == 200
