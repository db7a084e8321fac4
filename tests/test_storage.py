"""The storage edge: what the databases say in their own words reaches the rest of labhooks as
a domain error, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert

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
