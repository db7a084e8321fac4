"""The storage edge: what the databases say in their own words reaches the rest of labhooks as
a domain error, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from labhooks.domain.errors import Duplicate
from labhooks.storage.database import Database
from labhooks.storage.models import Organization, User
from tests.live import fresh_database


@pytest.fixture
def url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(database_url, tmp_path) as fresh:
        yield fresh


def test_a_taken_unique_value_is_a_duplicate_naming_the_field(url: str) -> None:
    """As when two requests register the same e-mail at once and both passed the check."""

    async def twice() -> tuple[Duplicate, Duplicate]:
        database = Database(url)
        try:
            row = {"id": "usr_1", "email": "a@lab.example", "name": "A", "password_hash": "x"}
            async with database.session() as db:
                await db.execute(insert(User), [row])
                await db.commit()
            with pytest.raises(Duplicate) as through_core:
                async with database.session() as db:
                    await db.execute(insert(User), [row | {"id": "usr_2"}])
            with pytest.raises(Duplicate) as through_the_orm:
                async with database.session() as db:
                    db.add(Organization(name="Lab"))
                    db.add(Organization(name="Lab"))
                    await db.commit()
            return through_core.value, through_the_orm.value
        finally:
            await database.dispose()

    user, organization = asyncio.run(twice())
    assert user.errors[0].field == "email" and user.detail.startswith("A user with this email")
    assert organization.errors[0].field == "name"
    assert organization.detail.startswith("An organisation with this name")


def test_passwords_cost_what_settings_say_and_old_hashes_are_redone_at_login(url: str) -> None:
    from labhooks.security import Passwords
    from labhooks.services.tokens import check_password
    from labhooks.services.users import create_server_admin
    from labhooks.settings import Settings

    production = Passwords.of(Settings(secret_key="x"))  # the defaults: OWASP's argon2id
    cheap = Passwords(time_cost=1, memory_kib=8, parallelism=1)
    assert "m=19456,t=2,p=1" in production.hash("a password")

    async def log_in_later() -> tuple[str, str]:
        database = Database(url)
        try:
            async with database.session() as db:
                made = await create_server_admin(db, "root@lab.example", "a password", cheap)
                assert made is not None
                before = made.password_hash
            async with database.session() as db:
                user = await check_password(db, "root@lab.example", "a password", production)
                return before, user.password_hash
        finally:
            await database.dispose()

    before, after = asyncio.run(log_in_later())
    assert "m=8,t=1,p=1" in before and "m=19456,t=2,p=1" in after
    assert production.verify(after, "a password") and not production.verify(None, "a password")


def test_a_transaction_keeps_all_its_writes_or_none(url: str) -> None:
    """What a session rolls back is gone, whether it ended by choice or on an error after
    other writes, and what it commits stays: SQLite's driver adapter skips the round trip of
    a rollback only when nothing is left to roll back."""

    def org(name: str) -> dict[str, str]:
        return {"id": f"org_{name}", "name": name}

    async def scenario() -> list[str]:
        database = Database(url)
        try:
            async with database.session() as db:  # rolled back by choice
                await db.execute(insert(Organization), [org("dropped")])
                await db.execute(select(Organization.id))
                await db.rollback()
            with pytest.raises(Duplicate):  # one write, then one the database refuses
                async with database.session() as db:
                    await db.execute(insert(Organization), [org("lost")])
                    await db.execute(insert(Organization), [org("lost") | {"id": "org_2"}])
            async with database.session() as db:  # many rows in one statement, kept
                await db.execute(insert(Organization), [org("kept"), org("also kept")])
                await db.commit()
            async with database.session() as db:  # left without committing
                await db.execute(insert(Organization), [org("abandoned")])
            async with database.session() as db:
                return list((await db.scalars(select(Organization.name))).all())
        finally:
            await database.dispose()

    assert sorted(asyncio.run(scenario())) == ["also kept", "kept"]


def test_rows_can_be_fetched_a_few_at_a_time(url: str) -> None:
    """Result.fetchmany() without a size asks the DB-API cursor's arraysize (1 by default), which
    SQLite's driver adapter keeps itself (storage/sqlite_driver.py)."""

    async def fetch() -> tuple[list[Any], list[Any]]:
        database = Database(url)
        try:
            async with database.engine.connect() as connection:
                result = await connection.execute(text("SELECT 1 UNION ALL SELECT 2"))
                return list(result.fetchmany()), list(result.fetchall())
        finally:
            await database.dispose()

    assert asyncio.run(fetch()) == ([(1,)], [(2,)])
