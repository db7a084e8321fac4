"""The log formats: one JSON object per line with the ids a line is about, readable text
otherwise, and nothing shaped like a secret in either."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from labhooks.observability import logs


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("labhooks.worker", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_json_line_carries_the_bound_context_and_the_line_own_ids() -> None:
    async def in_a_request() -> str:
        logs.bind(request_id="req-1", organization_id="org_1")
        return logs.JsonFormatter().format(
            record("attempt %d failed", 2, delivery_id="dlv_1", subscription_id="sub_1")
        )

    line = asyncio.run(in_a_request())
    assert "\n" not in line
    assert json.loads(line) | {"time": None} == {
        "time": None,
        "level": "info",
        "logger": "labhooks.worker",
        "message": "attempt 2 failed",
        "request_id": "req-1",
        "organization_id": "org_1",
        "delivery_id": "dlv_1",
        "subscription_id": "sub_1",
    }
    # outside that request, nothing of it is left
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record("later")))


@pytest.mark.parametrize(
    "leak",
    [
        "Authorization: Bearer lims-token-123",
        "token lh_3q2-abcDEF_xyz",
        "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "stored gAAAAABlm3Qxyz0123456789abcdefghijklmnop",
    ],
)
def test_what_looks_like_a_secret_is_masked_in_both_formats(leak: str) -> None:
    secret = leak.split()[-1]
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        line = formatter.format(record("could not send: %s", leak))
        assert secret not in line
        assert logs.MASK in line


def test_the_format_is_text_on_a_terminal_and_json_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert logs.resolve_format(None) == "text"
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert logs.resolve_format(None) == "json"
    assert logs.resolve_format("text") == "text"
    with pytest.raises(ValueError, match="json or text"):
        logs.resolve_format("xml")
