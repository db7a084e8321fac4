"""How processes learn what others did: workers that deliveries are waiting, publishers that
attempts were recorded. In one process, a session hook at commit (storage.database) and the
worker's own signal; across processes, PostgreSQL's NOTIFY, sent in the transaction that did it,
and a LISTEN connection per process that is made again when it is lost.

Of several worker processes, one at a time listens for deliveries: the one whose LISTEN
connection holds an advisory lock. Were all woken by every NOTIFY, at a steady trickle of single
events all would claim and all but one would find nothing, which costs them and the database
as much as the claim that finds the delivery. The others poll (`LABHOOKS_POLL_INTERVAL`), which
is enough: a worker that claims a full batch claims again at once, so a backlog one worker
cannot keep up with is shared within a poll. When the listening worker stops or dies, its
connection goes, the lock with it, and another worker takes its turn within a second; a worker
stopping gives it up as it stops claiming, and the server drops the connection of one gone
silent (TCP keepalives) within about 25 s. Meanwhile, and while the listening worker is busy,
the others' polls find what is waiting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from labhooks.signals import Signal
from labhooks.storage.database import WAKE_ON_COMMIT, Database

log = logging.getLogger("labhooks.queue")
DELIVERIES = "labhooks_deliveries"  # deliveries were enqueued, or may go out now
ATTEMPTS = "labhooks_attempts"  # attempts were recorded
LISTEN_RETRY_S = (0.5, 1, 2, 5, 10)  # backoff while the LISTEN connection cannot be made
NOTIFY = text("SELECT pg_notify(:channel, '')")  # built once: every publish and record runs it
LISTENER_LOCK = 0x6C6862_01  # the advisory lock key of the worker listening for deliveries
TURN_RETRY_S = 1.0  # how often a worker waiting for its turn to listen asks again
# The server drops a LISTEN connection whose client went silent (a machine gone, a cable cut)
# after about 25 s instead of the system's two hours: with it goes the turn to listen.
_KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


async def wake(session: AsyncSession) -> None:
    """Wakes the workers when the caller's transaction commits: this process's through the
    session hook in storage.database, other processes' through PostgreSQL's NOTIFY."""
    session.info[WAKE_ON_COMMIT] = True
    if session.get_bind().dialect.name == "postgresql":
        await (await session.connection()).execute(NOTIFY, {"channel": DELIVERIES})


async def announce_attempts(connection: AsyncConnection) -> None:
    """Tells other processes, at commit, that attempts were recorded (PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(NOTIFY, {"channel": ATTEMPTS})


@contextlib.asynccontextmanager
async def listening(
    database: Database, signals: dict[str, Signal], one_at_a_time: bool = False
) -> AsyncIterator[None]:
    """On PostgreSQL, a dedicated connection LISTENs on each channel and sets its signal on
    every NOTIFY; when the connection is lost (a database restart), it is made again with
    backoff, and every signal is set (what happened meanwhile was not heard). `one_at_a_time`:
    only while no other process listens so (the workers; see above)."""
    if database.dialect != "postgresql" or not signals:
        yield
        return
    listener = asyncio.create_task(_listen(database, signals, one_at_a_time))
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def _listen(database: Database, signals: dict[str, Signal], one_at_a_time: bool) -> None:
    import asyncpg

    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    failures = 0
    while True:
        connection = None
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(url, server_settings=_KEEPALIVES)
            connection.add_termination_listener(lambda _, lost=lost: lost.set())
            if one_at_a_time:
                await _wait_for_turn(connection)
            for channel, signal in signals.items():
                await connection.add_listener(channel, lambda *_, signal=signal: signal.set())
            if failures:
                log.info("listening again")
            failures = 0
            for signal in signals.values():  # what happened while nobody listened
                signal.set()
            await lost.wait()
            log.warning("the LISTEN connection was lost; reconnecting")
        except Exception as exc:  # whatever failed, polling goes on meanwhile; try again
            delay = LISTEN_RETRY_S[min(failures, len(LISTEN_RETRY_S) - 1)]
            failures += 1
            log.warning("cannot LISTEN (%s); again in %g s", exc, delay)
            await asyncio.sleep(delay)
        finally:
            if connection is not None and not connection.is_closed():
                try:
                    await asyncio.wait_for(connection.close(), timeout=2)
                except Exception:  # a connection that cannot say goodbye is dropped
                    connection.terminate()


async def _wait_for_turn(connection: Any) -> None:
    """Returns once this connection holds the listener's lock (until it closes)."""
    while True:
        if await connection.fetchval("SELECT pg_try_advisory_lock($1)", LISTENER_LOCK):
            return
        await asyncio.sleep(TURN_RETRY_S)  # another process listens; polling goes on meanwhile
