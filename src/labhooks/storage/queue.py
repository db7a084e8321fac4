"""The delivery queue: the deliveries table itself, as a transactional outbox.

Publishing writes deliveries in the event's own transaction. Workers claim due deliveries in
batches under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, where SQLAlchemy renders it; one
UPDATE statement, hence atomic, on SQLite), and write results back in batches. A worker that dies
loses nothing: its leased deliveries become due again when the lease runs out. Everything here
works on Core statements, not ORM objects: this is the hot path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from labhooks.domain.retry import Decision, Verdict
from labhooks.storage.database import WAKE_ON_COMMIT, Database, Wakeup
from labhooks.storage.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    Organization,
    SubscriptionHeader,
    WebhookSubscription,
    utcnow,
)

PENDING, CANCELLED = Verdict.RETRY.value, "cancelled"
FAILED = Verdict.FAILED.value
STATUSES = (PENDING, Verdict.SUCCEEDED.value, FAILED, CANCELLED)  # every state a delivery has
NOTIFY_CHANNEL = "labhooks_deliveries"
FRESH, RETRY = 0, 1  # priorities: fresh deliveries are claimed before retries


@dataclass(frozen=True)
class Claimed:
    """A delivery a worker holds the lease of, with all it needs to send it."""

    delivery_id: str
    subscription_id: str
    attempt_count: int
    schedule_position: int
    payload: str
    event_type: str
    target_url: str
    ordered: bool
    rate_limit_per_s: float | None
    retry_schedule: list[float] | None
    secret_encrypted: str
    previous_secret_encrypted: str | None
    previous_secret_expires_at: datetime | None
    subscription_version: datetime


@dataclass(frozen=True)
class Completion:
    """One attempt's record and what it decided for its delivery."""

    delivery_id: str
    subscription_id: str
    number: int
    started_at: datetime
    duration_ms: float
    request_headers: dict[str, str]
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: str | None
    error: str | None
    decision: Decision


# -- within a caller's transaction ---------------------------------------------------------


async def enqueue(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Adds deliveries (dicts of Delivery columns) in the caller's transaction, and wakes
    workers in other processes when it commits."""
    if not rows:
        return
    await session.execute(insert(Delivery), list(rows))
    await notify(session)


async def cancel_pending(session: AsyncSession, subscription_id: str) -> None:
    await session.execute(
        update(Delivery)
        .where(Delivery.subscription_id == subscription_id, Delivery.status == PENDING)
        .values(status=CANCELLED, completed_at=utcnow(), lease_expires_at=None)
    )


async def notify(session: AsyncSession) -> None:
    """Wakes the workers when the caller's transaction commits: this process's through the
    session hook in storage.database, other processes' through PostgreSQL's NOTIFY."""
    session.info[WAKE_ON_COMMIT] = True
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


# -- the workers' side ---------------------------------------------------------------------


class DeliveryQueue:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def claim(self, limit: int, lease_s: float) -> list[Claimed]:
        now = utcnow()
        earlier = aliased(Delivery)
        an_earlier_one_is_pending = exists().where(
            earlier.subscription_id == Delivery.subscription_id,
            earlier.status == PENDING,
            earlier.id < Delivery.id,
        )
        due = (
            select(Delivery.id)
            .join(WebhookSubscription, WebhookSubscription.id == Delivery.subscription_id)
            .join(Organization, Organization.id == Delivery.organization_id)
            .where(
                Delivery.status == PENDING,
                Delivery.next_attempt_at <= now,
                or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now),
                WebhookSubscription.active.is_(True),
                WebhookSubscription.deleted_at.is_(None),
                Organization.webhooks_enabled.is_(True),
                # ordered subscriptions: only the oldest pending delivery may go out
                or_(WebhookSubscription.ordered.is_(False), ~an_earlier_one_is_pending),
            )
            .order_by(Delivery.priority, Delivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=Delivery)
        )
        lease = (
            update(Delivery)
            .where(Delivery.id.in_(due.scalar_subquery()))
            .values(lease_expires_at=now + timedelta(seconds=lease_s))
            .returning(Delivery.id)
        )
        details = (
            select(
                Delivery.id,
                Delivery.subscription_id,
                Delivery.attempt_count,
                Delivery.schedule_position,
                Event.payload,
                Event.type,
                WebhookSubscription.target_url,
                WebhookSubscription.ordered,
                WebhookSubscription.rate_limit_per_s,
                WebhookSubscription.retry_schedule,
                WebhookSubscription.secret_encrypted,
                WebhookSubscription.previous_secret_encrypted,
                WebhookSubscription.previous_secret_expires_at,
                WebhookSubscription.updated_at,
            )
            .join(Event, Event.id == Delivery.event_id)
            .join(WebhookSubscription, WebhookSubscription.id == Delivery.subscription_id)
        )
        async with self.database.engine.begin() as connection:
            ids = list((await connection.execute(lease)).scalars())
            if not ids:
                return []
            rows = await connection.execute(
                details.where(Delivery.id.in_(ids)).order_by(Delivery.id)
            )
            return [Claimed(*row) for row in rows]  # type: ignore[call-arg]  # columns in field order

    async def headers(self, subscription_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Each subscription's custom headers as (name, encrypted value), in order."""
        statement = (
            select(
                SubscriptionHeader.subscription_id,
                SubscriptionHeader.name,
                SubscriptionHeader.value_encrypted,
            )
            .where(SubscriptionHeader.subscription_id.in_(subscription_ids))
            .order_by(SubscriptionHeader.subscription_id, SubscriptionHeader.position)
        )
        result: dict[str, list[tuple[str, str]]] = {i: [] for i in subscription_ids}
        async with self.database.engine.connect() as connection:
            for subscription_id, name, value in await connection.execute(statement):
                result[subscription_id].append((name, value))
        return result

    async def defer(self, delivery_ids: Sequence[str], until: datetime) -> None:
        """Gives deliveries back unsent (a rate limit), due again at `until`."""
        if not delivery_ids:
            return
        async with self.database.engine.begin() as connection:
            await connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(delivery_ids))
                .values(next_attempt_at=until, lease_expires_at=None)
            )

    async def complete(
        self, completions: Sequence[Completion], auto_disable_after_s: float
    ) -> None:
        """Writes a batch of attempts and their decisions in one transaction."""
        if not completions:
            return
        now = utcnow()
        attempts = [
            {
                "delivery_id": c.delivery_id,
                "number": c.number,
                "started_at": c.started_at,
                "duration_ms": c.duration_ms,
                "request_headers": c.request_headers,
                "response_status": c.response_status,
                "response_headers": c.response_headers,
                "response_body": c.response_body,
                "error": c.error,
            }
            for c in completions
        ]
        updates = [
            {
                "b_id": c.delivery_id,
                "b_status": c.decision.verdict.value,
                "b_next": c.decision.next_attempt_at or now,
                "b_code": c.response_status,
                "b_error": c.error,
                "b_done": None if c.decision.verdict is Verdict.RETRY else now,
            }
            for c in completions
        ]
        write_back = (
            update(Delivery)
            .where(Delivery.id == bindparam("b_id"), Delivery.status == PENDING)
            .values(
                status=bindparam("b_status"),
                next_attempt_at=bindparam("b_next"),
                last_status_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                completed_at=bindparam("b_done"),
                attempt_count=Delivery.attempt_count + 1,
                schedule_position=Delivery.schedule_position + 1,
                priority=RETRY,
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        async with self.database.engine.begin() as connection:
            await connection.execute(insert(DeliveryAttempt), attempts)
            await connection.execute(write_back, updates)
            await _track_failures(connection, completions, now, auto_disable_after_s)

    @contextlib.asynccontextmanager
    async def listening(self, wakeup: Wakeup) -> AsyncIterator[None]:
        """On PostgreSQL, a dedicated connection LISTENs and sets `wakeup` on every NOTIFY."""
        if self.database.dialect != "postgresql":
            yield
            return
        import asyncpg

        url = self.database.engine.url.set(drivername="postgresql")
        connection = await asyncpg.connect(url.render_as_string(hide_password=False))

        def on_notify(*_: object) -> None:
            wakeup.set()

        await connection.add_listener(NOTIFY_CHANNEL, on_notify)
        try:
            yield
        finally:
            await connection.close()


async def _track_failures(
    connection: AsyncConnection,
    completions: Sequence[Completion],
    now: datetime,
    auto_disable_after_s: float,
) -> None:
    """A success ends a subscription's failing streak; a streak as long as the setting, or a
    410 Gone, deactivates it with a reason its owner sees."""
    table = WebhookSubscription
    succeeded = {c.subscription_id for c in completions if c.decision.verdict is Verdict.SUCCEEDED}
    failing = {c.subscription_id for c in completions} - succeeded
    if succeeded:
        await connection.execute(
            update(table)
            .where(table.id.in_(succeeded), table.failing_since.is_not(None))
            .values(failing_since=None)
        )
    if failing:
        await connection.execute(
            update(table)
            .where(table.id.in_(failing), table.failing_since.is_(None))
            .values(failing_since=now)
        )
        days = auto_disable_after_s / 86400
        await connection.execute(
            update(table)
            .where(
                table.id.in_(failing),
                table.active.is_(True),
                table.failing_since <= now - timedelta(seconds=auto_disable_after_s),
            )
            .values(
                active=False,
                disabled_reason="Deactivated automatically: every delivery attempt "
                f"failed for {days:g} days. Fix the target, then activate it again.",
            )
        )
    for completion in completions:
        if completion.decision.deactivate_reason:
            await connection.execute(
                update(table)
                .where(table.id == completion.subscription_id)
                .values(active=False, disabled_reason=completion.decision.deactivate_reason)
            )
