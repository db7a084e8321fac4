"""HTTP-level behaviour: body limits, malformed JSON, problem documents, OpenAPI, health."""

from __future__ import annotations

import httpx

from tests.api import Lab, problem_fields
from tests.live import LiveServer


def test_oversized_body_is_refused_with_413_and_nothing_saved(lab: Lab, server: LiveServer) -> None:
    huge = {"name": "x" * (server.settings.max_body_bytes + 1)}
    response = lab.admin.post("/devices", huge)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert lab.admin.ok("GET", "/devices")["items"] == []


def test_oversized_chunked_body_is_refused_too(lab: Lab, server: LiveServer) -> None:
    chunk = b"x" * 16384

    def stream():  # no Content-Length: the limit applies while reading
        yield b'{"name": "'
        for _ in range(server.settings.max_body_bytes // len(chunk) + 2):
            yield chunk
        yield b'"}'

    response = lab.admin.request(
        "POST", "/devices", content=stream(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert lab.admin.ok("GET", "/devices")["items"] == []


def test_malformed_json_is_a_400_naming_the_body(lab: Lab) -> None:
    response = lab.admin.request(
        "POST", "/devices", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert problem_fields(response) == {"body": "The request body is not valid JSON."}


def test_publishing_reads_a_body_as_every_other_route_does(lab: Lab) -> None:
    """POST /events reads its body itself (api/deps.py, LEAN); bodies that do not parse get the
    answers FastAPI gives the other routes, a 4xx naming the body, never a 500."""

    def publish(body: bytes, content_type: str | None = "application/json") -> httpx.Response:
        headers = {"content-type": content_type} if content_type else {}
        return lab.admin.request("POST", "/events", content=body, headers=headers)

    assert problem_fields(publish(b'{"device_id": ')) == {
        "body": "The request body is not valid JSON."
    }
    for unreadable in (b'{"device_id": "\xff\xfe"}', b"[" * 5_000):
        answer = publish(unreadable)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    for not_json in (publish(b"{}", "text/plain"), publish(b"{}", None), publish(b"")):
        assert not_json.status_code == 422
        assert set(problem_fields(not_json)) == {"body"}
    vendor_json = publish(
        b'{"device_id": "dev_x", "type": "data_point.created"}', "application/vnd.lab+json"
    )
    assert set(problem_fields(vendor_json)) == {"device_id"}  # read: an unknown device


def test_every_route_reads_the_bearer_token_alike(lab: Lab) -> None:
    """The busiest routes read the Authorization header themselves (api/deps.py, LEAN): the same
    spellings work there as on the routes FastAPI's HTTPBearer reads it for."""
    token = lab.admin.token
    for spelling in (f"Bearer {token}", f"bearer {token}", f"Bearer  {token}"):
        headers = {"Authorization": spelling}
        for path in ("/me", "/devices"):
            assert lab.admin.as_(None).get(path, headers=headers).status_code == 200, spelling
    for refused in ("", "Bearer", f"Basic {token}", token):
        for path in ("/me", "/devices"):
            answer = lab.admin.as_(None).get(path, headers={"Authorization": refused})
            assert answer.status_code == 401, (path, refused)
            assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_missing_fields_are_named(lab: Lab) -> None:
    response = lab.admin.post("/webhook-subscriptions", {})
    assert response.status_code == 422
    assert {"target_url", "channels"} <= set(problem_fields(response))


def test_openapi_documents_every_contract_route(server: LiveServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    paths = document["paths"]
    expected = {
        "/api/v1/organizations": {"get", "post"},
        "/api/v1/organizations/{organization_id}": {"get", "patch"},
        "/api/v1/users": {"get", "post"},
        "/api/v1/users/{user_id}": {"get", "patch", "delete"},
        "/api/v1/tokens": {"post"},
        "/api/v1/me": {"get"},
        "/api/v1/target-urls": {"get", "post"},
        "/api/v1/target-urls/{target_url_id}": {"delete"},
        "/api/v1/devices": {"get", "post"},
        "/api/v1/devices/{device_id}": {"get", "patch", "delete"},
        "/api/v1/channel-grants": {"get", "post"},
        "/api/v1/channel-grants/{grant_id}": {"delete"},
        "/api/v1/channels": {"get"},
        "/api/v1/event-types": {"get"},
        "/api/v1/webhook-subscriptions": {"get", "post"},
        "/api/v1/webhook-subscriptions/{subscription_id}": {"get", "put", "patch", "delete"},
        "/api/v1/webhook-subscriptions/{subscription_id}/activate": {"post"},
        "/api/v1/webhook-subscriptions/{subscription_id}/deactivate": {"post"},
        "/api/v1/webhook-subscriptions/{subscription_id}/secret": {"get"},
        "/api/v1/webhook-subscriptions/{subscription_id}/rotate-secret": {"post"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths.get(path, {})), path
    create = paths["/api/v1/webhook-subscriptions"]["post"]
    assert "application/problem+json" in create["responses"]["422"]["content"]
    body_schema = document["components"]["schemas"]["SubscriptionCreate"]
    assert set(body_schema["required"]) == {"target_url", "channels"}
    assert {
        "target_url",
        "headers",
        "channels",
        "active",
        "description",
        "ordered",
        "rate_limit_per_s",
    } <= set(body_schema["properties"])


def test_health_and_readiness(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ok"}
