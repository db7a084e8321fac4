"""The audit log: who did what, when, to what, in the transaction of the change itself (a
change that is rolled back leaves no entry). Append-only: nothing updates or deletes an entry
but the organisation's own deletion. Secret values are never written: a change to a secret
field is recorded as changed, not with its value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import PermissionDenied
from labhooks.domain.people import Actor
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.storage.models import AuditEntry, User, WebhookSubscription

HIDDEN = "(hidden)"  # what a secret's before and after read in `changes`


@dataclass(frozen=True)
class Secret:
    """A secret's value in a snapshot taken for `diff`: compared in memory, written as HIDDEN."""

    value: str

    def __repr__(self) -> str:  # never in a log line or a traceback either
        return "Secret(...)"


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


def _shown(value: Any) -> Any:
    return HIDDEN if isinstance(value, Secret) else value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """field → [before, after] between two snapshots, for every field that differs, one missing
    on either side reading None; values wrapped in Secret are compared, then written as HIDDEN.
    `diff(state, {})` is what a deletion removed; `diff({}, state)` what a creation made."""
    names = list(before) + [name for name in after if name not in before]
    return {
        name: [_shown(before.get(name)), _shown(after.get(name))]
        for name in names
        if before.get(name) != after.get(name)
    }


def subscription_state(
    subscription: WebhookSubscription, decrypt: Callable[[str], str]
) -> dict[str, Any]:
    """What the log compares of a subscription (headers and selections loaded): header names
    are shown, each header's value only compared (`header:<name>`, a Secret)."""
    headers = sorted(subscription.headers, key=lambda h: h.position)
    return {
        "target_url": subscription.target_url,
        "active": subscription.active,
        "description": subscription.description,
        "ordered": subscription.ordered,
        "rate_limit_per_s": subscription.rate_limit_per_s,
        "retry_schedule": subscription.retry_schedule,
        "signature_scheme": subscription.signature_scheme,
        "channels": sorted(f"{s.channel_id} {s.event_type}" for s in subscription.selections),
        "organization_events": subscription.organization_events,
        "headers": [h.name for h in headers],
        **{f"header:{h.name}": Secret(decrypt(h.value_encrypted)) for h in headers},
    }


def subscription_change_action(changes: dict[str, Any]) -> str:
    """A change of nothing but `active` reads as the toggle it is, whichever route made it."""
    if set(changes) == {"active"}:
        return "subscription.activated" if changes["active"][1] else "subscription.deactivated"
    return "subscription.updated"


@dataclass(frozen=True)
class AuditFilter:
    """What a reader narrows the log to; None: anything."""

    organization_id: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    actor_user_id: str | None = None


async def list_entries(
    db: AsyncSession, actor: Actor, page: PageRequest, narrow: AuditFilter | None = None
) -> Page[AuditEntry]:
    """Newest first. Organisation administrators read their organisation's entries; server
    administrators every entry, the server's own (organisations made) among them, or one
    organisation's with `organization_id`."""
    narrow = narrow or AuditFilter()
    statement = select(AuditEntry)
    if actor.is_server_admin:
        if narrow.organization_id:
            statement = statement.where(AuditEntry.organization_id == narrow.organization_id)
    else:
        own = actor.require_org_admin()
        if narrow.organization_id not in (None, own):
            raise PermissionDenied("You can read only your own organisation's audit log.")
        statement = statement.where(AuditEntry.organization_id == own)
    for column, wanted in (
        (AuditEntry.action, narrow.action),
        (AuditEntry.target_type, narrow.target_type),
        (AuditEntry.target_id, narrow.target_id),
        (AuditEntry.actor_user_id, narrow.actor_user_id),
    ):
        if wanted:
            statement = statement.where(column == wanted)
    return await fetch_page(db, statement, AuditEntry.id, page, descending=True)


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
