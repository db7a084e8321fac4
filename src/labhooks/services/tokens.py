"""API tokens: issuing them for a password, and turning a presented token into an Actor."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import PermissionDenied, Unauthenticated
from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.security import Passwords, hash_api_token, new_api_token
from labhooks.storage.models import ApiToken, User


class TokenCreate(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1000)
    scope: TokenScope = TokenScope.FULL
    name: str | None = Field(None, max_length=200)


def actor_for(user: User, scope: TokenScope = TokenScope.FULL) -> Actor:
    return Actor(
        user_id=user.id,
        organization_id=user.organization_id,
        role=Role(user.role) if user.role else None,
        is_server_admin=user.is_server_admin,
        scope=scope,
    )


async def check_password(db: AsyncSession, email: str, password: str, passwords: Passwords) -> User:
    """The user with these credentials. A wrong e-mail costs the same time as a wrong password,
    so the answer does not tell which accounts exist. A hash made at another cost than the
    configured one is made again now that the password is known."""
    user = await db.scalar(select(User).where(User.email == email.strip().lower()))
    ok = await asyncio.to_thread(passwords.verify, user.password_hash if user else None, password)
    if user is None or not ok:
        raise Unauthenticated("The e-mail address or the password is wrong.")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(passwords.hash, password)
        await db.commit()
    return user


async def issue_token(
    db: AsyncSession, data: TokenCreate, passwords: Passwords
) -> tuple[ApiToken, str]:
    """A new token for the user with these credentials; the plaintext is returned only here."""
    user = await check_password(db, data.email, data.password, passwords)
    if data.scope is TokenScope.PUBLISH and not actor_for(user).is_org_admin:
        raise PermissionDenied("Only an organisation administrator may issue publishing tokens.")
    return await create_token(db, user, data.scope, data.name)


async def create_token(
    db: AsyncSession, user: User, scope: TokenScope, name: str | None = None
) -> tuple[ApiToken, str]:
    plaintext = new_api_token()
    token = ApiToken(
        user_id=user.id, token_hash=hash_api_token(plaintext), scope=scope.value, name=name
    )
    db.add(token)
    await db.commit()
    return token, plaintext


async def authenticate(db: AsyncSession, presented: str) -> Actor:
    row = (
        await db.execute(
            select(User, ApiToken.scope)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == hash_api_token(presented))
        )
    ).first()
    if row is None:
        raise Unauthenticated("The API token is not valid.")
    user, scope = row
    return actor_for(user, TokenScope(scope))
