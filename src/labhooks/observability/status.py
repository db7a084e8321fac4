"""`labhooks status`: the installation at a glance, read from the database: the queue, the
delivery rate, the failing subscriptions and the workers. A table for people (rich), JSON for
scripts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from labhooks.observability.heartbeats import Heartbeat, read_heartbeats
from labhooks.observability.readings import (
    RATE_WINDOW_S,
    FailingSubscription,
    QueueReading,
    attempts_in_last_minute,
    failing_subscriptions,
    read_queue,
)
from labhooks.storage.database import Database
from labhooks.storage.models import utcnow

STALE_BEATS = 3  # a worker unseen for this many heartbeat intervals has probably stopped


@dataclass(frozen=True)
class Status:
    now: datetime
    queue: QueueReading
    attempts_last_minute: int
    rate_is_lower_bound: bool
    failing: list[FailingSubscription]
    workers: list[Heartbeat]
    heartbeat_s: float

    @property
    def deliveries_per_s(self) -> float:
        return self.attempts_last_minute / RATE_WINDOW_S

    def stale(self, worker: Heartbeat) -> bool:
        return worker.seen_ago_s(self.now) > STALE_BEATS * self.heartbeat_s


async def read_status(database: Database, heartbeat_s: float) -> Status:
    now = utcnow()
    async with database.engine.connect() as connection:
        queue = await read_queue(connection, now)
        attempts, lower_bound = await attempts_in_last_minute(connection, now)
        failing = await failing_subscriptions(connection)
        workers = await read_heartbeats(connection)
    return Status(now, queue, attempts, lower_bound, failing, workers, heartbeat_s)


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def as_json(status: Status) -> dict[str, Any]:
    return {
        "time": _time(status.now),
        "queue": status.queue.counts
        | {"oldest_due_age_s": round(status.queue.oldest_due_age_s(status.now), 3)},
        "deliveries_per_s": round(status.deliveries_per_s, 3),
        "attempts_last_minute": status.attempts_last_minute,
        "rate_is_lower_bound": status.rate_is_lower_bound,
        "failing_subscriptions": [
            asdict(f) | {"failing_since": _time(f.failing_since)} for f in status.failing
        ],
        "workers": [
            asdict(w)
            | {
                "started_at": _time(w.started_at),
                "seen_at": _time(w.seen_at),
                "seen_s_ago": round(w.seen_ago_s(status.now), 1),
                "stale": status.stale(w),
            }
            for w in status.workers
        ],
    }


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def render(status: Status, console: Console) -> None:
    now, queue = status.now, status.queue
    oldest = queue.oldest_due_age_s(now)
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("queue", _queue_line(queue))
    summary.add_row(
        "oldest due",
        Text(
            f"waiting {oldest:.1f} s" if queue.oldest_due_at else "none waiting",
            style="red" if oldest > 60 else "",
        ),
    )
    rate = f"{status.deliveries_per_s:.1f}/s over the last minute"
    summary.add_row(
        "attempts",
        f"{'at least ' if status.rate_is_lower_bound else ''}{rate}"
        f" ({status.attempts_last_minute} attempts)",
    )
    console.print(
        Group(
            Text(f"labhooks status at {now:%Y-%m-%d %H:%M:%S} UTC", style="bold"),
            summary,
            Text(""),
            _failing_table(status),
            Text(""),
            _workers_table(status),
        )
    )


def _queue_line(queue: QueueReading) -> Text:
    c = queue.counts
    line = Text()
    line.append(f"{c['due']} due", style="yellow" if c["due"] else "")
    line.append(f", {c['in_flight']} in flight, {c['scheduled']} retries waiting, ")
    line.append(f"{c['held']} held", style="dim")
    return line


def _failing_table(status: Status) -> Table | Text:
    if not status.failing:
        return Text("No failing subscriptions.", style="green")
    table = Table(title="Failing subscriptions", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("organisation", "owner", "target URL", "failing since", "state", "last error"):
        table.add_column(column, overflow="fold")
    for f in status.failing:
        failing_for = (status.now - f.failing_since).total_seconds()
        table.add_row(
            f.organization,
            f.owner or "(deleted)",
            f.target_url,
            f"{f.failing_since:%Y-%m-%d %H:%M} UTC ({_ago(failing_for)})",
            Text("active", style="yellow") if f.active else Text("deactivated", style="red"),
            f.last_error or "",
        )
    return table


def _workers_table(status: Status) -> Table | Text:
    if not status.workers:
        return Text("No workers seen.", style="red")
    table = Table(title="Workers", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("worker", "seen", "in flight", "attempts", "running since"):
        table.add_column(column, justify="right" if column in ("in flight", "attempts") else "left")
    for w in status.workers:
        seen = Text(_ago(w.seen_ago_s(status.now)))
        if status.stale(w):
            seen.append(" (stopped?)", style="red")
        table.add_row(
            w.id, seen, str(w.in_flight), str(w.attempts), f"{w.started_at:%Y-%m-%d %H:%M} UTC"
        )
    return table
