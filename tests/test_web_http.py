"""The web UI's HTTP-level safeguards, without a browser."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import settings_for
from tests.live import LiveServer, fresh_database

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_the_session_cookie_is_httponly_lax_and_secure_when_configured(
    server: LiveServer, tmp_path: Path, database_url: str
) -> None:
    cookie = httpx.get(f"{server.url}/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    with (
        fresh_database(database_url, tmp_path) as url,
        LiveServer(settings_for(url, tmp_path, secure_cookies=True), with_worker=False) as secure,
    ):
        cookie = httpx.get(f"{secure.url}/login").headers["set-cookie"].lower()
    assert "secure" in cookie


def test_a_form_posted_without_the_csrf_token_is_refused(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as browserless:
        browserless.get("/login")  # a session, but no token sent back
        response = browserless.post("/login", data={"email": "x@y.example", "password": "z"})
    assert response.status_code == 403
    assert "reload the page" in response.text
