"""Retention: events older than the retention period go, with their deliveries and attempts.

The unit is the event with everything under it (its page shows its deliveries and their
attempts, so nothing is left half there). An event may go when

- it was created before the cutoff, and
- none of its deliveries is pending (whatever its age: a held or retrying delivery still has to
  go out), and none finished after the cutoff (a resend keeps the history it made readable for
  a whole retention period). Failed deliveries are kept exactly as long as the others.

The purge walks the expired events oldest first in small batches. Each batch is its own short
transaction: attempts first, then deliveries, then events, so no statement relies on a cascade
of unknown size and the worst a batch holds up is `batch_size` events' rows for milliseconds.

Several workers purge at once without meeting. On PostgreSQL a batch takes its events with
`FOR UPDATE SKIP LOCKED` (a second worker takes the next events instead of waiting), then locks
their deliveries, so a resend arriving meanwhile waits for the batch and then finds the delivery
gone, or wins and keeps the event. Every DELETE repeats the "may go" test, so what is deleted is
what the test allowed at that moment. SQLite has one writer at a time: the first DELETE of a
batch holds the write lock until it commits, and the statements after it see the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from labhooks.domain.outcomes import DeliveryStatus
from labhooks.storage.database import Database
from labhooks.storage.models import Delivery, DeliveryAttempt, Event


@dataclass(frozen=True)
class Purged:
    """Rows that went (or, counted for a dry run, would go)."""

    events: int = 0
    deliveries: int = 0
    attempts: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            self.events + other.events,
            self.deliveries + other.deliveries,
            self.attempts + other.attempts,
        )

    @property
    def rows(self) -> int:
        return self.events + self.deliveries + self.attempts

    def __str__(self) -> str:
        return f"{self.events} events, {self.deliveries} deliveries, {self.attempts} attempts"


def cutoff(now: datetime, days: float) -> datetime:
    """Events created before this have expired."""
    return now - timedelta(days=days)


def _expired(before: datetime) -> ColumnElement[bool]:
    """The events that may go (see the module's docstring); correlates with `Event`."""
    # an alias, correlated by name: nested in a statement on `deliveries`, the plain table
    # would be taken for the outer one
    sibling = aliased(Delivery, name="sibling")
    # OFFSET 0 keeps PostgreSQL from turning this into an anti-join: it would expect few pending
    # deliveries and scan the whole deliveries table for every batch, where probing the
    # event_id index for each of the batch's events costs microseconds
    still_in_use = (
        select(sibling.id)
        .where(
            sibling.event_id == Event.id,
            or_(sibling.status == DeliveryStatus.PENDING.value, sibling.completed_at >= before),
        )
        .correlate(Event)
        .offset(0)
        .exists()
    )
    return and_(Event.created_at < before, ~still_in_use)


@dataclass(frozen=True)
class Position:
    """Where a run's walk has reached: the events created at or after `created_at`, or strictly
    after it once a batch there removed nothing (events that stay, or that another worker
    holds, are not read again in this run; what it passes over goes at the next run).

    Ordered by `created_at` alone, the walk follows its index: ordering by (`created_at`, `id`)
    would sort every expired event for every batch."""

    created_at: datetime
    inclusive: bool


def _after(position: Position | None) -> ColumnElement[bool]:
    if position is None:
        return true()
    if position.inclusive:
        return Event.created_at >= position.created_at
    return Event.created_at > position.created_at


def _batch(
    before: datetime, after: Position | None, size: int, postgres: bool
) -> Select[str, datetime]:
    chosen = (
        select(Event.id, Event.created_at)
        .where(_expired(before), _after(after))
        .order_by(Event.created_at)
        .limit(size)
    )
    return chosen.with_for_update(skip_locked=True, of=Event) if postgres else chosen


async def purge_batch(
    database: Database, before: datetime, size: int, after: Position | None = None
) -> tuple[Purged, Position | None]:
    """One batch of up to `size` expired events after `after`, in one transaction. Returns what
    went and where the walk is now; None when no expired event is left after `after`."""
    postgres = database.dialect == "postgresql"
    async with database.engine.begin() as connection:
        chosen = (await connection.execute(_batch(before, after, size, postgres))).all()
        if not chosen:
            return Purged(), None
        ids = [row.id for row in chosen]
        if postgres:  # their deliveries cannot change (a resend) until this batch commits
            await connection.execute(
                select(Delivery.id)
                .where(Delivery.event_id.in_(ids))
                .order_by(Delivery.id)
                .with_for_update()
            )
        purged = await _delete(connection, ids, before)
    # while batches remove something, the walk stays where it is (ties of created_at beyond
    # the batch are not passed over); a batch that removed nothing moves it on, so it ends
    return purged, Position(chosen[-1].created_at, inclusive=purged.events > 0)


async def _delete(connection: AsyncConnection, ids: list[str], before: datetime) -> Purged:
    going = select(Event.id).where(Event.id.in_(ids), _expired(before)).scalar_subquery()
    their_deliveries = select(Delivery.id).where(Delivery.event_id.in_(going)).scalar_subquery()
    attempts = await connection.execute(
        delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(their_deliveries))
    )
    deliveries = await connection.execute(delete(Delivery).where(Delivery.event_id.in_(going)))
    events = await connection.execute(delete(Event).where(Event.id.in_(ids), _expired(before)))
    return Purged(
        events.rowcount,  # type: ignore[attr-defined]
        deliveries.rowcount,  # type: ignore[attr-defined]
        attempts.rowcount,  # type: ignore[attr-defined]
    )


async def purge(
    database: Database,
    before: datetime,
    batch_size: int,
    pause_s: float = 0.0,
    stop: asyncio.Event | None = None,
) -> Purged:
    """Every expired event, `batch_size` at a time, resting `pause_s` seconds between batches
    so that delivery has the database between them; ends early once `stop` is set."""
    total = Purged()
    position: Position | None = None
    while stop is None or not stop.is_set():
        purged, position = await purge_batch(database, before, batch_size, position)
        total += purged
        if position is None:
            break
        if pause_s and stop is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause_s):
                    await stop.wait()
        elif pause_s:
            await asyncio.sleep(pause_s)
    return total


async def count_expired(database: Database, before: datetime) -> Purged:
    """What `purge` would remove now (a dry run), counted without changing anything."""
    going = select(Event.id).where(_expired(before)).scalar_subquery()
    async with database.engine.connect() as connection:
        events = await connection.scalar(
            select(func.count()).select_from(Event).where(_expired(before))
        )
        deliveries = await connection.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.event_id.in_(going))
        )
        attempts = await connection.scalar(
            select(func.count())
            .select_from(DeliveryAttempt)
            .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
            .where(Delivery.event_id.in_(going))
        )
    return Purged(events or 0, deliveries or 0, attempts or 0)
