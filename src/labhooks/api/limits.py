"""Limits every request keeps, checked before anything is parsed: the body's size, the request
headers' size, and plain text in the path and the query."""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labhooks.api.problems import problem_response
from labhooks.domain.errors import InvalidInput, TooLarge
from labhooks.domain.text import text_problem

MAX_HEADER_BYTES = 16 * 1024  # one header, name and value
MAX_HEADERS_BYTES = 64 * 1024  # all of them
MAX_HEADERS = 100


class HeaderLimits:
    """Refuses requests whose headers pass the limits above with 431, as RFC 6585 says, before
    the application spends anything on them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            sizes = [len(name) + len(value) for name, value in headers]
            problem = None
            if len(headers) > MAX_HEADERS:
                problem = f"More than {MAX_HEADERS} request headers."
            elif sizes and max(sizes) > MAX_HEADER_BYTES:
                problem = f"A request header is larger than {MAX_HEADER_BYTES} bytes."
            elif sum(sizes) > MAX_HEADERS_BYTES:
                problem = f"The request headers are larger than {MAX_HEADERS_BYTES} bytes in all."
            if problem:
                response = problem_response(431, problem, "request_headers_too_large")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def plain_text_request(request: Request) -> None:
    """Path and query parameters are plain text (domain.text), or the parameter is named."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if isinstance(value, str) and (problem := text_problem(value)):
            raise InvalidInput.single(name, problem)


class BodySizeLimit:
    """Refuses bodies over `max_bytes` with 413: at once when Content-Length says so, else as
    soon as the bytes read pass the limit. The body is read here and handed on whole, because
    FastAPI turns any error raised while it reads a body into a generic 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is larger than the limit of {self.max_bytes} bytes."
        await problem_response(413, message, TooLarge.code)(scope, receive, send)
