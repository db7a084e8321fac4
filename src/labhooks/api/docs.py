"""The API's documentation pages and what the OpenAPI document says beyond the routes.

Swagger UI and ReDoc load their scripts and styles from this package (`/static/vendor/`, from
the npm packages pinned in package.json), never from a CDN: a lab network often has no internet.
The document's `webhooks` section describes the body every subscription receives, one entry per
event type of the catalogue, and the main operations carry request examples.
"""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Header
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from pydantic import BaseModel, Field, create_model
from starlette.requests import Request
from starlette.responses import HTMLResponse

from labhooks.api import API_PREFIX
from labhooks.domain.catalogue import EVENT_TYPES, ORGANIZATION_EVENT_TYPES, EventType

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"

# served by the web UI's static mount; versions as pinned in package.json
SWAGGER_UI = "/static/vendor/swagger-ui-5.35.0"
SWAGGER_JS = f"{SWAGGER_UI}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{SWAGGER_UI}/swagger-ui.css"
FAVICON = f"{SWAGGER_UI}/favicon-32x32.png"
REDOC_JS = "/static/vendor/redoc-2.5.4/redoc.standalone.js"


def install(app: FastAPI) -> None:
    """The documentation pages and the webhooks section. The app is made with docs_url and
    redoc_url None, so FastAPI's own pages (with their CDN links) are not served."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    async def swagger_ui(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=FAVICON,
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(_: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
    for event_type in EVENT_TYPES.values():
        _add_webhook(app, event_type, _device_event_body(event_type))
    for event_type in ORGANIZATION_EVENT_TYPES.values():
        _add_webhook(app, event_type, _organization_event_body(event_type))


# -- the webhooks section ---------------------------------------------------------------------


class DeviceReference(BaseModel):
    id: str
    name: str


class ChannelReference(BaseModel):
    id: str
    key: str
    name: str
    unit: str | None = None


_DEVICE = {"id": "dev_0192f3a4b5c67d8e9f0a1b2c3d4e5f60", "name": "Balance XS205, room 2.14"}
_CHANNEL = {
    "id": "chn_0192f3a4b5c67d8e9f0a1b2c3d4e5f61",
    "key": "weight",
    "name": "Weight",
    "unit": "g",
}
_EVENT_ID = "evt_0192f3a4b5c67d8e9f0a1b2c3d4e5f62"
_ORGANIZATION_ID = "org_0192f3a4b5c67d8e9f0a1b2c3d4e5f63"
_TIMESTAMP = "2026-11-29T10:15:00Z"


def _model_name(event_type: EventType, suffix: str) -> str:
    return "".join(part.title() for part in event_type.name.replace("_", ".").split(".")) + suffix


def _device_event_body(event_type: EventType) -> tuple[type[BaseModel], dict[str, Any]]:
    data = create_model(  # type: ignore[call-overload]
        _model_name(event_type, "WebhookData"),
        __base__=event_type.data_model,
        event_id=(str, Field(description="The event's id: the same in every delivery of it")),
        device=(DeviceReference, ...),
        channel=(ChannelReference, ...),
    )
    example = {
        "type": event_type.name,
        "timestamp": _TIMESTAMP,
        "data": {"event_id": _EVENT_ID, "device": _DEVICE, "channel": _CHANNEL}
        | event_type.example,
    }
    return _body(event_type, data), example


def _organization_event_body(event_type: EventType) -> tuple[type[BaseModel], dict[str, Any]]:
    data = create_model(  # type: ignore[call-overload]
        _model_name(event_type, "WebhookData"),
        __base__=event_type.data_model,
        event_id=(str, ...),
        organization_id=(str, ...),
    )
    example = {
        "type": event_type.name,
        "timestamp": _TIMESTAMP,
        "data": {"event_id": _EVENT_ID, "organization_id": _ORGANIZATION_ID} | event_type.example,
    }
    return _body(event_type, data), example


def _body(event_type: EventType, data: type[BaseModel]) -> type[BaseModel]:
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        _model_name(event_type, "Webhook"),
        type=(Literal[event_type.name], ...),  # type: ignore[arg-type]
        timestamp=(datetime, Field(description="When the event occurred (RFC 3339, UTC)")),
        data=(data, ...),
    )
    return model


_SIGNATURE = (
    "`v1,` + base64 HMAC-SHA256 of `webhook-id.webhook-timestamp.body` under the "
    "subscription's `whsec_` secret, or `v1a,` + base64 ed25519 signature; during a secret "
    "rotation, two signatures separated by a space"
)


def _add_webhook(
    app: FastAPI, event_type: EventType, body: tuple[type[BaseModel], dict[str, Any]]
) -> None:
    model, example = body

    async def receiver(**_: Any) -> None:  # never called: it only describes the request
        return None

    parameters = [
        inspect.Parameter(
            "payload",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                model, Body(openapi_examples={"example": {"summary": "A body", "value": example}})
            ],
        ),
        _header("webhook_id", "Stable across the retries of one delivery: deduplicate on it"),
        _header("webhook_timestamp", "Unix seconds when this attempt was signed"),
        _header("webhook_signature", _SIGNATURE),
    ]
    receiver.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    app.webhooks.add_api_route(
        event_type.name,
        receiver,
        methods=["POST"],
        summary=event_type.name,
        description=f"{event_type.description}\n\nSent as a signed POST to the subscription's "
        "target URL (Standard Webhooks). Any 2xx answer within the timeout is a success; "
        "anything else is retried on the subscription's schedule.",
        status_code=200,
        responses={200: {"description": "Any 2xx: delivered"}},
        operation_id=f"webhook_{event_type.name.replace('.', '_')}",
    )


def _header(name: str, description: str) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[str, Header(description=description)],
    )


# -- request examples on the main operations ----------------------------------------------------

_PUBLISH_EXAMPLES = {
    "one": {
        "summary": "One reading of a balance",
        "value": {
            "device_id": _DEVICE["id"],
            "channel_key": "weight",
            "type": "data_point.created",
            "data": {"value": 12.3456, "unit": "g"},
            "idempotency_key": "balance-2.14-000123",
        },
    },
    "batch": {
        "summary": "A batch: a run's start and end",
        "value": [
            {
                "device_id": _DEVICE["id"],
                "channel_key": "run",
                "type": "run.started",
                "data": {"run_id": "R-1001", "program": "Assay A"},
                "occurred_at": "2026-11-29T10:00:00Z",
            },
            {
                "device_id": _DEVICE["id"],
                "channel_key": "run",
                "type": "run.completed",
                "data": {"run_id": "R-1001", "program": "Assay A", "outcome": "succeeded"},
                "occurred_at": "2026-11-29T10:14:00Z",
            },
        ],
    },
}

_SUBSCRIBE_EXAMPLES = {
    "channels": {
        "summary": "A LIMS receives a balance's weights, with its API key as a header",
        "value": {
            "target_url": "https://lims.example.org/hooks/balances",
            "headers": [{"key": "X-Api-Key", "value": "lims-secret-key"}],
            "channels": [{"channel_id": _CHANNEL["id"], "events": ["data_point.created"]}],
            "description": "Balances to the LIMS",
        },
    },
    "operations": {
        "summary": "An administrator is told when subscriptions are disabled (no channel)",
        "value": {
            "target_url": "https://ops.example.org/labhooks",
            "organization_events": ["subscription.disabled", "delivery.exhausted"],
        },
    },
}

REQUEST_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    (f"{API_PREFIX}/events", "post"): _PUBLISH_EXAMPLES,
    (f"{API_PREFIX}/webhook-subscriptions", "post"): _SUBSCRIBE_EXAMPLES,
}


def with_request_examples(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the examples above on its operations' JSON request bodies."""
    for (path, method), examples in REQUEST_EXAMPLES.items():
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is not None:
            content["examples"] = examples
    return document
