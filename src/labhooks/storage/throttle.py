"""Failed logins counted in the database, so every process sees the same counts: one row per
key (an account, a client address) while its window lasts. Expired rows are deleted as new
failures come in, so the table holds only what is being counted now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.storage.models import LoginThrottle as Row


async def blocked_until(
    session: AsyncSession, keys: Sequence[str], now: datetime
) -> datetime | None:
    """The latest moment any of these keys is blocked until, if one is blocked now."""
    latest = await session.scalar(
        select(Row.blocked_until)
        .where(Row.key.in_(keys), Row.blocked_until > now)
        .order_by(Row.blocked_until.desc())
        .limit(1)
    )
    return latest


async def count_failure(
    session: AsyncSession, key: str, now: datetime, window: timedelta, limit: int
) -> None:
    """One more failure for `key` in its window (a new window if the last one ended); at
    `limit` failures the key is blocked until its window ends."""
    cutoff = now - window
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    in_window = Row.window_started_at > cutoff
    upsert = dialect.insert(Row).values(key=key, failures=1, window_started_at=now)
    counted = await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[Row.key],
            set_={
                "failures": case((in_window, Row.failures + 1), else_=1),
                "window_started_at": case((in_window, Row.window_started_at), else_=now),
                "blocked_until": case((in_window, Row.blocked_until), else_=None),
            },
        ).returning(Row.failures, Row.window_started_at)
    )
    failures, started = counted.one()
    if failures >= limit:
        await session.execute(
            update(Row).where(Row.key == key).values(blocked_until=started + window)
        )
    await session.execute(  # what no longer counts
        delete(Row).where(
            Row.window_started_at <= cutoff,
            or_(Row.blocked_until.is_(None), Row.blocked_until <= now),
        )
    )


async def forget(session: AsyncSession, key: str) -> None:
    await session.execute(delete(Row).where(Row.key == key))
