"""RFC 9457 problem documents: every error the API answers, mapped from one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from labhooks.api import API_PREFIX
from labhooks.domain import errors as domain

PROBLEM_JSON = "application/problem+json"

_STATUS: list[tuple[type[domain.LabhooksError], int]] = [
    (domain.Unauthenticated, 401),
    (domain.PermissionDenied, 403),
    (domain.NotFound, 404),
    (domain.Conflict, 409),
    (domain.TooLarge, 413),
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
        headers = (
            {"WWW-Authenticate": "Bearer"} if isinstance(exc, domain.Unauthenticated) else None
        )
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

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            500, "Something went wrong on our side; it has been logged.", "internal_error"
        )

    app.add_exception_handler(domain.LabhooksError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": Problem,
        "content": {PROBLEM_JSON: {}},
        "description": HTTPStatus(status).phrase,
    }
    for status in (400, 401, 403, 404, 409, 413, 422)
}
