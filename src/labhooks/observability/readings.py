"""What the database says about the delivery queue and the subscriptions, read when /metrics is
scraped and when `labhooks status` runs: the state of the whole installation, whichever
process or machine did the work. Read-only, dialect-neutral Core queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from labhooks.domain.outcomes import DeliveryStatus
from labhooks.storage.models import (
    Delivery,
    DeliveryAttempt,
    Organization,
    User,
    WebhookSubscription,
    utcnow,
)

QUEUE_STATES = ("due", "in_flight", "scheduled", "held")
RATE_WINDOW_S = 60
# The rate is counted over the newest attempts by id (the primary key, so no scan of a large
# table); at this many a minute (over 3,000 a second) it says "at least".
RATE_SCAN_LIMIT = 200_000
# Why labhooks deactivated a subscription, by the start of the reason it stores
# (domain.outcomes: AutoDisable.reason and decide()'s 410 Gone).
AUTO_DISABLE_REASONS = {
    "failing": "Deactivated automatically",
    "gone": "The target answered 410",
}


@dataclass(frozen=True)
class QueueReading:
    """Pending deliveries by state. `due`: may go out now but no worker holds it (the backlog);
    `in_flight`: a worker holds its lease; `scheduled`: a retry waiting for its time; `held`:
    its subscription is deactivated or its organisation's webhooks are off."""

    counts: dict[str, int]
    oldest_due_at: datetime | None

    def oldest_due_age_s(self, now: datetime) -> float:
        """How long the oldest due delivery has waited past its time; 0 with none due."""
        if self.oldest_due_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_due_at).total_seconds())


async def read_queue(connection: AsyncConnection, now: datetime) -> QueueReading:
    subscription, delivery = WebhookSubscription, Delivery
    deliverable = and_(
        subscription.active.is_(True),
        subscription.deleted_at.is_(None),
        Organization.webhooks_enabled.is_(True),
    )
    state = case(
        (~deliverable, literal("held")),
        (
            and_(delivery.lease_expires_at.is_not(None), delivery.lease_expires_at > now),
            literal("in_flight"),
        ),
        (delivery.next_attempt_at <= now, literal("due")),
        else_=literal("scheduled"),
    )
    # labelled in a subquery and grouped outside it: PostgreSQL would not see a CASE with bound
    # parameters in GROUP BY as the same expression as the one selected
    pending = (
        select(state.label("state"), delivery.next_attempt_at.label("due_at"))
        .join(subscription, subscription.id == delivery.subscription_id)
        .join(Organization, Organization.id == delivery.organization_id)
        .where(delivery.status == DeliveryStatus.PENDING.value)
        .subquery()
    )
    rows = await connection.execute(
        select(pending.c.state, func.count(), func.min(pending.c.due_at)).group_by(pending.c.state)
    )
    counts = dict.fromkeys(QUEUE_STATES, 0)
    oldest: datetime | None = None
    for name, number, earliest in rows:
        counts[name] = int(number)
        if name == "due":
            oldest = earliest
    return QueueReading(counts, oldest)


async def attempts_in_last_minute(connection: AsyncConnection, now: datetime) -> tuple[int, bool]:
    """Attempts started in the last RATE_WINDOW_S seconds, and whether that is only a lower
    bound (the newest RATE_SCAN_LIMIT attempts all fell in the window)."""
    newest = (
        select(DeliveryAttempt.started_at)
        .order_by(DeliveryAttempt.id.desc())
        .limit(RATE_SCAN_LIMIT)
        .subquery()
    )
    since = now - timedelta(seconds=RATE_WINDOW_S)
    count = await connection.scalar(
        select(func.count()).select_from(newest).where(newest.c.started_at >= since)
    )
    return int(count or 0), int(count or 0) >= RATE_SCAN_LIMIT


@dataclass(frozen=True)
class SubscriptionCounts:
    failing: int  # active, and every attempt since `failing_since` failed
    auto_disabled: dict[str, int]  # deactivated by labhooks, by AUTO_DISABLE_REASONS key


async def read_subscription_counts(connection: AsyncConnection) -> SubscriptionCounts:
    table = WebhookSubscription
    live = table.deleted_at.is_(None)
    failing = await connection.scalar(
        select(func.count()).where(live, table.active.is_(True), table.failing_since.is_not(None))
    )
    disabled = {}
    for name, prefix in AUTO_DISABLE_REASONS.items():
        disabled[name] = int(
            await connection.scalar(
                select(func.count()).where(
                    live, table.active.is_(False), table.disabled_reason.startswith(prefix)
                )
            )
            or 0
        )
    return SubscriptionCounts(int(failing or 0), disabled)


@dataclass(frozen=True)
class FailingSubscription:
    id: str
    organization: str
    owner: str | None  # e-mail; None when its owner was deleted
    target_url: str
    failing_since: datetime
    active: bool
    disabled_reason: str | None
    last_error: str | None  # of its latest failed attempt: the error, or "HTTP 503"


async def failing_subscriptions(
    connection: AsyncConnection, limit: int = 50
) -> list[FailingSubscription]:
    """Subscriptions whose every attempt failed since some time, the longest failing first."""
    table = WebhookSubscription
    rows = await connection.execute(
        select(
            table.id,
            Organization.name,
            User.email,
            table.target_url,
            table.failing_since,
            table.active,
            table.disabled_reason,
        )
        .join(Organization, Organization.id == table.organization_id)
        .outerjoin(User, User.id == table.owner_id)
        .where(table.deleted_at.is_(None), table.failing_since.is_not(None))
        .order_by(table.failing_since, table.id)
        .limit(limit)
    )
    found = []
    for id_, organization, owner, url, since, active, reason in list(rows):
        found.append(
            FailingSubscription(
                id_,
                organization,
                owner,
                url,
                since or utcnow(),  # not None: the query asks for it
                active,
                reason,
                last_error=await _last_error(connection, id_),
            )
        )
    return found


async def _last_error(connection: AsyncConnection, subscription_id: str) -> str | None:
    latest = await connection.execute(
        select(Delivery.last_error, Delivery.last_status_code)
        .where(
            Delivery.subscription_id == subscription_id,
            Delivery.attempt_count > 0,
            Delivery.status != DeliveryStatus.SUCCEEDED.value,
        )
        .order_by(Delivery.id.desc())
        .limit(1)
    )
    row = latest.first()
    if row is None:
        return None
    error, status = row
    return error or (f"HTTP {status}" if status is not None else None)
