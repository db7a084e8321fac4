"""A real labhooks server on a loopback port, and real databases for it to use; `labhooks`
commands run as processes of their own, as an operator runs them; loopback ports, free or
taken."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import uvicorn

from labhooks.app import create_app
from labhooks.serving import uvicorn_options
from labhooks.settings import Settings
from labhooks.storage import migrate
from labhooks.storage.database import Database

POSTGRES_ADMIN_URL = os.environ.get(
    "LABHOOKS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# CI sets this so that a missing PostgreSQL fails the run instead of skipping its tests.
REQUIRE_POSTGRES = os.environ.get("LABHOOKS_REQUIRE_POSTGRES") == "1"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Polls `check` until it holds: for what another thread or process makes happen."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port that something listens on until the block ends."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def command_environment(**settings: str) -> dict[str, str]:
    """The environment a `labhooks` command gets: this one without the LABHOOKS_ variables the
    test run was started with, plus `settings`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LABHOOKS_")} | settings


@contextmanager
def labhooks_process(
    log: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`labhooks <args>` as a process of its own, its output appended to `log`, until the block
    ends; then SIGTERM if it still runs, and its exit awaited. `env` defaults to
    command_environment()."""
    command = [sys.executable, "-m", "labhooks", *args]
    environment = command_environment() if env is None else env
    with (
        log.open("ab") as out,
        subprocess.Popen(command, env=environment, stdout=out, stderr=out) as process,
    ):
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


async def _postgres_admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL.replace("+asyncpg", ""), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        asyncio.run(_postgres_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {exc}"
    return None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database for one test session, dropped afterwards."""
    name = f"labhooks_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_database(like_url: str, folder: Path) -> Iterator[str]:
    """An empty database of the same kind as `like_url`, migrated."""
    if like_url.startswith("sqlite"):
        url = sqlite_url(folder)
        migrate_database(url)
        yield url
        return
    with postgres_database() as url:
        migrate_database(url)
        yield url


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'labhooks.db'}"


def migrate_database(database_url: str) -> None:
    async def run() -> None:
        database = Database(database_url)
        try:
            await migrate.upgrade(database)
        finally:
            await database.dispose()

    asyncio.run(run())


class LiveServer:
    """uvicorn serving create_app(settings) in a thread, on 127.0.0.1."""

    def __init__(
        self, settings: Settings, with_worker: bool = True, port: int | None = None
    ) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, with_worker=with_worker),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            **uvicorn_options(settings),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the labhooks test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
