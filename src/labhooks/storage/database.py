"""The engine and sessions, with what each dialect needs to behave the same."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

from labhooks.domain.errors import Duplicate
from labhooks.signals import Signal
from labhooks.storage.sqlite_driver import OneHopDbapi

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


class UnsupportedDatabase(ValueError):
    pass


def async_url(database_url: str) -> URL:
    """`sqlite:///x.db` / `postgresql://…` with the async driver labhooks uses for each."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise UnsupportedDatabase(
            f"LABHOOKS_DATABASE_URL must start with sqlite:// or postgresql://, not {backend}://"
        )
    return url.set(drivername=_ASYNC_DRIVERS[backend])


def _json(value: object) -> str:
    # Every delivery attempt writes two JSON columns; orjson does it several times faster.
    return orjson.dumps(value).decode()


def _private_file(path: str | None) -> None:
    """Creates the SQLite file readable by its owner only, before SQLite does (SQLite makes its
    WAL and shared-memory files with the database file's permissions). It holds the encrypted
    secrets, the delivery log and what targets answered: nobody else on the machine needs it."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def create_engine(database_url: str) -> AsyncEngine:
    url = async_url(database_url)
    if url.get_backend_name() == "sqlite":
        _private_file(url.database)
        engine = create_async_engine(
            url,
            module=OneHopDbapi(),
            connect_args={"timeout": 30},
            json_serializer=_json,
            json_deserializer=orjson.loads,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            url,
            pool_size=10,
            max_overflow=20,
            json_serializer=_json,
            json_deserializer=orjson.loads,
        )
        event.listen(engine.sync_engine, "checkout", _still_connected)
        event.listen(engine.sync_engine, "checkin", _note_idle_since)
    event.listen(engine.sync_engine, "handle_error", _translated)
    return engine


IDLE_PING_S = 30.0  # a pooled connection idle longer is asked whether it still works


def _still_connected(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """A pooled connection the server closed (a restart, an administrator) is replaced as it is
    checked out, so the first request after a restart works: asyncpg sees the close as it
    happens. One idle for a while is pinged too, as a firewall may have dropped it without a
    word. SQLAlchemy's pool_pre_ping would ping before every transaction, three round trips on
    asyncpg (BEGIN, a ping, ROLLBACK), more than many labhooks transactions cost in all."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")
    idle_since = record.info.get(_IDLE_SINCE)
    if idle_since is not None and time.monotonic() - idle_since > IDLE_PING_S:
        try:
            dbapi_connection.ping()
        except Exception as exc:  # whatever the driver says, the connection is not usable
            raise DisconnectionError(f"a pooled connection did not answer: {exc}") from exc


def _note_idle_since(_dbapi_connection: Any, record: Any) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


_IDLE_SINCE = "labhooks.idle_since"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while the worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# -- driver errors, translated once ---------------------------------------------------------

_NOUNS = {
    "users": "A user",
    "organizations": "An organisation",
    "target_urls": "A registered target URL",
    "channels": "A channel",
    "channel_grants": "A channel grant",
    "events": "An event",
    "api_tokens": "A token",
}
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.[\w., ]+")
_POSTGRES_KEY = re.compile(r"Key \(([^)]*)\)")
_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


def _translated(context: ExceptionContext) -> Exception | None:
    """A unique value taken already becomes the domain's Duplicate, naming the field (the last
    column of the constraint), whichever database said so. Other driver errors stay as they are."""
    if not isinstance(context.sqlalchemy_exception, IntegrityError):
        return None
    driver_error = context.original_exception
    if context.dialect.name == "postgresql":
        postgres = getattr(driver_error, "__cause__", None) or driver_error
        if getattr(postgres, "sqlstate", None) != _UNIQUE_VIOLATION:
            return None
        key = _POSTGRES_KEY.search(getattr(postgres, "detail", None) or "")
        table = getattr(postgres, "table_name", None) or ""
        return Duplicate(_NOUNS.get(table, "A row"), key.group(1).split(", ")[-1] if key else "id")
    if found := _SQLITE_UNIQUE.search(str(driver_error)):
        return Duplicate(_NOUNS.get(found.group(1), "A row"), found.group(0).rsplit(".", 1)[1])
    return None


class DatabaseUnavailable(Exception):
    """The database could not do it now (down, restarting, locked, a deadlock): the same work
    may succeed later, unlike work the database refuses for what it contains."""


# PostgreSQL SQLSTATE classes that say "not now" rather than "not this": connection exception,
# transaction rollback (serialization failure, deadlock), insufficient resources, object not in
# prerequisite state (a database not allowing connections, a lock not available), operator
# intervention (shutdown), system error.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "55", "57", "58")


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the database is unavailable for now (see DatabaseUnavailable)."""
    if isinstance(error, OperationalError | InterfaceError | OSError | TimeoutError):
        return True  # SQLite's "database is locked", lost connections, timeouts
    driver_error: object = error
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        driver_error = getattr(error.orig, "__cause__", None) or error.orig
    # asyncpg's own errors arrive unwrapped when the connection is being made
    sqlstate = str(getattr(driver_error, "sqlstate", "") or "")
    return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


# -- waking this process's workers, and handing deliveries to its own ------------------------

WAKE_ON_COMMIT = "labhooks.wake_on_commit"
HAND_OVER_ON_COMMIT = "labhooks.hand_over_on_commit"  # [(worker, [Claimed…])] of this transaction


@event.listens_for(Session, "after_commit")
def _wake_workers(session: Session) -> None:
    for worker, claimed in session.info.pop(HAND_OVER_ON_COMMIT, ()):
        worker.hand_over(claimed)
    if session.info.pop(WAKE_ON_COMMIT, False) and (enqueued := session.info.get("enqueued")):
        enqueued.set()


@event.listens_for(Session, "after_transaction_end")
def _give_back_unsent(session: Session, transaction: SessionTransaction) -> None:
    """A transaction that ends without committing leased nothing: the slots it reserved in this
    process's worker are free again."""
    if transaction.parent is None:
        for worker, claimed in session.info.pop(HAND_OVER_ON_COMMIT, ()):
            worker.give_back(len(claimed))


class Database:
    """One engine and its session factory, made once per process and passed down.

    `enqueued` is set when a transaction that enqueued deliveries commits in this process (and,
    on PostgreSQL, when another process NOTIFYs). `local_worker` is this process's worker while
    it takes deliveries handed to it directly (storage.queue.enqueue)."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_engine(database_url)
        self.enqueued = Signal()
        self.local_worker: Any = None  # a storage.queue.LocalWorker
        self.sessions = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            info={"enqueued": self.enqueued, "database": self},
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
