"""RFC 9457 problem documents: every error the API answers, mapped from one place."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from labhooks.api import API_PREFIX
from labhooks.domain import errors as domain
from labhooks.storage.database import is_transient

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = "5"  # seconds a 503 asks a client to wait while the database does not answer
INTERNAL = "Something went wrong on our side; it has been logged."
log = logging.getLogger("labhooks.api")

_STATUS: list[tuple[type[domain.LabhooksError], int]] = [
    (domain.Unauthenticated, 401),
    (domain.PermissionDenied, 403),
    (domain.NotFound, 404),
    (domain.Conflict, 409),
    (domain.TooLarge, 413),
    (domain.TooManyRequests, 429),
    (domain.InvalidInput, 422),
]


class ProblemFieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemFieldError] = []


def problem_response(
    status: int,
    detail: str,
    code: str,
    errors: list[domain.FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_of(error: domain.LabhooksError) -> int:
    return next(status for kind, status in _STATUS if isinstance(error, kind))


HtmlErrorPage = Callable[[Request, str, int], Response]


def install(app: FastAPI, html_page: HtmlErrorPage | None = None) -> None:
    """Problem documents for the API; pages outside API_PREFIX get `html_page` when given."""

    def for_people(request: Request) -> bool:
        return html_page is not None and not request.url.path.startswith(API_PREFIX + "/")

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, domain.LabhooksError)
        if html_page and for_people(request):
            return html_page(request, exc.detail, status_of(exc))
        headers = None
        if isinstance(exc, domain.Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, domain.TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after_s)}
        errors = getattr(exc, "errors", None)
        return problem_response(status_of(exc), exc.detail, exc.code, errors, headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        raw = list(exc.errors())
        if html_page and for_people(request):
            first = domain.field_errors_from_pydantic(raw)[0]
            return html_page(
                request, f"This address is not valid: {first.field} {first.message}.", 400
            )
        if any(e["type"] == "json_invalid" for e in raw):
            detail = "The request body is not valid JSON."
            return problem_response(
                400, detail, "malformed_json", [domain.FieldError("body", detail)]
            )
        errors = domain.field_errors_from_pydantic(raw)
        return problem_response(
            422, f"{errors[0].field}: {errors[0].message}", "invalid_input", errors
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        phrase = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) else phrase
        if html_page and for_people(request) and exc.status_code >= 400:
            return html_page(request, f"{detail}.", exc.status_code)
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        return problem_response(exc.status_code, detail, code, headers=exc.headers)

    def answer(request: Request, status: int, detail: str, code: str, **headers: str) -> Response:
        if html_page and for_people(request):
            page = html_page(request, detail, status)
            page.headers.update(headers)
            return page
        return problem_response(status, detail, code, headers=headers)

    async def on_database_error(request: Request, exc: Exception) -> Response:
        if is_transient(exc):  # down, restarting, locked: the request may work in a moment
            log.warning("database unavailable for %s %s: %s", request.method, request.url, exc)
            detail = "The database is not answering; try again in a few seconds."
            return answer(request, 503, detail, "unavailable", **{"Retry-After": RETRY_AFTER_S})
        log.error("database error for %s %s", request.method, request.url, exc_info=exc)
        return answer(request, 500, INTERNAL, "internal_error")

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if is_transient(exc):  # a driver's own error, raised while connecting
            return await on_database_error(request, exc)
        return answer(request, 500, INTERNAL, "internal_error")

    app.add_exception_handler(domain.LabhooksError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(OSError, on_database_error)  # a refused connection, at checkout
    app.add_exception_handler(Exception, on_unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": HTTPStatus(status).phrase,
    }
    for status in (400, 401, 403, 404, 409, 413, 422, 429, 431, 503)
}
