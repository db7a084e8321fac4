"""`create_app(settings)`: the composition root. It builds the one ASGI application from the
API, the web UI and (unless told not to) a delivery worker, and owns what they share; neither
`api` nor `web` imports the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp

from labhooks import __version__
from labhooks.api import docs, problems
from labhooks.api.limits import BodySizeLimit, HeaderLimits, plain_text_request
from labhooks.api.routes import api_router, operations_router
from labhooks.delivery.worker import run_worker
from labhooks.dependencies import AppState
from labhooks.domain.network import AddressPolicy
from labhooks.observability.endpoint import metrics_router
from labhooks.observability.logs import RequestContext
from labhooks.security import Passwords, SecretBox
from labhooks.security_headers import SecurityHeaders, documentation_policies
from labhooks.services import lab_rules, retention
from labhooks.services.events import Waiters
from labhooks.services.subscriptions import SubscriptionService
from labhooks.services.tokens import LoginLimits
from labhooks.settings import Settings
from labhooks.signals import Signal
from labhooks.storage import notify
from labhooks.storage.database import Database
from labhooks.web import setup as web


class Labhooks(FastAPI):
    """FastAPI with the security headers outside everything, Starlette's own error handling
    included: added as middleware they would sit inside it, and its 500s (and the 413s and
    431s of the request limits) would go without them."""

    def __init__(self, *, hsts: bool, **options: Any) -> None:
        super().__init__(**options)
        self.hsts = hsts

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        policies = documentation_policies(docs.DOCS_URL, docs.OAUTH2_REDIRECT_URL, docs.REDOC_URL)
        return SecurityHeaders(stack, self.hsts, policies)

    def openapi(self) -> dict[str, Any]:
        return docs.with_request_examples(super().openapi())


def create_app(settings: Settings, with_worker: bool = True) -> FastAPI:
    """The API and the web UI; with `with_worker`, a delivery worker runs in the same process."""
    box = SecretBox(settings.resolved_secret_key())
    passwords = Passwords.of(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url)
        state = AppState(
            settings=settings,
            database=database,
            box=box,
            policy=AddressPolicy(settings.networks, public=settings.deliver_to_public),
            passwords=passwords,
            login_limits=LoginLimits(
                settings.login_failures_per_account, settings.login_failures_per_address
            ),
            subscriptions=SubscriptionService(box),
            recorded=Signal(),
            waiters=Waiters(settings.max_waiting_publishers),
        )
        app.state.labhooks = state
        stop = asyncio.Event()
        background = []
        if with_worker:
            background = [
                asyncio.create_task(run_worker(settings, database, box, stop, state.recorded)),
                asyncio.create_task(lab_rules.run_timer(database, stop, settings.poll_interval)),
                asyncio.create_task(retention.run_timer(database, stop, settings)),
            ]
        try:
            async with notify.listening(database, {notify.ATTEMPTS: state.recorded}):
                yield
        finally:
            stop.set()
            if background:
                await asyncio.gather(*background)
            await database.dispose()

    app = Labhooks(
        hsts=settings.secure_cookies,
        title="labhooks",
        version=__version__,
        description="Webhook subscriptions and delivery for laboratory devices.",
        lifespan=lifespan,
        dependencies=[Depends(plain_text_request)],
        docs_url=None,  # api/docs.py serves the pages, with their assets from this package
        redoc_url=None,
    )
    problems.install(app, html_page=web.error_page)
    app.include_router(api_router())
    app.include_router(operations_router())
    docs.install(app)
    app.include_router(metrics_router())
    web.install(app, settings.resolved_secret_key(), settings.secure_cookies)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)  # every log line of a request carries its id
    app.add_middleware(HeaderLimits)  # outermost: refused before anything else reads them
    return app
