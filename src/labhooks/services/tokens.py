"""API tokens: issuing them for a password, and turning a presented token into an Actor."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import PermissionDenied, Unauthenticated
from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.security import hash_api_token, new_api_token, verify_password
from labhooks.storage.models import ApiToken, User

# Verified against when the e-mail is unknown, so a wrong address costs the same time as a
# wrong password and does not tell an attacker which accounts exist.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$PSMBgWZuaPrzQ10R2tk"
    "qzg$xvvZrSHny9zs0cP2RWoeYlsrMjtO4B7S6VbOIYCeKVM"
)


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


async def check_password(db: AsyncSession, email: str, password: str) -> User:
    user = await db.scalar(select(User).where(User.email == email.strip().lower()))
    ok = await asyncio.to_thread(
        verify_password, user.password_hash if user else _DUMMY_HASH, password
    )
    if user is None or not ok:
        raise Unauthenticated("The e-mail address or the password is wrong.")
    return user


async def issue_token(db: AsyncSession, data: TokenCreate) -> tuple[ApiToken, str]:
    """A new token for the user with these credentials; the plaintext is returned only here."""
    user = await check_password(db, data.email, data.password)
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
