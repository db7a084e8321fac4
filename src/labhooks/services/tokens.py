"""API tokens: issuing them for a password, and turning a presented token into an Actor."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import PermissionDenied, TooManyRequests, Unauthenticated
from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.domain.text import text_problem
from labhooks.security import Passwords, hash_api_token, new_api_token
from labhooks.services.inputs import Input
from labhooks.storage import throttle
from labhooks.storage.models import ApiToken, User, utcnow

WRONG_CREDENTIALS = "The e-mail address or the password is wrong."
MAX_EMAIL_LENGTH = 320


class TokenCreate(Input):
    email: str = Field(max_length=MAX_EMAIL_LENGTH)
    password: str = Field(max_length=1000)
    scope: TokenScope = TokenScope.FULL
    name: str | None = Field(None, max_length=200)


def actor_for(
    user: User, scope: TokenScope = TokenScope.FULL, token_id: str | None = None
) -> Actor:
    return Actor(
        user_id=user.id,
        organization_id=user.organization_id,
        role=Role(user.role) if user.role else None,
        is_server_admin=user.is_server_admin,
        scope=scope,
        token_id=token_id,
    )


@dataclass(frozen=True)
class LoginLimits:
    """Failed logins allowed in a window before the account, or the client address, waits for
    the window's end: few per account (a guessed password), more per address (a lab behind one
    NAT shares one)."""

    per_account: int = 5
    per_address: int = 30
    window: timedelta = timedelta(minutes=15)


async def check_password(
    db: AsyncSession,
    email: str,
    password: str,
    passwords: Passwords,
    address: str | None = None,
    limits: LoginLimits = LoginLimits(),
) -> User:
    """The user with these credentials, for the API and the login form alike.

    Attempts are counted per account and per client `address`, in the database so every
    process counts the same, and before the password is judged, so attempts made at once count
    each other; past the limit an attempt is not tried at all, the right password included
    (TooManyRequests), and a right password takes its attempt back. A wrong e-mail costs the
    same time as a wrong password. No database connection is held while argon2 works. A hash
    made at another cost is made again now that the password is known."""
    email = email.strip().lower()
    if text_problem(email) or len(email) > MAX_EMAIL_LENGTH:
        raise Unauthenticated(WRONG_CREDENTIALS)
    account = f"account:{email}"
    address_key = f"address:{address}" if address else None
    counted = [(account, limits.per_account)]
    if address_key:
        counted.append((address_key, limits.per_address))
    now = utcnow()
    waits = [await throttle.count_attempt(db, k, now, limits.window, n) for k, n in counted]
    await db.commit()
    if blocked := [until for until in waits if until]:
        wait = (max(blocked) - now).total_seconds()
        raise TooManyRequests(
            "Too many failed attempts for this account or address. "
            f"Try again in {math.ceil(wait / 60)} minutes.",
            wait,
        )
    user = await db.scalar(select(User).where(User.email == email))
    await db.commit()  # hands the connection back for the time argon2 takes
    if not await passwords.verified(user.password_hash if user else None, password) or not user:
        raise Unauthenticated(WRONG_CREDENTIALS)
    await throttle.succeeded(db, account, address_key)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hashed(password)
    await db.commit()
    return user


async def issue_token(
    db: AsyncSession,
    data: TokenCreate,
    passwords: Passwords,
    address: str | None = None,
    limits: LoginLimits = LoginLimits(),
) -> tuple[ApiToken, str]:
    """A new token for the user with these credentials; the plaintext is returned only here."""
    user = await check_password(db, data.email, data.password, passwords, address, limits)
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
            select(User, ApiToken.scope, ApiToken.id)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == hash_api_token(presented))
        )
    ).first()
    if row is None:
        raise Unauthenticated("The API token is not valid.")
    user, scope, token_id = row
    return actor_for(user, TokenScope(scope), token_id)
