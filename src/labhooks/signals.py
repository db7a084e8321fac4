"""`Signal`: one coroutine tells others in the same process that something happened.

Two are made per process: deliveries were enqueued (set when a transaction that enqueued
commits, and by PostgreSQL's NOTIFY for other processes; idle workers wait for it), and attempts
were recorded (set by the worker; `POST /events?wait=` waits for it).
"""

from __future__ import annotations

import asyncio
import contextlib


class Signal:
    """Every `set()` starts a new generation and wakes everyone waiting.

    A waiter passes the generation it last looked at, so a `set()` that happened while it was
    busy is not missed: `wait` then returns at once.
    """

    def __init__(self) -> None:
        self._generation = 0
        self._changed = asyncio.Event()

    @property
    def generation(self) -> int:
        return self._generation

    def set(self) -> None:
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seconds: float, seen: int | None = None) -> int:
        """Until a `set()` after generation `seen` (default: now), or `seconds` pass; returns
        the generation then."""
        if seen is not None and seen != self._generation:
            return self._generation
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await changed.wait()
        return self._generation
