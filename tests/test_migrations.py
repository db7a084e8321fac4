"""Migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from labhooks.storage import migrate
from labhooks.storage.database import Database
from labhooks.storage.models import Base


def test_upgrade_builds_the_models_schema_and_is_repeatable(database_url: str) -> None:
    async def check() -> list[object]:
        database = Database(database_url)
        try:
            await migrate.upgrade(database)
            await migrate.upgrade(database)
            assert await migrate.current_revision(database) == migrate.head_revision()

            def diff(connection: Connection) -> list[object]:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                return list(compare_metadata(context, Base.metadata))

            async with database.engine.connect() as connection:
                return await connection.run_sync(diff)
        finally:
            await database.dispose()

    assert asyncio.run(check()) == []
