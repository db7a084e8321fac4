"""Errors that the rules raise; the API maps each to one HTTP status in one place.

LabhooksError
 ├── Unauthenticated     no credentials, or credentials nobody has
 ├── PermissionDenied    a known caller whose role does not allow the action
 ├── NotFound            no such thing, or it belongs to someone the caller may not see
 ├── Conflict            the current state forbids it (a duplicate, a switched-off feature)
 │    ├── Duplicate       a unique value taken already (storage translates the driver's error)
 │    └── WebhooksDisabled
 ├── InvalidInput        one or more fields break a rule; carries a FieldError per field
 ├── TooLarge            a request body over the configured limit
 └── TooManyRequests     a limit on how often, or how many at once; says when to try again
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One broken rule, named by its dotted path in the input (`headers.1.key`)."""

    field: str
    message: str


class LabhooksError(Exception):
    code = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthenticated(LabhooksError):
    code = "unauthenticated"


class PermissionDenied(LabhooksError):
    code = "permission_denied"


class NotFound(LabhooksError):
    code = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Conflict(LabhooksError):
    code = "conflict"

    def __init__(
        self, detail: str, field: str | None = None, errors: list[FieldError] | None = None
    ) -> None:
        super().__init__(detail)
        self.errors = errors or ([FieldError(field, detail)] if field else [])


class Duplicate(Conflict):
    code = "duplicate"

    def __init__(self, what: str, field: str) -> None:
        super().__init__(f"{what} with this {field} exists already", field=field)


class WebhooksDisabled(Conflict):
    code = "webhooks_disabled"

    def __init__(self, organization_name: str) -> None:
        super().__init__(
            f"Webhooks are switched off for organisation {organization_name!r}: subscriptions "
            "cannot be created or activated and nothing is delivered. A server administrator "
            "can switch them on under Server Administration."
        )


class InvalidInput(LabhooksError):
    code = "invalid_input"

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("InvalidInput needs at least one FieldError")
        first = errors[0]
        super().__init__(f"{first.field}: {first.message}")
        self.errors = errors

    @classmethod
    def single(cls, field: str, message: str) -> InvalidInput:
        return cls([FieldError(field, message)])


class TooLarge(LabhooksError):
    code = "too_large"


class TooManyRequests(LabhooksError):
    code = "too_many_requests"

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


def field_errors_from_pydantic(raw_errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic's `loc` tuples as the dotted field names the rest of labhooks uses."""
    result = []
    for error in raw_errors:
        location = [str(part) for part in error["loc"]]
        if location and location[0] in ("body", "query", "path", "header"):
            location = location[1:]
        message = "is required" if error["type"] == "missing" else str(error["msg"])
        result.append(FieldError(".".join(location) or "body", message))
    return result
