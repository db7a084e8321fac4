"""A small client for the labhooks API, and factories that build organisations through it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx

_counter = itertools.count()
PASSWORD = "correct horse battery"


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


class Api:
    """httpx against /api/v1 of a live server, as whoever's token it holds.

    Every Api made with `as_` shares one connection pool, closed by whoever made the first.
    """

    def __init__(self, http: httpx.Client, token: str | None = None) -> None:
        self.http = http
        self.token = token
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    @classmethod
    def connect(cls, server_url: str) -> Api:
        return cls(httpx.Client(base_url=f"{server_url}/api/v1", timeout=30))

    def as_(self, token: str | None) -> Api:
        return Api(self.http, token)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, json=json, **kwargs)

    def put(self, path: str, json: Any = None) -> httpx.Response:
        return self.request("PUT", path, json=json)

    def patch(self, path: str, json: Any = None) -> httpx.Response:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> httpx.Response:
        return self.request("DELETE", path)

    def ok(self, method: str, path: str, json: Any = None, expect: int = 200) -> Any:
        response = self.request(method, path, json=json)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def login(self, email: str, password: str = PASSWORD) -> str:
        return str(
            self.as_(None).ok("POST", "/tokens", {"email": email, "password": password}, 201)[
                "token"
            ]
        )


def problem_fields(response: httpx.Response) -> dict[str, str]:
    """The field errors of a problem document, by field."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return {e["field"]: e["message"] for e in response.json().get("errors", [])}


@dataclass
class Lab:
    """An organisation built through the API: its admin, members, a device and a target URL."""

    server_admin: Api
    id: str
    name: str
    admin: Api
    admin_id: str
    members: dict[str, tuple[Api, str]] = field(default_factory=dict)

    def add_member(self, role: str = "member") -> tuple[Api, str]:
        email = f"{unique('user')}@{self.name}.example".lower()
        user = self.admin.ok(
            "POST",
            "/users",
            {"email": email, "name": email, "password": PASSWORD, "role": role},
            201,
        )
        api = self.admin.as_(self.admin.login(email))
        return api, user["id"]

    def add_device(
        self, name: str | None = None, channels: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        channels = channels or [
            {
                "key": "weight",
                "name": "Weight",
                "unit": "g",
                "trigger_events": ["data_point.created", "command.completed"],
            },
            {
                "key": "status",
                "name": "Status",
                "unit": None,
                "trigger_events": ["device.status_changed"],
            },
        ]
        body = {"name": name or unique("Balance"), "model": "XS205", "channels": channels}
        return dict(self.admin.ok("POST", "/devices", body, 201))

    def register(self, url: str) -> dict[str, Any]:
        return dict(self.admin.ok("POST", "/target-urls", {"url": url}, 201))

    def gateway_token(self) -> str:
        """A publish-only token of the lab's administrator, as a device gateway holds."""
        login = {"email": f"admin@{self.name}.example", "password": PASSWORD, "scope": "publish"}
        return str(self.admin.as_(None).ok("POST", "/tokens", login, 201)["token"])

    def grant(self, user_id: str, channel_id: str) -> dict[str, Any]:
        body = {"user_id": user_id, "channel_id": channel_id}
        return dict(self.admin.ok("POST", "/channel-grants", body, 201))


def new_lab(server_admin: Api, webhooks_enabled: bool = True) -> Lab:
    name = unique("lab")
    organization = server_admin.ok(
        "POST", "/organizations", {"name": name, "webhooks_enabled": webhooks_enabled}, 201
    )
    email = f"admin@{name}.example"
    admin = server_admin.ok(
        "POST",
        "/users",
        {
            "email": email,
            "name": "Admin",
            "password": PASSWORD,
            "role": "admin",
            "organization_id": organization["id"],
        },
        201,
    )
    return Lab(
        server_admin=server_admin,
        id=organization["id"],
        name=name,
        admin=server_admin.as_(server_admin.login(email)),
        admin_id=admin["id"],
    )


def subscription_body(channel_id: str, url: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target_url": url,
        "headers": [{"key": "X-Api-Key", "value": "k-123"}],
        "channels": [{"channel_id": channel_id, "events": ["data_point.created"]}],
    }
    body.update(extra)
    return body
