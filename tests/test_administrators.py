"""The last-administrator rule at the service level, where a race can be staged exactly."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import event, select

from labhooks.domain.errors import Conflict
from labhooks.domain.people import Role
from labhooks.security import Passwords
from labhooks.services.tokens import actor_for
from labhooks.services.users import UserUpdate, update_user
from labhooks.settings import Settings
from labhooks.storage.database import Database
from labhooks.storage.models import User
from tests.api import Lab


def test_two_administrators_stepping_down_at_once_leave_one(lab: Lab, settings: Settings) -> None:
    """The second administrator steps down after the first checked that another administrator
    remains, and before the first wrote its change: one of them must be refused (409), and the
    organisation keeps an administrator."""
    _, second_id = lab.add_member("admin")
    passwords = Passwords.of(settings)
    outcomes: dict[str, str] = {}

    async def step_down(database: Database, user_id: str) -> None:
        async with database.session() as db:
            user = await db.get(User, user_id)
            assert user is not None
            try:
                await update_user(
                    db, actor_for(user), user_id, UserUpdate(role=Role.MEMBER), passwords
                )
                outcomes[user_id] = "stepped down"
            except Conflict:
                outcomes[user_id] = "refused"

    def competitor() -> None:
        async def other_request() -> None:
            other = Database(settings.database_url)
            try:
                await step_down(other, second_id)
            finally:
                await other.dispose()

        asyncio.run(other_request())

    async def scenario() -> list[str | None]:
        database = Database(settings.database_url)

        def before_write(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE USERS") and not outcomes:
                racer = threading.Thread(target=competitor)
                racer.start()
                racer.join(timeout=30)  # a lock held here would make it wait until we commit

        event.listen(database.engine.sync_engine, "before_cursor_execute", before_write)
        try:
            await step_down(database, lab.admin_id)
            async with database.session() as db:
                roles = await db.scalars(
                    select(User.role).where(User.id.in_([lab.admin_id, second_id]))
                )
                return list(roles)
        finally:
            await database.dispose()

    roles = asyncio.run(scenario())
    results = sorted(outcomes.values())
    assert results == ["refused", "stepped down"], outcomes
    assert sorted(r or "" for r in roles) == ["admin", "member"]
