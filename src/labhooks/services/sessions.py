"""Web sessions kept on the server: the browser's signed cookie carries a random session key,
and only its SHA-256 is stored, so a copy of the database opens no session. Logging out, a new
password, or the user's deletion end sessions for good."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.storage.models import User, WebSession, utcnow

SESSION_LENGTH = timedelta(hours=12)


def _hashed(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def open_session(db: AsyncSession, user: User) -> str:
    """A new session of `user`; returns the key for the cookie."""
    now = utcnow()
    key = secrets.token_urlsafe(32)
    await db.execute(delete(WebSession).where(WebSession.expires_at <= now))  # none outlive it
    db.add(WebSession(id_hash=_hashed(key), user_id=user.id, expires_at=now + SESSION_LENGTH))
    await db.commit()
    return key


async def session_user(db: AsyncSession, key: str) -> User | None:
    """The user of a live session, or None."""
    user: User | None = await db.scalar(
        select(User)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.id_hash == _hashed(key), WebSession.expires_at > utcnow())
    )
    return user


async def close_session(db: AsyncSession, key: str) -> None:
    await db.execute(delete(WebSession).where(WebSession.id_hash == _hashed(key)))
    await db.commit()


async def end_sessions_of(db: AsyncSession, user_id: str) -> None:
    """In the caller's transaction: every session of the user ends."""
    await db.execute(delete(WebSession).where(WebSession.user_id == user_id))
