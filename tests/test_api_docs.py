"""The API documentation works offline: Swagger UI and ReDoc render in Chromium with every
request beyond loopback refused, under their Content-Security-Policy (the `page` fixture fails on
any violation); and the OpenAPI document describes every webhook body the catalogue can send,
with request examples on the main operations."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from labhooks.domain.catalogue import EVENT_TYPES, ORGANIZATION_EVENT_TYPES, RESERVED_DATA_KEYS
from tests.live import LiveServer


@pytest.fixture
def outside_requests(context: BrowserContext) -> list[str]:
    """Every request the pages try beyond loopback, refused as a lab network without internet
    would; the list of them is what the test checks."""
    refused: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", loopback_only)
    return refused


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_swagger_ui_renders_with_the_network_blocked_except_loopback(
    page: Page, server: LiveServer, outside_requests: list[str]
) -> None:
    page.goto(f"{server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("labhooks", timeout=30_000)
    expect(page.get_by_text("/api/v1/api-tokens", exact=True).first).to_be_visible()
    expect(page.get_by_text("data_point.created", exact=True).first).to_be_attached()
    assert outside_requests == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_redoc_renders_with_the_network_blocked_except_loopback(
    page: Page, server: LiveServer, outside_requests: list[str], csp_violations: list[str]
) -> None:
    page.goto(f"{server.url}/redoc")
    # a megabyte of script that then reads the whole document: give a loaded machine time
    expect(page.get_by_role("heading", level=1).first).to_contain_text("labhooks", timeout=30_000)
    expect(page.get_by_text("Create Api Token", exact=False).first).to_be_attached()
    assert outside_requests == []
    # ReDoc's footer always shows Redocly's logo from its CDN (no option turns it off): the
    # policy refuses it, so it is never even requested, and ReDoc hides the broken image. Any
    # other violation still fails the test (the `page` fixture).
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert any(logo in v for v in csp_violations), csp_violations
    csp_violations[:] = [v for v in csp_violations if logo not in v]


def resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def test_the_openapi_document_has_a_webhook_per_catalogue_event_type(server: LiveServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    webhooks = document["webhooks"]
    assert set(webhooks) == set(EVENT_TYPES) | set(ORGANIZATION_EVENT_TYPES)
    for name, entry in webhooks.items():
        event_type = EVENT_TYPES.get(name) or ORGANIZATION_EVENT_TYPES[name]
        content = entry["post"]["requestBody"]["content"]["application/json"]
        body = resolved(document, content["schema"])
        assert body["properties"]["type"]["const"] == name
        assert {"type", "timestamp", "data"} <= set(body["required"])
        data = resolved(document, body["properties"]["data"])
        carried = {"event_id", "device", "channel"} if name in EVENT_TYPES else {"event_id"}
        assert carried <= set(data["required"]), name
        # the type's own fields, as the catalogue's schema requires them
        assert set(event_type.schema.get("required", [])) <= set(data["required"]), name
        headers = {p["name"] for p in entry["post"]["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        # the example is a body the catalogue would accept
        [example] = content["examples"].values()
        fields = {k: v for k, v in example["value"]["data"].items() if k not in RESERVED_DATA_KEYS}
        fields.pop("organization_id", None)
        event_type.validate(fields)
        assert example["value"]["type"] == name


def test_the_main_operations_carry_request_examples(server: LiveServer) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path in ("/api/v1/events", "/api/v1/webhook-subscriptions", "/api/v1/api-tokens"):
        content = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert content["examples"], path
        for example in content["examples"].values():
            assert example["summary"] and example["value"], path
