"""The API's routes: every resource under API_PREFIX, and the operations routes beside it."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse

from labhooks.api import API_PREFIX, problems
from labhooks.api.routers import (
    audit,
    deliveries,
    devices,
    events,
    lab_rules,
    organizations,
    subscriptions,
    target_urls,
    tokens,
    users,
)
from labhooks.dependencies import State


def api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX, responses=problems.ERROR_RESPONSES)
    # The router tries routes in this order, one by one: the hottest paths first (publishing,
    # and the caller a token stands for) save the busiest requests a hundred failed matches.
    # No two modules' paths overlap, so the order changes nothing else.
    for module in (
        events,
        users,
        organizations,
        tokens,
        target_urls,
        devices,
        lab_rules,
        subscriptions,
        deliveries,
        audit,
    ):
        api.include_router(module.router)
    return api


def operations_router() -> APIRouter:
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
