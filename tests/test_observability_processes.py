"""Observability across processes, as operators run labhooks: two `labhooks worker` processes
and a `labhooks serve --no-worker` on PostgreSQL sharing PROMETHEUS_MULTIPROC_DIR, whose
/metrics sums what both workers did; and `labhooks serve --log-format json`'s log lines."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from labhooks.observability.heartbeats import Heartbeat, read_heartbeats
from labhooks.storage.database import Database
from tests import live
from tests.api import new_lab
from tests.conftest import first_server_admin, settings_for, skip_or_fail
from tests.delivery_helpers import Wired, wire
from tests.observability_helpers import labels_of, scrape, served, value
from tests.receiver import Receiver, Reply
from tests.test_worker_processes import worker, worker_environment

EVENTS = 150
ACCEPTED = "labhooks_events_accepted_total"
FINISHED = "labhooks_deliveries_finished_total"


def heartbeats(database_url: str) -> list[Heartbeat]:
    async def read() -> list[Heartbeat]:
        database = Database(database_url)
        try:
            async with database.engine.connect() as connection:
                return await read_heartbeats(connection)
        finally:
            await database.dispose()

    return asyncio.run(read())


def publish_many(wired: Wired) -> None:
    published = wired.publish(*[wired.event(value=i) for i in range(EVENTS)])
    assert published["deliveries_created"] == EVENTS


def test_metrics_of_two_worker_processes_are_read_together(
    tmp_path: Path, receiver: Receiver
) -> None:
    if reason := live.postgres_reachable():
        skip_or_fail(reason)
    shared = tmp_path / "prometheus"
    shared.mkdir()
    multiprocess = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with live.postgres_database() as url:
        live.migrate_database(url)
        settings = settings_for(url, tmp_path)
        serve_environment = live.command_environment() | multiprocess
        with (
            served(
                settings,
                tmp_path / "serve.log",
                "--no-worker",
                "--no-migrate",
                env=serve_environment,
            ) as server,
            first_server_admin(server) as admin,
        ):
            wired = wire(new_lab(admin), receiver)
            path = wired.path()
            subscription = wired.subscribe(receiver.script(path, Reply(delay=0.05)))
            publish_many(wired)  # no worker runs yet: all of them wait
            waiting = scrape(server.url)
            assert value(waiting, ACCEPTED, type="data_point.created") == EVENTS
            assert value(waiting, "labhooks_queue_deliveries", state="due") == EVENTS
            assert value(waiting, "labhooks_queue_oldest_due_age_seconds") > 0
            assert labels_of(waiting, "labhooks_worker_last_seen_seconds", "worker") == set()

            environment = worker_environment(
                settings,
                LABHOOKS_WORKER_CONCURRENCY="20",
                LABHOOKS_WORKER_HEARTBEAT_S="0.5",
                **multiprocess,
            )
            with ExitStack() as stack:
                for name in ("a", "b"):
                    stack.enter_context(worker(environment, tmp_path / f"{name}.log"))
                live.wait_until(lambda: len(heartbeats(url)) == 2, "both workers to beat", 60)
                publish_many(wired)  # both run now: they share this batch
                wired.settle(subscription["id"], "succeeded", count=2 * EVENTS, timeout=120)

                def counted() -> bool:
                    now = scrape(server.url)
                    return value(now, FINISHED, outcome="succeeded") == 2 * EVENTS

                live.wait_until(counted, "the server to read both workers' counts")
                done = scrape(server.url)
                assert value(done, "labhooks_delivery_attempts_total", result="2xx") == 2 * EVENTS
                assert value(done, "labhooks_delivery_attempt_duration_seconds_count") == 2 * EVENTS
                assert value(done, ACCEPTED, type="data_point.created") == 2 * EVENTS
                assert value(done, "labhooks_queue_deliveries", state="due") == 0
                seen = labels_of(done, "labhooks_worker_last_seen_seconds", "worker")
                assert seen == {h.id for h in heartbeats(url)}
                assert labels_of(done, "labhooks_worker_in_flight_attempts", "worker") == seen

                def beaten() -> bool:
                    return sum(h.attempts for h in heartbeats(url)) == 2 * EVENTS

                live.wait_until(beaten, "the heartbeats to count every attempt")
                # each worker made some: the sum above is of two processes
                assert all(h.attempts > 0 for h in heartbeats(url))
            # stopped cleanly, each removed its heartbeat
            assert heartbeats(url) == []


def log_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of standard error, each one JSON object (standard output, in the same file
    here, says only where the server listens)."""
    lines = [
        line
        for line in log.read_text().splitlines()
        if line.strip() and not line.startswith("labhooks on http://")
    ]
    parsed = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(p) for p in parsed)
    return parsed


def test_json_log_lines_carry_ids_and_no_secret(tmp_path: Path, receiver: Receiver) -> None:
    settings = settings_for(live.sqlite_url(tmp_path), tmp_path)
    log = tmp_path / "serve.log"
    header_value = "s3cret-header-value"
    with (
        served(settings, log, "--log-format", "json") as server,
        first_server_admin(server) as admin,
    ):
        lab = new_lab(admin)
        wired = wire(lab, receiver)
        good, bad = wired.path(), wired.path()
        headers = [{"key": "X-Api-Key", "value": header_value}]
        answered = wired.subscribe(receiver.script(good, Reply()), headers=headers)
        failing = wired.subscribe(receiver.script(bad, Reply(status=500)), headers=headers)
        secret = wired.admin.ok("GET", f"/webhook-subscriptions/{failing['id']}/secret")["key"]
        response = wired.admin.post(
            "/events", wired.event(), headers={"X-Request-ID": "gateway-42.7"}
        )
        assert response.status_code == 202, response.text
        assert response.headers["x-request-id"] == "gateway-42.7"
        [event_id] = response.json()["event_ids"]
        [delivery] = wired.settle(failing["id"], "failed", timeout=30)
        wired.settle(answered["id"], "succeeded")
        received = receiver.wait_for(bad, 4)
        assert received[0].headers["X-Api-Key"] == header_value  # it was sent, never logged
        tokens = (admin.token, lab.admin.token)
    lines = log_lines(log)

    text = log.read_text()
    for private in (header_value, secret, *tokens):
        assert private and private not in text
    accepted = [line for line in lines if line.get("event_id") == event_id]
    assert accepted, lines
    assert accepted[0]["request_id"] == "gateway-42.7"
    assert accepted[0]["organization_id"] == lab.id
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    [publishing] = [line for line in access if line.get("request_id") == "gateway-42.7"]
    assert "POST /api/v1/events" in publishing["message"]
    assert publishing["organization_id"] == lab.id
    failures = [line for line in lines if line.get("delivery_id") == delivery["id"]]
    assert len(failures) == 4  # three retries scheduled, then the end
    assert all(line["subscription_id"] == failing["id"] for line in failures)
    assert failures[-1]["level"] == "warning" and "HTTP 500" in failures[-1]["message"]
    # nothing about the delivery that went well: successes are counted, not logged
    assert not any(line.get("subscription_id") == answered["id"] for line in lines)


def test_what_a_serving_command_cannot_use_is_refused_in_one_line(tmp_path: Path) -> None:
    """An unknown log format, or a metrics folder that is not there: one line, exit 1, before
    anything is started or written."""
    database = live.command_environment(LABHOOKS_DATABASE_URL=live.sqlite_url(tmp_path))
    missing = tmp_path / "no-such-folder"
    cases = [
        (database, ["--log-format", "xml"], "--log-format must be json or text, not 'xml'"),
        (
            database | {"PROMETHEUS_MULTIPROC_DIR": str(missing)},
            [],
            f"PROMETHEUS_MULTIPROC_DIR {missing} is not a directory; create it first",
        ),
    ]
    for environment, options, message in cases:
        for command in ("serve", "worker", "demo"):
            result = subprocess.run(
                [sys.executable, "-m", "labhooks", command, *options],
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1, result
            assert result.stderr.splitlines() == [f"labhooks: {message}"]
    assert list(tmp_path.iterdir()) == []  # nothing was started or written
