from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from labhooks.security import Passwords
from labhooks.services.users import create_server_admin
from labhooks.settings import Settings
from labhooks.storage.database import Database
from tests import live
from tests.api import Api, Lab, new_lab
from tests.delivery_helpers import Wired
from tests.receiver import Receiver
from tests.web_helpers import DESKTOP, chromium, record_csp_violations, screenshot_folder, seed_lab

SERVER_ADMIN_EMAIL = "root@labhooks.test"
SERVER_ADMIN_PASSWORD = "server admin password"

# Test tiers (pytest -m <tier>; README "Tests"): every test gets one, from its module, else from
# whether it drives Chromium or needs a database, so a new test cannot be left without.
BY_MODULE = {
    "test_worker_processes": "processes",
    "test_database_outage": "processes",
    "test_mqtt_processes": "processes",
    "test_opcua_processes": "processes",
    "test_lab_rules_processes": "processes",
    "test_observability_processes": "processes",
    "test_cli": "processes",
    "test_bench_smoke": "processes",
    "test_api_fuzz": "fuzz",
    "test_load": "load",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        fixtures = getattr(item, "fixturenames", ())
        tier = BY_MODULE.get(module) or ("browser" if "browser" in fixtures else None)
        item.add_marker(tier or ("api" if "database_url" in fixtures else "pure"))


def skip_or_fail(reason: str) -> None:
    """Skips a test that needs what this machine lacks; in CI, fails it."""
    if live.REQUIRE_POSTGRES:
        pytest.fail(f"{reason} (LABHOOKS_REQUIRE_POSTGRES=1, set by CI, makes this a failure)")
    pytest.skip(reason)


def skip_or_fail_without_redis(reason: str) -> None:
    """Skips a test that needs Redis (the benchmark's Celery peer) where it is missing; in CI
    (LABHOOKS_REQUIRE_REDIS=1), fails it."""
    if os.environ.get("LABHOOKS_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (LABHOOKS_REQUIRE_REDIS=1, set by CI, makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Each API test runs once on an SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield live.sqlite_url(tmp_path_factory.mktemp("sqlite"))
        return
    reason = live.postgres_reachable()
    if reason:
        skip_or_fail(reason)
    with live.postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(database_url, tmp_path_factory.mktemp("keys"))


def settings_for(database_url: str, folder: Path, **overrides: object) -> Settings:
    """Fast retries and timeouts; deliveries may reach loopback (the test receivers) and nothing
    else, whatever URL a test subscribes."""
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": "test secret key",
        "secret_key_file": folder / "labhooks.secret",
        "max_body_bytes": 64 * 1024,
        "retry_schedule": "0,0.2,0.2,0.2",
        "delivery_timeout": 1.0,
        "allowed_networks": "127.0.0.0/8,::1/128",
        "deliver_to_public": False,  # tests never send anything beyond this machine
        "poll_interval": 0.2,
        # the smallest argon2 allows: the suite creates hundreds of users
        "password_time_cost": 1,
        "password_memory_kib": 8,
        # every test logs in from 127.0.0.1: the address limit gets a server of its own
        "login_failures_per_address": 1_000_000,
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server(settings: Settings) -> Iterator[live.LiveServer]:
    live.migrate_database(settings.database_url)
    with live.LiveServer(settings) as running:
        yield running


@contextmanager
def first_server_admin(server: live.LiveServer) -> Iterator[Api]:
    """The first server administrator, made by the service behind `labhooks bootstrap`."""

    async def create() -> None:
        database = Database(server.settings.database_url)
        try:
            async with database.session() as db:
                await create_server_admin(
                    db, SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD, Passwords.of(server.settings)
                )
        finally:
            await database.dispose()

    asyncio.run(create())
    anonymous = Api.connect(server.url)
    try:
        yield anonymous.as_(anonymous.login(SERVER_ADMIN_EMAIL, SERVER_ADMIN_PASSWORD))
    finally:
        anonymous.http.close()


@pytest.fixture(scope="session")
def server_admin(server: live.LiveServer) -> Iterator[Api]:
    with first_server_admin(server) as api:
        yield api


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
    # every body labhooks delivered in the whole session was strict JSON
    assert running.not_json == [], running.not_json


@pytest.fixture
def anonymous(server_admin: Api) -> Api:
    return server_admin.as_(None)


@pytest.fixture
def lab(server_admin: Api) -> Lab:
    """A fresh organisation with webhooks switched on; organisations isolate tests."""
    return new_lab(server_admin)


@pytest.fixture
def other_lab(server_admin: Api) -> Lab:
    return new_lab(server_admin)


# The browser tests: each module gets its own Chromium, and each test a fresh `context` (at
# DESKTOP, or as the module's own `context_options` fixture says: a time zone, the clipboard)
# and `page`; every click then runs under the Content-Security-Policy, and a test fails on
# anything it refused (a test that provokes a violation on purpose clears the list).


@pytest.fixture(scope="module")
def browser(server_admin: Api) -> Iterator[Browser]:
    """Chromium for this module only, started after the server (see `chromium`)."""
    yield from chromium()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_folder(tmp_path_factory)


@pytest.fixture
def context_options() -> dict[str, Any]:
    """What `browser.new_context` is given for `context`; a module overrides this fixture."""
    return {"viewport": DESKTOP}


@pytest.fixture
def context(browser: Browser, context_options: dict[str, Any]) -> Iterator[BrowserContext]:
    opened = browser.new_context(**context_options)
    yield opened
    opened.close()


@pytest.fixture
def lims(lab: Lab, receiver: Receiver) -> Wired:
    """The seed's lab: two devices, the LIMS registered (see `seed_lab`)."""
    return seed_lab(lab, receiver)


@pytest.fixture
def csp_violations(context: BrowserContext) -> list[str]:
    return record_csp_violations(context)


@pytest.fixture
def page(context: BrowserContext, csp_violations: list[str]) -> Iterator[Page]:
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    assert csp_violations == []
