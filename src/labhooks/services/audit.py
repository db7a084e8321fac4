"""The audit log: who did what, when, to what, in the transaction of the change itself (a
change that is rolled back leaves no entry). Append-only: nothing updates or deletes an entry
but the organisation's own deletion. Secret values are never written: a change to a secret
field is recorded as changed, not with its value."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.people import Actor
from labhooks.storage.models import AuditEntry, User

HIDDEN = "(hidden)"  # what a secret's before and after read in `changes`


async def record(
    db: AsyncSession,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | None,
    summary: str,
    changes: dict[str, Any] | None = None,
    organization_id: str | None = None,
) -> AuditEntry:
    """Adds an entry for what `actor` did (flushed with the caller's change, committed with it).

    `action` is "<thing>.<verb>" ("subscription.created", "token.revoked"); `summary` one line a
    person reads; `changes` field → [before, after] with secrets as HIDDEN. The organisation is
    the actor's unless given (a server administrator acting on one)."""
    user = await db.get(User, actor.user_id)
    who = f"{user.name} <{user.email}>" if user is not None else actor.user_id
    entry = AuditEntry(
        organization_id=organization_id or actor.organization_id,
        actor_user_id=actor.user_id if user is not None else None,
        actor=who,
        token_id=actor.token_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        summary=summary,
        changes=changes,
    )
    db.add(entry)
    return entry


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """field → [before, after] for the fields whose value differs."""
    return {
        name: [before.get(name), value]
        for name, value in after.items()
        if before.get(name) != value
    }


async def latest(
    db: AsyncSession, organization_id: str | None, limit: int = 50
) -> list[AuditEntry]:
    """The newest entries of an organisation (None: the server's own), newest first."""
    rows = await db.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.organization_id.is_(None)
            if organization_id is None
            else AuditEntry.organization_id == organization_id
        )
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    return list(rows)
