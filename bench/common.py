"""What the benchmarks share: a fresh database of either kind, a service's start, percentiles."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import asyncpg
import httpx

POSTGRES = os.environ.get("LABHOOKS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def fresh_database(kind: str, folder: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}", None
    name = f"labhooks_bench_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(POSTGRES)
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return POSTGRES.rsplit("/", 1)[0] + "/" + name, name


async def drop_database(name: str | None) -> None:
    if name:
        connection = await asyncpg.connect(POSTGRES)
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await connection.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def wait_until_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")
