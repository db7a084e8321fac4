"""How workers learn that deliveries are waiting: in this process, a session hook at commit
(storage.database); across processes, PostgreSQL's NOTIFY, sent in the enqueuing transaction,
and a LISTEN connection per worker that is made again when it is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from labhooks.signals import Signal
from labhooks.storage.database import WAKE_ON_COMMIT, Database

log = logging.getLogger("labhooks.queue")
NOTIFY_CHANNEL = "labhooks_deliveries"
LISTEN_RETRY_S = (0.5, 1, 2, 5, 10)  # backoff while the LISTEN connection cannot be made


async def wake(session: AsyncSession) -> None:
    """Wakes the workers when the caller's transaction commits: this process's through the
    session hook in storage.database, other processes' through PostgreSQL's NOTIFY."""
    session.info[WAKE_ON_COMMIT] = True
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})


@contextlib.asynccontextmanager
async def listening(database: Database, enqueued: Signal) -> AsyncIterator[None]:
    """On PostgreSQL, a dedicated connection LISTENs and sets `enqueued` on every NOTIFY;
    when the connection is lost (a database restart), it is made again with backoff."""
    if database.dialect != "postgresql":
        yield
        return
    listener = asyncio.create_task(_listen(database, enqueued))
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def _listen(database: Database, enqueued: Signal) -> None:
    import asyncpg

    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    failures = 0
    while True:
        connection = None
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(url)
            connection.add_termination_listener(lambda _, lost=lost: lost.set())
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_: enqueued.set())
            if failures:
                log.info("listening for new deliveries again")
            failures = 0
            enqueued.set()  # what was enqueued while nobody listened is due now
            await lost.wait()
            log.warning("the LISTEN connection was lost; reconnecting")
        except Exception as exc:  # whatever failed, polling goes on meanwhile; try again
            delay = LISTEN_RETRY_S[min(failures, len(LISTEN_RETRY_S) - 1)]
            failures += 1
            log.warning("cannot LISTEN for new deliveries (%s); again in %g s", exc, delay)
            await asyncio.sleep(delay)
        finally:
            if connection is not None and not connection.is_closed():
                try:
                    await asyncio.wait_for(connection.close(), timeout=2)
                except Exception:  # a connection that cannot say goodbye is dropped
                    connection.terminate()
