"""The retention timer that runs beside every delivery worker (SPEC §4 "Retention")."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from labhooks.settings import Settings
from labhooks.storage import retention
from labhooks.storage.database import Database
from labhooks.storage.models import utcnow

log = logging.getLogger("labhooks.retention")


async def run_timer(database: Database, stop: asyncio.Event, settings: Settings) -> None:
    """Purges what has expired at start and then every `retention_interval` seconds, until
    `stop`. Its batches are short transactions of their own, so the worker beside it never
    waits long for the database; several workers purge at once without meeting (see
    storage.retention). A failing purge (the database away) is logged and tried again at the
    next run; retention_days = 0 keeps everything."""
    if settings.retention_days == 0:
        return
    while not stop.is_set():
        try:
            before = retention.cutoff(utcnow(), settings.retention_days)
            purged = await retention.purge(
                database, before, settings.retention_batch_size, settings.retention_pause, stop
            )
            if purged.rows:
                log.info("purged what is older than %s: %s", before.isoformat(), purged)
        except Exception:
            log.exception("the retention purge failed; trying again")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.retention_interval):
                await stop.wait()
