"""The delivery queue: the deliveries table as a transactional outbox, and the one place that
changes a delivery's state.

In the caller's transaction (services): `enqueue` with the event, `requeue` (resend),
`retry_now` (a waiting retry, due at once) and `requeue_failed` (replay), `cancel`
(subscription or its owner deleted), and `wake` (held deliveries may go out: a subscription was
activated, webhooks switched on). For the workers,
`DeliveryQueue`: `claim` due deliveries under a lease, `defer` them unsent (a rate limit),
`complete` them with their attempts, and `listening` for new work. A worker that dies loses
nothing: its leased deliveries become due again when the lease runs out. The states and what an
attempt decides are the domain's (`domain.outcomes`); this module applies them. Everything here
works on Core statements, not ORM objects: this is the hot path.

Operational events (`domain.catalogue.ORGANIZATION_EVENT_TYPES`) are made here too, in the
transaction of the transition they report: `complete` emits `subscription.disabled` for each
subscription it deactivates and `delivery.exhausted` for each delivery whose last retry failed;
`publish_organization_events` stores them and queues them to the organisation-level
subscriptions that take them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    exists,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from labhooks.domain.catalogue import (
    DELIVERY_EXHAUSTED,
    ORGANIZATION_EVENT_TYPES,
    SUBSCRIPTION_DISABLED,
    organization_payload,
)
from labhooks.domain.ids import new_id
from labhooks.domain.outcomes import (
    ATTEMPT_COLUMNS,
    Attempt,
    AutoDisable,
    Decision,
    DeliveryStatus,
    Verdict,
)
from labhooks.domain.people import Role
from labhooks.signals import Signal
from labhooks.storage import notify
from labhooks.storage.database import (
    HAND_OVER_ON_COMMIT,
    Database,
    DatabaseUnavailable,
    is_transient,
)
from labhooks.storage.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    Organization,
    SubscriptionHeader,
    User,
    WebhookSubscription,
    utcnow,
)

PENDING = DeliveryStatus.PENDING.value
FRESH, RETRY = 0, 1  # priorities: fresh deliveries are claimed before retries
wake = notify.wake  # services call it as a transition of the queue: held deliveries may go out


@dataclass(frozen=True)
class Claimed:
    """A delivery a worker holds the lease of: what varies per delivery."""

    delivery_id: str
    subscription_id: str
    attempt_count: int
    schedule_position: int
    payload: str
    subscription_version: datetime  # the subscription's updated_at, to know a cached copy is old


@dataclass(frozen=True)
class SubscriptionDetails:
    """What sending to one subscription needs, secrets still encrypted as stored."""

    subscription_id: str
    version: datetime
    target_url: str
    rate_limit_per_s: float | None
    retry_schedule: list[float] | None
    signature_scheme: str
    secret_encrypted: str
    previous_secret_encrypted: str | None
    previous_secret_expires_at: datetime | None
    headers: list[tuple[str, str]]  # (name, encrypted value), in order


@dataclass(frozen=True)
class Finished:
    """A claimed delivery, the attempt made at it, and what that attempt decided."""

    delivery: Claimed
    attempt: Attempt
    decision: Decision

    @property
    def exhausts(self) -> bool:
        """Its schedule is spent: failed for good, not by a 410 (that disables the
        subscription, and says so)."""
        return self.decision.verdict is Verdict.FAILED and not self.decision.deactivate_reason


@dataclass(frozen=True)
class OrganizationEvent:
    """An operational event about one subscription: stored with no device and no channel, and
    queued to the organisation's subscriptions that take its type, never to `subscription`."""

    organization_id: str
    type: str  # a name in ORGANIZATION_EVENT_TYPES
    subscription: dict[str, Any]  # id, target_url, description, owner_id
    data: dict[str, Any]  # the type's fields besides `subscription`


_INSERT_DELIVERIES = insert(Delivery)  # built once: every publish with a subscriber runs it

# -- within the caller's transaction --------------------------------------------------------


async def enqueue(
    session: AsyncSession,
    organization_id: str,
    pairs: Sequence[tuple[str, str]],
    sendable: Mapping[tuple[str, str], tuple[str, datetime]] | None = None,
) -> list[tuple[str, str]]:
    """Queues one delivery per (subscription id, event id), due now, and wakes the workers
    when the caller's transaction commits. Returns (delivery id, subscription id) pairs.

    `sendable`: the pairs that may skip the queue, with the body and the subscription's version
    (its updated_at). While this process runs a worker with room, those deliveries are written
    already leased to it and handed to it when the transaction commits: no claim, no wake-up,
    the first attempt starts at once. Should this process die before sending them, their lease
    runs out and any worker claims them, as after any crash."""
    if not pairs:
        return []
    now = utcnow()
    rows = _new_deliveries(organization_id, pairs, now)
    handed = _hand_over_on_commit(session, rows, pairs, sendable or {}, now)
    await (await session.connection()).execute(_INSERT_DELIVERIES, rows)
    if len(handed) < len(rows):
        await notify.wake(session)
    return [
        (str(row["id"]), subscription_id)
        for row, (subscription_id, _) in zip(rows, pairs, strict=True)
    ]


class LocalWorker(Protocol):
    """This process's worker, as enqueue hands it deliveries (delivery.worker.Worker)."""

    lease_s: float

    def reserve(self, wanted: int) -> int:
        """Up to `wanted` slots held for deliveries about to be handed over; how many."""
        ...

    def hand_over(self, claimed: list[Claimed]) -> None:
        """Sends these (leased to it, committed), in the slots reserved for them."""
        ...

    def give_back(self, count: int) -> None:
        """Frees slots reserved for deliveries that were not stored after all."""
        ...


def _hand_over_on_commit(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    pairs: Sequence[tuple[str, str]],
    sendable: Mapping[tuple[str, str], tuple[str, datetime]],
    now: datetime,
) -> list[Claimed]:
    """Leases what this process's worker has room for, in `rows`, and has it handed over when
    the session's transaction commits (or its slots given back if it does not)."""
    database = session.info.get("database")
    worker: LocalWorker | None = getattr(database, "local_worker", None)
    candidates = [(row, pair) for row, pair in zip(rows, pairs, strict=True) if pair in sendable]
    if worker is None or not candidates:
        return []
    lease_until = now + timedelta(seconds=worker.lease_s)
    handed = []
    for row, pair in candidates[: worker.reserve(len(candidates))]:
        row["lease_expires_at"] = lease_until
        payload, version = sendable[pair]
        handed.append(Claimed(row["id"], row["subscription_id"], 0, 0, payload, version))
    if handed:
        session.info.setdefault(HAND_OVER_ON_COMMIT, []).append((worker, handed))
    return handed


def _new_deliveries(
    organization_id: str, pairs: Sequence[tuple[str, str]], now: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id("dlv"),
            "organization_id": organization_id,
            "subscription_id": subscription_id,
            "event_id": event_id,
            "status": PENDING,
            "priority": FRESH,
            "attempt_count": 0,
            "schedule_position": 0,
            "next_attempt_at": now,
            "lease_expires_at": None,
            "created_at": now,
        }
        for subscription_id, event_id in pairs
    ]


async def publish_organization_events(
    connection: AsyncConnection, events: Sequence[OrganizationEvent], now: datetime
) -> int:
    """Stores each event (no device, no channel) and queues one delivery of it to each active
    organisation-level subscription of its organisation that takes its type, whose owner is
    still an organisation administrator, if the organisation's webhooks are on; never to the
    subscription the event is about. In the caller's transaction; returns the deliveries
    queued (the caller wakes this process's workers after commit: NOTIFY wakes the others)."""
    if not events:
        return 0
    subscribers = await _organization_subscribers(
        connection, {event.organization_id for event in events}
    )
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for event in events:
        event_id = new_id("evt")
        data = ORGANIZATION_EVENT_TYPES[event.type].validate(
            {"subscription": event.subscription, **event.data}
        )
        event_rows.append(
            {
                "id": event_id,
                "organization_id": event.organization_id,
                "device_id": None,
                "channel_id": None,
                "type": event.type,
                "occurred_at": now,
                "payload": organization_payload(
                    event_id=event_id,
                    event_type=event.type,
                    occurred_at=now,
                    organization_id=event.organization_id,
                    data=data,
                ),
                "idempotency_key": None,
                "request_fingerprint": None,
                "published_by_token_id": None,
                "is_test": False,
                "created_at": now,
            }
        )
        pairs = [
            (subscription_id, event_id)
            for subscription_id, takes in subscribers.get(event.organization_id, [])
            if event.type in takes and subscription_id != event.subscription["id"]
        ]
        delivery_rows += _new_deliveries(event.organization_id, pairs, now)
    await connection.execute(insert(Event), event_rows)
    if delivery_rows:
        await connection.execute(insert(Delivery), delivery_rows)
        if connection.dialect.name == "postgresql":
            await connection.execute(notify.NOTIFY, {"channel": notify.DELIVERIES})
    return len(delivery_rows)


async def _organization_subscribers(
    connection: AsyncConnection, organization_ids: set[str]
) -> dict[str, list[tuple[str, list[str]]]]:
    """organisation id → (subscription id, operational event types it takes) of its active
    organisation-level subscriptions owned by an administrator, if its webhooks are on. Few
    rows: only subscriptions that take operational events at all."""
    table = WebhookSubscription
    rows = await connection.execute(
        select(table.organization_id, table.id, table.organization_events)
        .join(Organization, Organization.id == table.organization_id)
        .join(User, User.id == table.owner_id)
        .where(
            table.organization_id.in_(organization_ids),
            table.organization_events.is_not(None),
            table.active.is_(True),
            table.deleted_at.is_(None),
            Organization.webhooks_enabled.is_(True),
            User.role == Role.ADMIN.value,
        )
        .order_by(table.id)
    )
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for organization_id, subscription_id, takes in rows:
        if takes:  # a JSON null or [] takes nothing
            found.setdefault(organization_id, []).append((subscription_id, list(takes)))
    return found


def _requeue() -> Any:
    """Pending again with a fresh retry schedule; the same id, so the same webhook-id."""
    return (
        update(Delivery)
        .values(
            status=PENDING,
            priority=FRESH,
            schedule_position=0,
            next_attempt_at=utcnow(),
            lease_expires_at=None,
            completed_at=None,
        )
        .execution_options(synchronize_session=False)
    )


async def requeue(session: AsyncSession, delivery_id: str) -> bool:
    """A finished delivery of a subscription that still exists goes out again; False when the
    delivery is not one (pending, cancelled, or its subscription deleted)."""
    live_subscription = select(WebhookSubscription.id).where(
        WebhookSubscription.id == Delivery.subscription_id,
        WebhookSubscription.deleted_at.is_(None),
    )
    result = await session.execute(
        _requeue().where(
            Delivery.id == delivery_id,
            Delivery.status.in_([DeliveryStatus.SUCCEEDED.value, DeliveryStatus.FAILED.value]),
            live_subscription.exists(),
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    await notify.wake(session)
    return True


async def retry_now(session: AsyncSession, delivery_id: str) -> bool:
    """A pending delivery waiting for its next retry is due now (its schedule goes on from
    where it is); False when it is not waiting (finished, cancelled, or being sent)."""
    now = utcnow()
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status == PENDING,
            or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now),
        )
        .values(next_attempt_at=now, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    await notify.wake(session)
    return True


async def requeue_failed(session: AsyncSession, subscription_id: str, since: datetime) -> int:
    """Every failed delivery of the subscription created at or after `since`; how many."""
    result = await session.execute(
        _requeue().where(
            Delivery.subscription_id == subscription_id,
            Delivery.status == DeliveryStatus.FAILED.value,
            Delivery.created_at >= since,
        )
    )
    await notify.wake(session)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def cancel(session: AsyncSession, subscription_ids: Sequence[str]) -> None:
    """The pending deliveries of these subscriptions will never go out."""
    if not subscription_ids:
        return
    await session.execute(
        update(Delivery)
        .where(Delivery.subscription_id.in_(subscription_ids), Delivery.status == PENDING)
        .values(status=DeliveryStatus.CANCELLED.value, completed_at=utcnow(), lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


# -- the workers' side -------------------------------------------------------------------


def _due(now: ColumnElement[datetime]) -> list[ColumnElement[bool]]:
    """Which deliveries may go out at `now`: pending, due, not leased, of an active subscription
    of an organisation with webhooks on; of an ordered subscription only the oldest pending.
    Needs the subscription and the organisation joined."""
    earlier = aliased(Delivery)
    an_earlier_one_is_pending = exists().where(
        earlier.subscription_id == Delivery.subscription_id,
        earlier.status == PENDING,
        earlier.id < Delivery.id,
    )
    return [
        Delivery.status == PENDING,
        Delivery.next_attempt_at <= now,
        or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now),
        WebhookSubscription.active.is_(True),
        WebhookSubscription.deleted_at.is_(None),
        Organization.webhooks_enabled.is_(True),
        or_(WebhookSubscription.ordered.is_(False), ~an_earlier_one_is_pending),
    ]


def _with_owners(statement: Any) -> Any:
    return statement.join(
        WebhookSubscription, WebhookSubscription.id == Delivery.subscription_id
    ).join(Organization, Organization.id == Delivery.organization_id)


def _claim_statement() -> Any:
    """UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING the details, built once
    (every claim runs it; building it cost more than running it): binds `now`, `limit` and
    `lease_until`."""
    now = bindparam("now", type_=Delivery.next_attempt_at.type)
    due = (
        _with_owners(select(Delivery.id))
        .where(*_due(now))
        .order_by(Delivery.priority, Delivery.next_attempt_at)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(skip_locked=True, of=Delivery)
    )
    # Correlated subqueries, not UPDATE … FROM: SQLite's RETURNING may not name the FROM
    # tables. (SQLite renders their columns unqualified; neither subquery's table has a
    # column named like the outer one it compares with, so each name resolves as meant.)
    event = aliased(Event, name="event")
    subscription = aliased(WebhookSubscription, name="subscription")
    payload = select(event.payload).where(event.id == Delivery.event_id)
    version = select(subscription.updated_at).where(subscription.id == Delivery.subscription_id)
    return (
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(lease_expires_at=bindparam("lease_until", type_=Delivery.lease_expires_at.type))
        .returning(
            Delivery.id,
            Delivery.subscription_id,
            Delivery.attempt_count,
            Delivery.schedule_position,
            payload.correlate(Delivery).scalar_subquery(),
            version.correlate(Delivery).scalar_subquery(),
        )
    )


_CLAIM = _claim_statement()


class DeliveryQueue:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def claim(self, limit: int, lease_s: float) -> list[Claimed]:
        """Leases up to `limit` due deliveries, fresh ones before retries, in one statement
        (`_CLAIM`)."""
        now = utcnow()
        parameters = {"now": now, "limit": limit, "lease_until": now + timedelta(seconds=lease_s)}
        async with self.database.engine.begin() as connection:
            rows = await connection.execute(_CLAIM, parameters)
            return [Claimed(*row) for row in rows]

    async def claimable(self, delivery_ids: Sequence[str], now: datetime) -> set[str]:
        """Which of these deliveries a claim at `now` would take (read-only: nothing leased)."""
        statement = _with_owners(select(Delivery.id)).where(
            Delivery.id.in_(delivery_ids), *_due(literal(now, Delivery.next_attempt_at.type))
        )
        async with self.database.engine.connect() as connection:
            return set((await connection.execute(statement)).scalars())

    async def subscriptions(
        self, subscription_ids: Sequence[str]
    ) -> dict[str, SubscriptionDetails]:
        """What sending to each of these subscriptions needs: two queries for all of them."""
        table = WebhookSubscription
        details = select(
            table.id,
            table.updated_at,
            table.target_url,
            table.rate_limit_per_s,
            table.retry_schedule,
            table.signature_scheme,
            table.secret_encrypted,
            table.previous_secret_encrypted,
            table.previous_secret_expires_at,
        ).where(table.id.in_(subscription_ids))
        headers = (
            select(
                SubscriptionHeader.subscription_id,
                SubscriptionHeader.name,
                SubscriptionHeader.value_encrypted,
            )
            .where(SubscriptionHeader.subscription_id.in_(subscription_ids))
            .order_by(SubscriptionHeader.subscription_id, SubscriptionHeader.position)
        )
        by_subscription: dict[str, list[tuple[str, str]]] = {i: [] for i in subscription_ids}
        async with self.database.engine.connect() as connection:
            for subscription_id, name, value in await connection.execute(headers):
                by_subscription[subscription_id].append((name, value))
            rows = list(await connection.execute(details))
        return {row[0]: SubscriptionDetails(*row, headers=by_subscription[row[0]]) for row in rows}

    async def defer(self, due_again: Sequence[tuple[str, datetime]]) -> None:
        """Gives deliveries back unsent (a rate limit), each due again at its time."""
        if not due_again:
            return
        give_back = (
            update(Delivery)
            .where(Delivery.id == bindparam("b_id"))
            .values(next_attempt_at=bindparam("b_due"), lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        async with self.database.engine.begin() as connection:
            await connection.execute(give_back, [{"b_id": i, "b_due": at} for i, at in due_again])

    async def complete(self, finished: Sequence[Finished], auto_disable: AutoDisable) -> None:
        """Records a batch of attempts and their decisions in one transaction. Raises
        DatabaseUnavailable when the database could not do it now; any other error means it
        refused what the batch contains."""
        try:
            await self._complete(finished, auto_disable)
        except Exception as exc:
            if is_transient(exc):
                raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc
            raise

    async def _complete(self, finished: Sequence[Finished], auto_disable: AutoDisable) -> None:
        if not finished:
            return
        now = utcnow()
        attempts = [
            {column: getattr(f.attempt, column) for column in ATTEMPT_COLUMNS} for f in finished
        ]
        updates = [
            {
                "b_id": f.delivery.delivery_id,
                "b_claimed": f.delivery.attempt_count,
                "b_status": f.decision.status.value,
                "b_next": f.decision.next_attempt_at or now,
                "b_code": f.attempt.response_status,
                "b_error": f.attempt.error,
                "b_done": None if f.decision.verdict is Verdict.RETRY else now,
            }
            for f in finished
        ]
        # A delivery that ends failed here is written alone, to learn from RETURNING whether
        # this write is the one that ended it (rare: once per delivery at most).
        ending = [u for u, f in zip(updates, finished, strict=True) if f.exhausts]
        moving_on = [u for u, f in zip(updates, finished, strict=True) if not f.exhausts]
        async with self.database.engine.begin() as connection:
            await connection.execute(_INSERT_ATTEMPTS, attempts)
            if moving_on:
                await connection.execute(_WRITE_BACK, moving_on)
            exhausted = [
                delivery_id
                for row in ending
                for delivery_id in (await connection.execute(_WRITE_BACK_ENDING, row)).scalars()
            ]
            disabled = await _track_failures(connection, finished, now, auto_disable)
            notices = disabled + await _exhausted_notices(connection, exhausted)
            queued = await publish_organization_events(connection, notices, now)
            await notify.announce_attempts(connection)
        if queued:
            self.database.enqueued.set()  # this process's workers; NOTIFY woke the others

    def listening(self, enqueued: Signal) -> contextlib.AbstractAsyncContextManager[None]:
        """While inside, NOTIFY from other processes sets `enqueued` (PostgreSQL only), in one
        worker process at a time (storage.notify)."""
        return notify.listening(self.database, {notify.DELIVERIES: enqueued}, one_at_a_time=True)


_INSERT_ATTEMPTS = insert(DeliveryAttempt)
# Only the claim this attempt was made under moves the delivery on: a result written late (its
# lease ran out, another worker claimed and recorded it) changes nothing.
_WRITE_BACK = (
    update(Delivery)
    .where(
        Delivery.id == bindparam("b_id"),
        Delivery.status == PENDING,
        Delivery.attempt_count == bindparam("b_claimed"),
    )
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
_WRITE_BACK_ENDING = _WRITE_BACK.returning(Delivery.id)  # tells whether it was this write
# A failing streak is the queue's bookkeeping, not a change of the subscription: its updated_at
# (the version workers and publishers keep copies by) stays, or every target that starts or
# stops failing would make them load it again.
_UNCHANGED_VERSION = {"updated_at": WebhookSubscription.updated_at}
_STREAK_ENDED = (
    update(WebhookSubscription)
    .where(
        WebhookSubscription.id.in_(bindparam("ids", expanding=True)),
        WebhookSubscription.failing_since.is_not(None),
    )
    .values(failing_since=None, **_UNCHANGED_VERSION)
)


def _reference(row: Any) -> dict[str, Any]:
    """A subscription as operational events name it, from (id, target_url, description,
    owner_id) columns."""
    return {
        "id": row.id,
        "target_url": row.target_url,
        "description": row.description,
        "owner_id": row.owner_id,
    }


async def _track_failures(
    connection: AsyncConnection,
    finished: Sequence[Finished],
    now: datetime,
    auto_disable: AutoDisable,
) -> list[OrganizationEvent]:
    """A success ends a subscription's failing streak; a streak as long as the policy allows,
    or a 410 Gone, deactivates it with a reason its owner sees. Returns a
    `subscription.disabled` event for each subscription deactivated here: only an active one
    is, so two workers seeing the same 410 report it once."""
    table = WebhookSubscription
    succeeded = {
        f.delivery.subscription_id for f in finished if f.decision.verdict is Verdict.SUCCEEDED
    }
    failing = {f.delivery.subscription_id for f in finished} - succeeded
    if succeeded:
        await connection.execute(_STREAK_ENDED, {"ids": sorted(succeeded)})
    reported = (
        table.id,
        table.organization_id,
        table.target_url,
        table.description,
        table.owner_id,
    )
    disabled: list[tuple[Any, str]] = []
    gone = {
        f.delivery.subscription_id: f.decision.deactivate_reason
        for f in finished
        if f.decision.deactivate_reason
    }
    for subscription_id, reason in gone.items():
        deactivated = await connection.execute(
            update(table)
            .where(table.id == subscription_id, table.active.is_(True))
            .values(active=False, disabled_reason=reason)
            .returning(*reported)
        )
        if row := deactivated.first():
            disabled.append((row, reason))
        else:  # inactive already (switched off meanwhile): the reason is still worth showing
            await connection.execute(
                update(table).where(table.id == subscription_id).values(disabled_reason=reason)
            )
    if failing:
        await connection.execute(
            update(table)
            .where(table.id.in_(failing), table.failing_since.is_(None))
            .values(failing_since=now, **_UNCHANGED_VERSION)
        )
        deactivated = await connection.execute(
            update(table)
            .where(
                table.id.in_(failing),
                table.active.is_(True),
                table.failing_since <= auto_disable.cutoff(now),
            )
            .values(active=False, disabled_reason=auto_disable.reason)
            .returning(*reported)
        )
        disabled += [(row, auto_disable.reason) for row in deactivated]
    return [
        OrganizationEvent(
            row.organization_id, SUBSCRIPTION_DISABLED, _reference(row), {"reason": why}
        )
        for row, why in disabled
    ]


async def _exhausted_notices(
    connection: AsyncConnection, delivery_ids: Sequence[str]
) -> list[OrganizationEvent]:
    """A `delivery.exhausted` event for each of these deliveries, just failed for good. Not for
    a delivery of an operational event: an organisation-level target that is down would
    otherwise report its own failures to itself for ever."""
    if not delivery_ids:
        return []
    table = WebhookSubscription
    rows = await connection.execute(
        select(
            Delivery.id.label("delivery_id"),
            Delivery.attempt_count,
            Delivery.last_status_code,
            Delivery.last_error,
            Event.id.label("event_id"),
            Event.type.label("event_type"),
            table.id,
            table.organization_id,
            table.target_url,
            table.description,
            table.owner_id,
        )
        .join(Event, Event.id == Delivery.event_id)
        .join(table, table.id == Delivery.subscription_id)
        .where(Delivery.id.in_(delivery_ids))
        .order_by(Delivery.id)
    )
    return [
        OrganizationEvent(
            row.organization_id,
            DELIVERY_EXHAUSTED,
            _reference(row),
            {
                "delivery_id": row.delivery_id,
                "failed_event_id": row.event_id,
                "failed_event_type": row.event_type,
                "attempts": row.attempt_count,
                "last_status_code": row.last_status_code,
                "last_error": row.last_error,
            },
        )
        for row in rows
        if row.event_type not in ORGANIZATION_EVENT_TYPES
    ]
