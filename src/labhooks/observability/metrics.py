"""Prometheus metrics (docs/observability.md lists each one).

Two kinds. What a process does (events it accepted, attempts its worker made, how long they
took, what it holds in flight) is counted where it happens, in the metrics below; with
`PROMETHEUS_MULTIPROC_DIR` set, every labhooks process on the machine writes them into files
there and any one of them serves the sum (prometheus_client's multiprocess mode). What the
installation is in (queue depth, the oldest due delivery, failing and deactivated
subscriptions, workers seen) is read from the database at scrape time, so it is right whichever
process or machine changed it.

The metrics are module-level, as prometheus_client means them to be: in multiprocess mode their
values live in per-process files whatever object holds them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from labhooks.domain.outcomes import Attempt, Verdict
from labhooks.observability.heartbeats import read_heartbeats
from labhooks.observability.readings import (
    AUTO_DISABLE_REASONS,
    read_queue,
    read_subscription_counts,
)
from labhooks.storage.database import Database
from labhooks.storage.models import utcnow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
disable_created_metrics()  # the *_created series: noise to a reader of the text format
PROCESS = CollectorRegistry()

EVENTS_ACCEPTED = Counter(
    "labhooks_events_accepted",
    "Events stored from publishers (POST /events, the bridges), duplicates not counted",
    ["type"],
    registry=PROCESS,
)
ATTEMPTS = Counter(
    "labhooks_delivery_attempts",
    "Delivery attempts recorded, by result: 2xx, 3xx, 4xx, 5xx (the target's answer) or error "
    "(no answer: timeout, refused connection, address not allowed, not sent)",
    ["result"],
    registry=PROCESS,
)
DELIVERIES = Counter(
    "labhooks_deliveries_finished",
    "Deliveries that reached an end, by outcome: succeeded, or failed (no retry left, 410 Gone)",
    ["outcome"],
    registry=PROCESS,
)
RETRIES = Counter(
    "labhooks_delivery_retries_scheduled",
    "Failed attempts after which another attempt was scheduled",
    registry=PROCESS,
)
ATTEMPT_SECONDS = Histogram(
    "labhooks_delivery_attempt_duration_seconds",
    "How long attempts took, from sending the request to the end of the answer (or the error)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
    registry=PROCESS,
)
IN_FLIGHT = Gauge(
    "labhooks_worker_in_flight_attempts",
    "Attempts a worker is making right now",
    ["worker"],
    multiprocess_mode="livesum",
    registry=PROCESS,
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def count_accepted(event_types: Iterable[str]) -> None:
    for event_type in event_types:
        EVENTS_ACCEPTED.labels(type=event_type).inc()


def attempt_result(attempt: Attempt) -> str:
    status = attempt.response_status
    if status is None or not 100 <= status < 600:
        return "error"
    return f"{status // 100}xx"


def count_recorded(recorded: Sequence[tuple[Attempt, Verdict]]) -> None:
    """Attempts that were written, with what each decided."""
    for attempt, verdict in recorded:
        ATTEMPTS.labels(result=attempt_result(attempt)).inc()
        ATTEMPT_SECONDS.observe(attempt.duration_ms / 1000)
        if verdict is Verdict.RETRY:
            RETRIES.inc()
        else:
            DELIVERIES.labels(outcome=verdict.value).inc()


async def database_families(database: Database) -> list[Metric]:
    """The installation's state, read now; `labhooks_database_up` 0 when it cannot be read."""
    up = GaugeMetricFamily(
        "labhooks_database_up", "1 when the readings from the database below could be made"
    )
    try:
        now = utcnow()
        async with database.engine.connect() as connection:
            queue = await read_queue(connection, now)
            subscriptions = await read_subscription_counts(connection)
            heartbeats = await read_heartbeats(connection)
    except Exception:  # the process metrics are still worth serving
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    depth = GaugeMetricFamily(
        "labhooks_queue_deliveries",
        "Pending deliveries by state: due (may go out now, no worker holds it), in_flight "
        "(a worker holds its lease), scheduled (a retry waiting for its time), held (its "
        "subscription is deactivated or its organisation's webhooks are off)",
        labels=["state"],
    )
    for state, number in queue.counts.items():
        depth.add_metric([state], number)
    oldest = GaugeMetricFamily(
        "labhooks_queue_oldest_due_age_seconds",
        "How long the oldest due delivery has waited past its time (0: none due)",
        value=queue.oldest_due_age_s(now),
    )
    failing = GaugeMetricFamily(
        "labhooks_subscriptions_failing",
        "Active subscriptions whose every attempt has failed since some time",
        value=subscriptions.failing,
    )
    disabled = GaugeMetricFamily(
        "labhooks_subscriptions_auto_disabled",
        "Subscriptions labhooks deactivated, by reason: failing (every attempt failed for "
        "LABHOOKS_AUTO_DISABLE_AFTER_DAYS) or gone (the target answered 410)",
        labels=["reason"],
    )
    for reason in AUTO_DISABLE_REASONS:
        disabled.add_metric([reason], subscriptions.auto_disabled[reason])
    seen = GaugeMetricFamily(
        "labhooks_worker_last_seen_seconds",
        "Seconds since each worker's last heartbeat (a stopped worker removes its own)",
        labels=["worker"],
    )
    for heartbeat in heartbeats:
        seen.add_metric([heartbeat.id], heartbeat.seen_ago_s(now))
    return [up, depth, oldest, failing, disabled, seen]


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class _ThisProcess:
    def collect(self) -> Iterable[Metric]:
        return PROCESS.collect()


def exposition(families: list[Metric]) -> bytes:
    """The text format: this process's metrics (or, in multiprocess mode, every process's
    summed) and the families read from the database."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())  # type: ignore[arg-type]
    registry.register(_Families(families))  # type: ignore[arg-type]
    return generate_latest(registry)
