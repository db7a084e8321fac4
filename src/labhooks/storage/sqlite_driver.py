"""SQLite through aiosqlite, one thread hop per statement.

aiosqlite runs each call on the connection's own thread and wakes the event loop with the
answer. SQLAlchemy's adapter makes four such calls for every SELECT (make a cursor, execute,
fetch all, close) and three for every write; each costs about 100 µs of handing over and GIL
contention, twenty times what SQLite spends on a typical labhooks statement. This adapter does
the four in one call on that thread, with the same sqlite3 connection and the same results, and
skips the call of a commit or rollback with no transaction to end. The rest (connecting, errors,
server-side cursors) is SQLAlchemy's own."""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# (description, rowcount, lastrowid, rows, in a transaction after it) of one statement
_Outcome = tuple[Any, int, int | None, list[Any], bool]


def _execute(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    cursor = connection.cursor()
    try:
        cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows, connection.in_transaction
    finally:
        cursor.close()


def _executemany(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, parameters)
        return cursor.description, cursor.rowcount, cursor.lastrowid, [], connection.in_transaction
    finally:
        cursor.close()


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A DB-API cursor holding one statement's whole outcome: no aiosqlite cursor behind it."""

    __slots__ = ("_arraysize", "_outcome")

    def __init__(self, adapt_connection: Any) -> None:  # not the base's: it makes a cursor
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._outcome: _Outcome = (None, -1, None, [], False)
        self._arraysize = 1  # DB-API's default; the base reads its aiosqlite cursor's

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    @property
    def description(self) -> Any:
        return self._outcome[0]

    @property
    def rowcount(self) -> int:
        return self._outcome[1]

    @property
    def lastrowid(self) -> Any:
        return self._outcome[2]

    def _run(self, how: Any, operation: str, parameters: Any) -> None:
        connection = self._connection
        adapted: _Connection = self._adapt_connection  # type: ignore[assignment]
        try:
            self._outcome = await_(
                connection._execute(how, connection._conn, operation, parameters)
            )
        except Exception as error:
            adapted.in_transaction = True  # not known: the next rollback is sent
            adapted._handle_exception(error)
        self._rows = collections.deque(self._outcome[3])
        adapted.in_transaction = self._outcome[4]

    def execute(self, operation: Any, parameters: Any = None) -> None:
        self._run(_execute, operation, parameters)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> None:
        self._run(_executemany, operation, seq_of_parameters)

    async def _async_soft_close(self) -> None:
        return  # nothing stays open on the thread

    def close(self) -> None:
        self._rows.clear()


class _Connection(AsyncAdapt_aiosqlite_connection):
    """Skips the thread hop of a commit or rollback with no transaction to end, the common
    case: reads run outside one (sqlite3 begins one before a write only), and the session's
    rollback is followed by the pool's own on return. `in_transaction` is what sqlite3 said
    after this connection's last statement; when it is not known, it is True."""

    __slots__ = ("in_transaction",)
    _cursor_cls = _OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.in_transaction = True

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            self.in_transaction = True  # its statements are not seen here
        return super().cursor(server_side)

    def rollback(self) -> None:
        if self.in_transaction:
            super().rollback()
            self.in_transaction = False

    def commit(self) -> None:
        if self.in_transaction:
            super().commit()
            self.in_transaction = False


class OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    """Pass as `module=` to create_async_engine for a sqlite+aiosqlite URL."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)
