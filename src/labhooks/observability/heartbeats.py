"""Worker heartbeats: each worker writes its row every few seconds (what it has in flight, how
many attempts it recorded) and removes it when it stops cleanly, so `labhooks status` and
/metrics know which workers run, on any machine. A worker that died leaves its row behind,
ever older; rows unseen for STALE_AFTER are cleared by the workers that still run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from labhooks.storage.database import Database
from labhooks.storage.models import WorkerHeartbeat, utcnow

STALE_AFTER = timedelta(hours=1)
log = logging.getLogger("labhooks.worker")


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    return (str(original).splitlines() or [type(original).__name__])[0]


def new_worker_id() -> str:
    """host:pid:random: the random part tells apart two workers of one process (tests) and a
    pid the machine gave out again."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Heartbeat:
    id: str
    host: str
    started_at: datetime
    seen_at: datetime
    in_flight: int
    attempts: int

    def seen_ago_s(self, now: datetime) -> float:
        return max(0.0, (now - self.seen_at).total_seconds())


class Heartbeats:
    """One worker's heartbeat row."""

    def __init__(self, database: Database, worker_id: str | None = None) -> None:
        self.database = database
        self.worker_id = worker_id or new_worker_id()
        self.host = self.worker_id.split(":", 1)[0]
        self.started_at = utcnow()

    async def beat(self, in_flight: int, attempts: int) -> None:
        """Updates the row, or writes it the first time (or again, if it was cleared); an
        UPDATE then INSERT rather than a dialect's upsert: only this worker writes its row."""
        now = utcnow()
        values = {"seen_at": now, "in_flight": in_flight, "attempts": attempts}
        table = WorkerHeartbeat
        async with self.database.engine.begin() as connection:
            result = await connection.execute(
                update(table).where(table.id == self.worker_id).values(**values)
            )
            if not result.rowcount:
                await connection.execute(
                    insert(table).values(
                        id=self.worker_id, host=self.host, started_at=self.started_at, **values
                    )
                )
            await connection.execute(delete(table).where(table.seen_at < now - STALE_AFTER))

    async def keep_beating(
        self, stop: asyncio.Event, interval_s: float, reading: Callable[[], tuple[int, int]]
    ) -> None:
        """Beats every `interval_s` with `reading()` (in flight, attempts recorded) until
        `stop`, then removes the row. A database that cannot take a beat is logged, never
        fatal: delivering matters more than being seen."""
        while not stop.is_set():
            try:
                await self.beat(*reading())
            except Exception as exc:
                log.warning("writing the heartbeat failed (%s)", _first_line(exc), extra=self._ids)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
        try:
            await self.remove()
        except Exception as exc:  # its row then ages until `labhooks status` shows it stale
            log.warning("removing the heartbeat failed (%s)", _first_line(exc), extra=self._ids)

    @property
    def _ids(self) -> dict[str, str]:
        return {"worker_id": self.worker_id}

    async def remove(self) -> None:
        async with self.database.engine.begin() as connection:
            await connection.execute(
                delete(WorkerHeartbeat).where(WorkerHeartbeat.id == self.worker_id)
            )


async def read_heartbeats(connection: AsyncConnection) -> list[Heartbeat]:
    table = WorkerHeartbeat
    rows = await connection.execute(
        select(
            table.id, table.host, table.started_at, table.seen_at, table.in_flight, table.attempts
        ).order_by(table.seen_at.desc(), table.id)
    )
    return [Heartbeat(*row) for row in rows]
