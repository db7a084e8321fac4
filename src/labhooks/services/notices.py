"""What the web UI tells the owner of a subscription about it, unasked: that labhooks disabled
it and why, and that deliveries of it failed after their last retry. The same facts that the
operational events (`subscription.disabled`, `delivery.exhausted`) report to an organisation's
administrators, read from what is stored, so a notice goes once its cause does (the
subscription is active again; the failures are older than the window, or resent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.outcomes import DeliveryStatus
from labhooks.domain.people import Actor
from labhooks.storage.models import Delivery, WebhookSubscription, utcnow

EXHAUSTED_WINDOW = timedelta(days=7)  # failures older than this no longer make a notice
GONE = 410  # a delivery failed by 410 Gone is told as its subscription disabled


@dataclass(frozen=True)
class Notice:
    subscription_id: str
    target_url: str
    disabled_reason: str | None  # set while labhooks keeps it disabled
    exhausted: int  # its deliveries that failed for good within EXHAUSTED_WINDOW


def first_id_at(prefix: str, moment: datetime) -> str:
    """The smallest id made at `moment` or later: ids are UUIDv7, whose first 48 bits are the
    time in milliseconds, so a range of ids is a range of creation times, on the index."""
    return f"{prefix}_{int(moment.timestamp() * 1000):012x}{'0' * 20}"


async def notices_for(
    db: AsyncSession, actor: Actor, subscription_id: str | None = None
) -> list[Notice]:
    """The notices of the subscriptions `actor` owns (an administrator's too: a notice is for
    the owner), or of the one subscription if given, in id order."""
    if actor.organization_id is None:
        return []
    table = WebhookSubscription
    owned = [
        table.owner_id == actor.user_id,
        table.organization_id == actor.organization_id,
        table.deleted_at.is_(None),
    ]
    if subscription_id is not None:
        owned.append(table.id == subscription_id)
    disabled = await db.execute(
        select(table.id, table.target_url, table.disabled_reason).where(
            *owned, table.active.is_(False), table.disabled_reason.is_not(None)
        )
    )
    failed = await db.execute(
        select(table.id, table.target_url, func.count(Delivery.id))
        .join(Delivery, Delivery.subscription_id == table.id)
        .where(
            *owned,
            Delivery.id >= first_id_at("dlv", utcnow() - EXHAUSTED_WINDOW),
            Delivery.status == DeliveryStatus.FAILED.value,
            or_(Delivery.last_status_code.is_(None), Delivery.last_status_code != GONE),
        )
        .group_by(table.id, table.target_url)
    )
    notices: dict[str, Notice] = {}
    for sid, url, reason in disabled:
        notices[sid] = Notice(sid, url, reason, 0)
    for sid, url, count in failed:
        reason = notices[sid].disabled_reason if sid in notices else None
        notices[sid] = Notice(sid, url, reason, int(count))
    return [notices[sid] for sid in sorted(notices)]
