"""Custom HTTP headers that a subscription adds to every delivery.

Names are RFC 9110 tokens; values carry no control characters (CR, LF and NUL would split or end
the header; the others are refused by HTTP clients), and a subscription holds at most 32 headers
of 16 KiB in all. Names that labhooks itself sets cannot be overridden.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from labhooks.domain.errors import FieldError

MAX_HEADERS = 32
MASKED_VALUE = "••••••••"  # what is shown instead of a stored value, in the API and the logs
MAX_HEADERS_BYTES = 16 * 1024  # names and values together, UTF-8 encoded
RESERVED_HEADER_NAMES = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "user-agent",
        "connection",
        "transfer-encoding",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "a NUL byte"}


def header_name_problem(name: str) -> str | None:
    if not name:
        return "enter a header name"
    if not _TOKEN.fullmatch(name):
        return "may contain only letters, digits and !#$%&'*+-.^_`|~ (no spaces or colons)"
    if name.lower() in RESERVED_HEADER_NAMES:
        return f"{name!r} is set by labhooks itself and cannot be overridden"
    return None


def header_value_problem(value: str) -> str | None:
    if not value:
        return "enter a value"
    found = _CONTROL.search(value)
    if found:
        char = found.group()
        what = _CONTROL_NAMES.get(char, f"the control character U+{ord(char):04X}")
        return f"must not contain {what}"
    return None


def validate_headers(headers: Sequence[tuple[str, str]]) -> list[FieldError]:
    """Every rule broken by the full list of (name, value) pairs, each at `headers.<i>.…`."""
    errors: list[FieldError] = []
    if len(headers) > MAX_HEADERS:
        errors.append(FieldError("headers", f"at most {MAX_HEADERS} headers are allowed"))
    seen: set[str] = set()
    total = 0
    for index, (name, value) in enumerate(headers):
        problem = header_name_problem(name)
        if problem is None and name.lower() in seen:
            problem = f"{name!r} is given twice; header names are case-insensitive"
        if problem:
            errors.append(FieldError(f"headers.{index}.key", problem))
        seen.add(name.lower())
        problem = header_value_problem(value)
        if problem:
            errors.append(FieldError(f"headers.{index}.value", problem))
        total += len(name.encode()) + len(value.encode())
    if total > MAX_HEADERS_BYTES:
        errors.append(
            FieldError(
                "headers", f"together exceed {MAX_HEADERS_BYTES // 1024} KiB ({total} bytes)"
            )
        )
    return errors
