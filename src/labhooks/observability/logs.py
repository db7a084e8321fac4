"""Structured logs: `--log-format json` writes one JSON object per line, `text` one readable
line; by default text on a terminal and JSON otherwise (a service manager, a container, a
file), where lines are read by programs.

Each line carries what it is about where that applies: `request_id` (every request gets one,
or keeps a sane `X-Request-ID` it came with, and answers with it), `organization_id`,
`event_id`, `delivery_id`, `subscription_id`, `worker_id`. They come from the request's log
context (`bind`) and from a log call's `extra`. No header value or secret is ever logged:
labhooks logs none, and the formatter masks anything shaped like one (an API token, a signing
secret, a bearer credential) should it arrive in an error message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORMATS = ("json", "text")
FIELDS = (
    "request_id",
    "organization_id",
    "event_id",
    "event_ids",
    "delivery_id",
    "subscription_id",
    "worker_id",
)
REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_context: ContextVar[dict[str, Any] | None] = ContextVar("labhooks_log_context", default=None)
# API tokens (lh_…), signing secrets and keys (whsec_, whsk_), bearer credentials, Fernet
# ciphertexts (gAAAA…, how header values are stored)
_SECRET_SHAPES = re.compile(
    r"\b(?:lh_|whsec_|whsk_)[A-Za-z0-9+/=_-]+|(?i:bearer)\s+[^\s,;\"']+|\bgAAAAA[A-Za-z0-9_=-]{20,}"
)
MASK = "••••••••"


def bind(**fields: Any) -> None:
    """Adds fields to every line logged from now on in this request (or task)."""
    current = _context.get()
    if current is None:
        _context.set(dict(fields))
    else:
        current.update(fields)


def mask_secrets(text: str) -> str:
    return _SECRET_SHAPES.sub(MASK, text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    found = dict(_context.get() or {})
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = value
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
            **_fields(record),
        }
        if record.exc_info:
            line["exception"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        return mask_secrets(f"{text} [{extra}]" if extra else text)


def resolve_format(wanted: str | None) -> str:
    """`json` or `text`; None: text on a terminal, json otherwise."""
    if wanted is None:
        return "text" if sys.stderr.isatty() else "json"
    if wanted not in FORMATS:
        raise ValueError(f"--log-format must be json or text, not {wanted!r}")
    return wanted


def configure(log_format: str) -> None:
    """Every logger (uvicorn's included, when it is given no config of its own) writes to
    standard error in this format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


class RequestContext:
    """Gives each request a log context with its request id, and answers with the id in
    `X-Request-ID` so a client can quote it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == REQUEST_ID_HEADER.encode()),
            "",
        )
        request_id = given if _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = _context.set({"request_id": request_id})

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _context.reset(token)
