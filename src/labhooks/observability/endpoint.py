"""`GET /metrics` for Prometheus. Open by default, like most exporters (it names no
organisation, user, URL or secret: counts, event types from the public catalogue, worker ids);
with LABHOOKS_METRICS_TOKEN set, only `Authorization: Bearer <that token>` reads it."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from labhooks.dependencies import State
from labhooks.observability.metrics import database_families, exposition


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
            401: {"description": "LABHOOKS_METRICS_TOKEN is set and was not sent"},
        },
    )
    async def metrics(state: State, request: Request) -> Response:
        """Prometheus metrics: queue depth, attempts by result, latency, workers
        (docs/observability.md)."""
        wanted = state.settings.metrics_token
        if wanted and not _bearer_matches(request.headers.get("authorization"), wanted):
            return Response(
                "Send LABHOOKS_METRICS_TOKEN as 'Authorization: Bearer <token>'.\n",
                status_code=401,
                media_type="text/plain",
                headers={"www-authenticate": "Bearer"},
            )
        families = await database_families(state.database)
        return Response(exposition(families), media_type=CONTENT_TYPE_LATEST)

    return router


def _bearer_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    matches = hmac.compare_digest(given.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and matches
