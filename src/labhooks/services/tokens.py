"""API tokens: issuing them for a password, as a resource (gateway tokens and scripts' tokens,
made by a logged-in caller, listed, revoked), and turning a presented token into an Actor.

A token is shown once, when it is made; only its SHA-256 is stored. Revoking deletes the row, so
the next request with it finds nothing (401); an expired token answers 401 saying so."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.catalogue import as_utc
from labhooks.domain.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooManyRequests,
    Unauthenticated,
)
from labhooks.domain.people import Actor, Role, TokenScope
from labhooks.domain.text import text_problem
from labhooks.security import Passwords, hash_api_token, new_api_token
from labhooks.services import audit
from labhooks.services.inputs import Input, Name
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.storage import throttle
from labhooks.storage.models import ApiToken, Device, User, utcnow

WRONG_CREDENTIALS = "The e-mail address or the password is wrong."
MAX_EMAIL_LENGTH = 320


class TokenCreate(Input):
    email: str = Field(max_length=MAX_EMAIL_LENGTH)
    password: str = Field(max_length=1000)
    scope: TokenScope = TokenScope.FULL
    name: str | None = Field(None, max_length=200)


def actor_for(
    user: User,
    scope: TokenScope = TokenScope.FULL,
    token_id: str | None = None,
    device_id: str | None = None,
) -> Actor:
    return Actor(
        user_id=user.id,
        organization_id=user.organization_id,
        role=Role(user.role) if user.role else None,
        is_server_admin=user.is_server_admin,
        scope=scope,
        token_id=token_id,
        device_id=device_id,
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
    if data.scope is TokenScope.PUBLISH:  # a gateway credential: audited as /api-tokens are
        token, plaintext = await create_token(db, user, data.scope, data.name, commit=False)
        await _record_issued(db, actor_for(user), token)
        await db.commit()
        return token, plaintext
    return await create_token(db, user, data.scope, data.name)


async def create_token(
    db: AsyncSession,
    user: User,
    scope: TokenScope,
    name: str | None = None,
    expires_at: datetime | None = None,
    device_id: str | None = None,
    commit: bool = True,
) -> tuple[ApiToken, str]:
    """A new token of `user`; the plaintext is returned only here, never stored."""
    plaintext = new_api_token()
    token = ApiToken(
        user_id=user.id,
        token_hash=hash_api_token(plaintext),
        scope=scope.value,
        name=name,
        expires_at=expires_at,
        device_id=device_id,
    )
    db.add(token)
    if commit:
        await db.commit()
    else:
        await db.flush()
    return token, plaintext


_TOKEN_HOLDER = (
    select(
        ApiToken.id,
        ApiToken.scope,
        ApiToken.expires_at,
        ApiToken.device_id,
        User.id.label("user_id"),
        User.organization_id,
        User.role,
        User.is_server_admin,
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("hash"))
)


async def authenticate(db: AsyncSession, presented: str) -> Actor:
    """The caller a presented token stands for, read fresh on every request, so a revoked
    token, an expired one and a changed role take effect at once. A plain row from a statement
    built once, no ORM objects: every API request pays for it."""
    connection = await db.connection()
    row = (await connection.execute(_TOKEN_HOLDER, {"hash": hash_api_token(presented)})).first()
    if row is None:
        raise Unauthenticated("The API token is not valid (unknown or revoked).")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise Unauthenticated(
            f"The API token expired at {row.expires_at:%Y-%m-%dT%H:%M:%SZ}; ask for a new one."
        )
    return Actor(
        user_id=row.user_id,
        organization_id=row.organization_id,
        role=Role(row.role) if row.role else None,
        is_server_admin=row.is_server_admin,
        scope=TokenScope(row.scope),
        token_id=row.id,
        device_id=row.device_id,
    )


# --- API tokens as a resource: /api/v1/api-tokens and the web UI's Tokens page ---------------

MAX_TOKEN_DAYS = 3650  # the furthest expiry accepted: ten years


class ApiTokenCreate(Input):
    name: Name = Field(description="What the token is for, e.g. the gateway's name")
    scope: TokenScope = Field(
        description="`publish`: may only publish events (a device gateway; organisation "
        "administrators issue these); `full`: acts as its user (a script)"
    )
    expires_at: datetime | None = Field(
        None, description="When it stops working; a time without an offset is UTC"
    )
    expires_in_days: int | None = Field(
        None, ge=1, le=MAX_TOKEN_DAYS, description="Instead of expires_at: days from now"
    )
    device_id: str | None = Field(
        None,
        max_length=40,
        description="Publish tokens only: the one device whose events it may publish",
    )
    device_ids: list[str] | None = Field(
        None,
        max_length=1,
        description="The contract's spelling of device_id (SPEC §7): at most one device per "
        "token; a gateway of several devices gets a token per device, or one for all",
    )

    def held_to(self) -> str | None:
        """The one device named by `device_id` or `device_ids`; InvalidInput when they differ."""
        listed = self.device_ids[0] if self.device_ids else None
        if self.device_id and listed and listed != self.device_id:
            raise InvalidInput.single("device_ids", "names another device than device_id")
        return self.device_id or listed


@dataclass(frozen=True)
class TokenView:
    """A token as lists show it: never its value or hash."""

    id: str
    name: str | None
    scope: str
    created_at: datetime
    expires_at: datetime | None
    device_id: str | None
    device_name: str | None
    owner_id: str
    owner_email: str

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()


def _expiry(data: ApiTokenCreate, now: datetime) -> datetime | None:
    if data.expires_at is not None and data.expires_in_days is not None:
        raise InvalidInput.single("expires_in_days", "give expires_at or expires_in_days, not both")
    if data.expires_in_days is not None:
        return now + timedelta(days=data.expires_in_days)
    if data.expires_at is None:
        return None
    try:
        moment = as_utc(data.expires_at)
    except ValueError as exc:
        raise InvalidInput.single("expires_at", str(exc)) from None
    if moment <= now:
        raise InvalidInput.single("expires_at", "must be in the future")
    if moment > now + timedelta(days=MAX_TOKEN_DAYS):
        raise InvalidInput.single("expires_at", f"must be within {MAX_TOKEN_DAYS} days from now")
    return moment


async def create_api_token(
    db: AsyncSession, actor: Actor, data: ApiTokenCreate
) -> tuple[TokenView, str]:
    """A token for the caller. Publish tokens are for organisation administrators (a gateway
    publishes as its issuer, for as long as the issuer is one); anyone may make a full token,
    which can do no more than the caller can. Returns the plaintext: shown once, never again."""
    device_id = data.held_to()
    field = "device_id" if data.device_id else "device_ids"
    if data.scope is TokenScope.PUBLISH:
        actor.require_org_admin()
    elif device_id is not None:
        raise InvalidInput.single(field, "only a publish token can be held to a device")
    expires_at = _expiry(data, utcnow())
    device: Device | None = None
    if device_id is not None:
        device = await db.get(Device, device_id)
        if device is None or device.organization_id != actor.organization_id:
            raise InvalidInput.single(field, "no device with this id in your organisation")
    user = await db.get(User, actor.user_id)
    if user is None:
        raise Unauthenticated("The account is gone.")
    token, plaintext = await create_token(
        db, user, data.scope, data.name, expires_at, device_id, commit=False
    )
    await _record_issued(db, actor, token)
    view = _view(token, user, device)
    await db.commit()
    return view, plaintext


async def _record_issued(db: AsyncSession, actor: Actor, token: ApiToken) -> None:
    await audit.record(
        db,
        actor,
        "token.issued",
        "api_token",
        token.id,
        f"Issued {token.scope} token {token.name or token.id!r}",
        {name: [None, value] for name, value in _audited(token).items() if value is not None},
    )


def _audited(token: ApiToken) -> dict[str, Any]:
    """What the audit log says of a token: never its value or hash."""
    return {
        "name": token.name,
        "scope": token.scope,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "device_id": token.device_id,
    }


def _view(token: ApiToken, owner: User, device: Device | None) -> TokenView:
    return TokenView(
        id=token.id,
        name=token.name,
        scope=token.scope,
        created_at=token.created_at,
        expires_at=token.expires_at,
        device_id=token.device_id,
        device_name=device.name if device else None,
        owner_id=owner.id,
        owner_email=owner.email,
    )


def _visible(actor: Actor) -> Any:
    """The caller's own tokens, and for an organisation administrator also every publish
    token of the organisation (another administrator's gateways among them)."""
    own = ApiToken.user_id == actor.user_id
    if not actor.is_org_admin:
        return own
    organisation_gateways = (ApiToken.scope == TokenScope.PUBLISH.value) & (
        User.organization_id == actor.organization_id
    )
    return or_(own, organisation_gateways)


async def list_api_tokens(db: AsyncSession, actor: Actor, page: PageRequest) -> Page[TokenView]:
    statement = select(ApiToken).join(User, User.id == ApiToken.user_id).where(_visible(actor))
    found = await fetch_page(db, statement, ApiToken.id, page, descending=True)
    tokens: list[ApiToken] = found.items
    owners = {
        u.id: u
        for u in await db.scalars(select(User).where(User.id.in_({t.user_id for t in tokens})))
    }
    device_ids = {t.device_id for t in tokens if t.device_id}
    devices = {d.id: d for d in await db.scalars(select(Device).where(Device.id.in_(device_ids)))}
    views = [
        _view(t, owners[t.user_id], devices.get(t.device_id) if t.device_id else None)
        for t in tokens
    ]
    return Page(views, found.next_cursor)


async def revoke_api_token(db: AsyncSession, actor: Actor, token_id: str) -> None:
    """Deletes the token: from the next request on it answers 401. Its events keep their data
    (their `published_by_token_id` is cleared by the database)."""
    row = (
        await db.execute(
            select(ApiToken)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.id == token_id, _visible(actor))
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("API token")
    await audit.record(
        db,
        actor,
        "token.revoked",
        "api_token",
        row.id,
        f"Revoked {row.scope} token {row.name or row.id!r}",
        {name: [value, None] for name, value in _audited(row).items() if value is not None},
    )
    await db.delete(row)
    await db.commit()
