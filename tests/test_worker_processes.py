"""Workers as separate processes on PostgreSQL: one killed mid-batch loses nothing; two share
the queue without sending anything twice."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest

from labhooks.settings import Settings
from tests import live, private_postgres
from tests.api import new_lab
from tests.conftest import first_server_admin, settings_for, skip_or_fail
from tests.delivery_helpers import Wired, query, wire
from tests.receiver import Receiver, Reply

EVENTS = 300


def worker_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """What a `labhooks worker` process needs to share the queue of a server with `settings`."""
    return live.command_environment() | {
        "LABHOOKS_DATABASE_URL": settings.database_url,
        "LABHOOKS_SECRET_KEY": str(settings.secret_key),
        "LABHOOKS_ALLOWED_NETWORKS": settings.allowed_networks,
        "LABHOOKS_DELIVER_TO_PUBLIC": "false",
        **extra,
    }


@pytest.fixture
def queue_only(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[Wired, dict[str, str]]]:
    """An API server without a worker on a fresh PostgreSQL database, and the environment a
    `labhooks worker` process needs to share its queue."""
    if reason := live.postgres_reachable():
        skip_or_fail(reason)
    with live.postgres_database() as url:
        live.migrate_database(url)
        settings = settings_for(url, tmp_path, worker_concurrency=40)
        environment = worker_environment(
            settings, LABHOOKS_DELIVERY_TIMEOUT="2", LABHOOKS_WORKER_CONCURRENCY="40"
        )
        with (
            live.LiveServer(settings, with_worker=False) as server,
            first_server_admin(server) as admin,
        ):
            yield wire(new_lab(admin), receiver), environment


def worker(
    environment: dict[str, str], log: Path
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return live.labhooks_process(log, "worker", env=environment)


def publish_many(wired: Wired) -> list[str]:
    published = wired.publish(*[wired.event(value=i) for i in range(EVENTS)])
    assert published["deliveries_created"] == EVENTS
    return list(published["event_ids"])


def test_a_killed_worker_loses_nothing(
    queue_only: tuple[Wired, dict[str, str]], tmp_path: Path
) -> None:
    wired, environment = queue_only
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, Reply(delay=0.2)))
    event_ids = publish_many(wired)
    environment = environment | {"LABHOOKS_LEASE_SECONDS": "3"}

    with worker(environment, tmp_path / "first.log") as first:
        wired.receiver.wait_for(path, 60, timeout=60)
        first.send_signal(signal.SIGKILL)  # mid-batch: attempts in flight, results unwritten
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    sent_by_first = {r.headers["webhook-id"] for r in wired.receiver.received(path)}
    assert wired.all_deliveries(subscription["id"], status="pending")  # work was left over

    with worker(environment, tmp_path / "second.log"):
        delivered = wired.settle(subscription["id"], "succeeded", count=EVENTS, timeout=120)
    assert len(delivered) == EVENTS
    received = wired.receiver.received(path)
    assert {r.event_id for r in received} == set(event_ids)  # every event at least once
    assert wired.all_deliveries(subscription["id"], status="pending") == []
    # at-least-once: only what the killed worker had sent but not recorded goes out again
    sent_twice = {i for i, n in Counter(r.headers["webhook-id"] for r in received).items() if n > 1}
    assert sent_twice <= sent_by_first
    assert len(received) - EVENTS == len(sent_twice)


def test_two_workers_share_the_queue_without_duplicates(
    queue_only: tuple[Wired, dict[str, str]], tmp_path: Path
) -> None:
    wired, environment = queue_only
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, Reply(delay=0.05)))
    with ExitStack() as stack:
        for name in ("a", "b"):
            stack.enter_context(worker(environment, tmp_path / f"{name}.log"))
        event_ids = publish_many(wired)
        wired.settle(subscription["id"], "succeeded", count=EVENTS, timeout=120)
    received = wired.receiver.received(path)
    assert {r.event_id for r in received} == set(event_ids)
    sent_twice = [i for i, n in Counter(r.headers["webhook-id"] for r in received).items() if n > 1]
    assert sent_twice == []  # leases never expired here, so nothing went out twice
    logs = [(tmp_path / f"{name}.log").read_text() for name in ("a", "b")]
    assert all("worker started" in text for text in logs)


LISTEN_FOR_DELIVERIES = "LISTEN %labhooks_deliveries%"  # only a worker's connection does


def _connections(database_url: str, doing: str) -> int:
    """How many other connections to this database last ran a statement like `doing`."""
    statement = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND query LIKE :doing"
    )
    return int(query(database_url, statement, doing=doing)[0][0])


def _listening(database_url: str) -> bool:
    return _connections(database_url, LISTEN_FOR_DELIVERIES) > 0


def test_one_worker_at_a_time_listens_and_another_takes_over(
    queue_only: tuple[Wired, dict[str, str]], tmp_path: Path
) -> None:
    """Two workers, polling set to an hour: one listens, the other waits for its turn and gets
    it when the first is killed; the event published then arrives by its NOTIFY alone."""
    wired, environment = queue_only
    environment = environment | {"LABHOOKS_POLL_INTERVAL": "3600"}
    url = environment["LABHOOKS_DATABASE_URL"]
    path = wired.path()
    wired.subscribe(wired.receiver.script(path, Reply()))

    def listening_and_waiting() -> tuple[int, int]:
        return _connections(url, LISTEN_FOR_DELIVERIES), _connections(url, "%pg_try_advisory_lock%")

    with worker(environment, tmp_path / "first.log") as first:
        live.wait_until(lambda: listening_and_waiting() == (1, 0), "the first worker to listen")
        with worker(environment, tmp_path / "second.log"):
            live.wait_until(
                lambda: listening_and_waiting() == (1, 1), "the second to wait for its turn"
            )
            first.kill()
            first.wait()
            live.wait_until(lambda: listening_and_waiting() == (1, 0), "the second to listen")
            wired.publish(wired.event(1))
            wired.receiver.wait_for(path, 1, timeout=30)


def test_an_idle_worker_hears_new_deliveries_again_after_postgresql_restarts(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Polling is set to an hour, so only NOTIFY can wake the worker: after the database
    restarts, its LISTEN connection must be made again for a fresh event to arrive."""
    if reason := private_postgres.unavailable():
        skip_or_fail(reason)
    with private_postgres.private_cluster() as cluster:
        live.migrate_database(cluster.url)
        settings = settings_for(cluster.url, tmp_path)
        environment = worker_environment(settings, LABHOOKS_POLL_INTERVAL="3600")
        with (
            live.LiveServer(settings, with_worker=False) as server,
            first_server_admin(server) as admin,
        ):
            wired = wire(new_lab(admin), receiver)
            path = wired.path()
            wired.subscribe(wired.receiver.script(path, Reply()))
            with worker(environment, tmp_path / "worker.log"):
                wired.publish(wired.event(1))
                wired.receiver.wait_for(path, 1, timeout=30)
                # the first event may go out by the worker's first claim: the restart must come
                # once it listens, or there is no LISTEN connection to lose
                live.wait_until(lambda: _listening(cluster.url), "the worker to LISTEN")
                cluster.restart()
                wired.publish(wired.event(2))
                wired.receiver.wait_for(path, 2, timeout=30)
        log = (tmp_path / "worker.log").read_text()
        assert "LISTEN connection was lost" in log
