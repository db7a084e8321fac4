"""Users and server administrators."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.domain.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from labhooks.domain.people import Actor, Role
from labhooks.security import Passwords
from labhooks.services import audit
from labhooks.services.inputs import Input, Name
from labhooks.services.organizations import load_organization
from labhooks.services.pages import Page, PageRequest, fetch_page
from labhooks.services.sessions import end_sessions_of
from labhooks.services.subscriptions import delete_subscriptions, owned_by
from labhooks.services.tokens import check_password
from labhooks.storage.models import ApiToken, Organization, User

MIN_PASSWORD_LENGTH = 8
DEMOTED = "made a member"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _normalise_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise ValueError("is not an e-mail address")
    return value


class UserCreate(Input):
    email: str = Field(max_length=320)
    name: Name
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1000)
    role: Role = Role.MEMBER
    organization_id: str | None = None

    _email = field_validator("email")(_normalise_email)


class UserUpdate(Input):
    name: Name | None = None
    password: str | None = Field(None, min_length=MIN_PASSWORD_LENGTH, max_length=1000)
    current_password: str | None = Field(
        None,
        max_length=1000,
        description="Needed to change one's own password (an administrator setting another "
        "user's does not need it)",
    )
    role: Role | None = None


def _visible(actor: Actor, user: User) -> bool:
    if actor.is_server_admin:
        return True
    if actor.is_org_admin:
        return user.organization_id == actor.organization_id
    return user.id == actor.user_id


async def load_user(db: AsyncSession, actor: Actor, user_id: str) -> User:
    user = await db.get(User, user_id)
    if user is None or not _visible(actor, user):
        raise NotFound("User")
    return user


async def list_users(
    db: AsyncSession, actor: Actor, page: PageRequest, organization_id: str | None = None
) -> Page[User]:
    statement = select(User)
    if actor.is_server_admin:
        if organization_id:
            statement = statement.where(User.organization_id == organization_id)
    else:
        statement = statement.where(User.organization_id == actor.require_org_admin())
    return await fetch_page(db, statement, User.id, page)


async def _ensure_email_free(db: AsyncSession, email: str) -> None:
    if await db.scalar(select(User.id).where(User.email == email)):
        raise Conflict(f"A user with e-mail {email} exists already", field="email")


async def create_user(
    db: AsyncSession, actor: Actor, data: UserCreate, passwords: Passwords
) -> User:
    if actor.is_server_admin:
        if not data.organization_id:
            raise InvalidInput.single(
                "organization_id", "name the organisation the user belongs to"
            )
        try:
            await load_organization(db, data.organization_id)
        except NotFound:
            raise InvalidInput.single("organization_id", "no such organisation") from None
        organization_id = data.organization_id
    else:
        organization_id = actor.require_org_admin()
        if data.organization_id not in (None, organization_id):
            raise PermissionDenied("You can create users only in your own organisation.")
    await _ensure_email_free(db, data.email)
    user = User(
        organization_id=organization_id,
        email=data.email,
        name=data.name.strip(),
        password_hash=await passwords.hashed(data.password),
        role=data.role.value,
    )
    db.add(user)
    await db.flush()  # its id, for the audit entry
    await audit.record(
        db,
        actor,
        "user.created",
        "user",
        user.id,
        f"Added {user.name} <{user.email}> as {user.role}",
        {**audit.diff({}, _audited(user)), "password": [None, audit.HIDDEN]},
        organization_id=organization_id,
    )
    await db.commit()
    return user


async def update_user(
    db: AsyncSession, actor: Actor, user_id: str, data: UserUpdate, passwords: Passwords
) -> User:
    user = await load_user(db, actor, user_id)
    before = _audited(user)
    may_administer = actor.is_server_admin or actor.is_org_admin
    if data.role is not None and data.role.value != user.role:
        if not may_administer or user.is_server_admin:
            raise PermissionDenied("Only an organisation administrator may change roles.")
        was_admin = user.role == Role.ADMIN
        user.role = data.role.value
        if was_admin:
            await _keep_an_administrator(db, user, DEMOTED)
    if data.name is not None:
        user.name = data.name.strip()
    if data.password is not None:
        if user.id == actor.user_id:  # a stolen token must not be enough to take the account
            await _check_current_password(db, user, data.current_password, passwords)
        # a new password ends what the old one opened: API tokens and web sessions
        user.password_hash = await passwords.hashed(data.password)
        await db.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        await end_sessions_of(db, user.id)
    changes = audit.diff(before, _audited(user))
    if data.password is not None:
        changes["password"] = [audit.HIDDEN, audit.HIDDEN]
    if changes:
        await audit.record(
            db,
            actor,
            "user.updated",
            "user",
            user.id,
            f"Changed {user.name} <{user.email}>: "
            + ", ".join(
                f"role from {changes['role'][0]} to {changes['role'][1]}"
                if name == "role"
                else name
                for name in changes
            ),
            changes,
            organization_id=user.organization_id,
        )
    await db.commit()
    return user


def _audited(user: User) -> dict[str, object]:
    """What the audit log shows of a user (the password only as changed, by the caller)."""
    return {"email": user.email, "name": user.name, "role": user.role}


async def _keep_an_administrator(db: AsyncSession, user: User, change: str) -> None:
    """After `user` was demoted or deleted (not yet committed): the organisation must keep at
    least one administrator, or nobody could register target URLs, manage devices or add users
    until a server administrator stepped in. Conflict, and the caller's change is rolled back.

    Two administrators demoting each other at the same moment cannot both pass. On PostgreSQL
    the organisation's row is locked, so the second counts after the first committed. On SQLite
    the change is written first: the write holds the database's one write lock until commit, so
    the count sees every other change (SQLite reads outside a write see only what was
    committed, and would let both pass)."""
    await db.flush()
    await db.scalar(
        select(Organization.id).where(Organization.id == user.organization_id).with_for_update()
    )
    administrators = await db.scalar(
        select(func.count())
        .select_from(User)
        .where(User.organization_id == user.organization_id, User.role == Role.ADMIN.value)
    )
    if not administrators:
        raise Conflict(
            f"{user.name} is the organisation's only administrator and cannot be {change}; "
            "make another user an administrator first.",
            field="role" if change == DEMOTED else None,
        )


async def _check_current_password(
    db: AsyncSession, user: User, current: str | None, passwords: Passwords
) -> None:
    """Through the login's own check, so guessing it here is limited as a login is."""
    if not current:
        raise InvalidInput.single("current_password", "enter your current password to change it")
    try:
        await check_password(db, user.email, current, passwords)
    except Unauthenticated:
        raise InvalidInput.single("current_password", "is not your current password") from None


async def delete_user(db: AsyncSession, actor: Actor, user_id: str) -> None:
    """Removes the user, its tokens and channel access; its subscriptions are deleted too."""
    user = await load_user(db, actor, user_id)
    if not (actor.is_server_admin or actor.is_org_admin):
        raise PermissionDenied("Only an organisation administrator may delete users.")
    if user.id == actor.user_id:
        raise Conflict("You cannot delete your own account.")
    was_admin = user.role == Role.ADMIN
    owned = await owned_by(db, user.id)
    await audit.record(
        db,
        actor,
        "user.deleted",
        "user",
        user.id,
        f"Removed {user.name} <{user.email}>"
        + (f" and their {len(owned)} subscription(s)" if owned else ""),
        audit.diff(_audited(user), {}),
        organization_id=user.organization_id,
    )
    await delete_subscriptions(db, owned)
    await db.execute(delete(User).where(User.id == user.id))
    if was_admin:
        await _keep_an_administrator(db, user, "deleted")
    await db.commit()


async def create_server_admin(
    db: AsyncSession, email: str, password: str, passwords: Passwords
) -> User | None:
    """The first server administrator, or None when one exists already."""
    if await db.scalar(select(User.id).where(User.is_server_admin.is_(True)).limit(1)):
        return None
    try:
        email = _normalise_email(email)
    except ValueError as exc:
        raise InvalidInput.single("email", f"{email!r} {exc}") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput.single(
            "password", f"must be at least {MIN_PASSWORD_LENGTH} characters long"
        )
    await _ensure_email_free(db, email)
    user = User(
        organization_id=None,
        email=email,
        name="Server administrator",
        password_hash=await passwords.hashed(password),
        role=None,
        is_server_admin=True,
    )
    db.add(user)
    await db.commit()
    return user
