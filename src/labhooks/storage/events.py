"""Storing published events: an insert that leaves alone an idempotency key taken already,
including by a request that committed it a moment ago (so a race is a duplicate, not an error)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.storage.models import Event

_IDEMPOTENCY = ["organization_id", "idempotency_key"]
_INSERT_NEW = {  # built once per dialect: every publish runs one
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(Event)
    .on_conflict_do_nothing(index_elements=_IDEMPOTENCY)
    .returning(Event.id)
    for dialect in (postgresql, sqlite)
}


async def insert_new(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Inserts the event rows whose idempotency key is not taken; returns the ids inserted.

    Rows go in key order, so two requests inserting the same keys lock them in the same order
    and cannot deadlock on PostgreSQL."""
    if not rows:
        return set()
    rows = sorted(rows, key=lambda row: row["idempotency_key"] or "")
    connection = await session.connection()
    statement = _INSERT_NEW[connection.dialect.name]
    return set((await connection.execute(statement, list(rows))).scalars())


async def by_key(
    session: AsyncSession, organization_id: str, keys: Iterable[str]
) -> dict[str, tuple[str, str | None]]:
    """idempotency key → (id, request fingerprint) of the organisation's event stored with it."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Event.idempotency_key, Event.id, Event.request_fingerprint).where(
            Event.organization_id == organization_id, Event.idempotency_key.in_(wanted)
        )
    )
    return {key: (event_id, fingerprint) for key, event_id, fingerprint in rows if key}
