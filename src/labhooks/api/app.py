"""`create_app(settings)`: the ASGI application, API and operations routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.responses import JSONResponse

from labhooks import __version__
from labhooks.api import problems
from labhooks.api.deps import AppState, Pulse, State
from labhooks.api.limits import BodySizeLimit
from labhooks.api.routers import (
    deliveries,
    devices,
    events,
    organizations,
    subscriptions,
    target_urls,
    users,
)
from labhooks.delivery.worker import Worker
from labhooks.security import SecretBox
from labhooks.services.subscriptions import SubscriptionService
from labhooks.settings import Settings
from labhooks.storage.database import Database
from labhooks.web import setup as web

API_PREFIX = "/api/v1"


def create_app(settings: Settings, with_worker: bool = True) -> FastAPI:
    """The API; with `with_worker`, a delivery worker runs in the same process."""
    box = SecretBox(settings.resolved_secret_key())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url)
        state = AppState(
            settings=settings,
            database=database,
            box=box,
            subscriptions=SubscriptionService(box),
            attempts_written=Pulse(),
        )
        app.state.labhooks = state
        stop = asyncio.Event()
        worker = None
        if with_worker:
            running = Worker(settings, database, box, on_written=state.attempts_written.fire)
            worker = asyncio.create_task(running.run(stop))
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await worker
            await database.dispose()

    app = FastAPI(
        title="labhooks",
        version=__version__,
        description="Webhook subscriptions and delivery for laboratory devices.",
        lifespan=lifespan,
    )
    problems.install(app, html_page=web.error_page)
    api = APIRouter(prefix=API_PREFIX, responses=problems.ERROR_RESPONSES)
    for module in (organizations, users, target_urls, devices, subscriptions, deliveries, events):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(_operations())
    web.install(app, settings.resolved_secret_key(), settings.secure_cookies)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def _operations() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None)
    async def readyz(state: State) -> dict[str, str] | JSONResponse:
        """The database answers."""
        try:
            await state.database.ping()
        except Exception as exc:  # any driver error means "not ready", and says which
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return {"status": "ok"}

    return router
