"""Login attempts counted in the database, so every process sees the same counts: one row per
key (an account, a client address) while its window lasts. Expired rows are deleted as new
attempts come in, so the table holds only what is being counted now."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.storage.models import LoginThrottle as Row


async def count_attempt(
    session: AsyncSession, key: str, now: datetime, window: timedelta, limit: int
) -> datetime | None:
    """Counts one more attempt for `key` in its window (a new window if the last one ended)
    before the attempt is judged, so attempts made at once count each other. Past `limit`,
    returns until when the key waits: this attempt must not be tried."""
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
            },
        ).returning(Row.failures, Row.window_started_at)
    )
    attempts, started = counted.one()
    await session.execute(delete(Row).where(Row.window_started_at <= cutoff))  # no longer counts
    return started + window if attempts > limit else None


async def succeeded(session: AsyncSession, account: str, address: str | None) -> None:
    """A right password: the account's count starts again; the address's attempt was not a
    failure after all."""
    await session.execute(delete(Row).where(Row.key == account))
    if address:
        await session.execute(
            update(Row)
            .where(Row.key == address, Row.failures > 0)
            .values(failures=Row.failures - 1)
        )
