"""Text that labhooks stores and sends: what every string taken from outside must be.

NUL cannot be stored in PostgreSQL's text (and SQLite would keep it, so the two databases would
disagree), and no lab system means one; a lone surrogate (JSON allows `"\\ud800"`) is not
Unicode at all, and nothing can encode it to send or store. Inside an event's `data`, which is
JSON delivered as JSON, a NUL is fine: it travels escaped (`\\u0000`). A number there must be
finite: `NaN` and `Infinity` are not JSON (RFC 8259), and strict receivers refuse the body.
"""

from __future__ import annotations

import math
from typing import Any

NUL = "must not contain NUL characters (\\u0000)"
SURROGATE = "is not valid Unicode text: it contains a lone surrogate (\\ud800-\\udfff)"
NOT_FINITE = "must be a finite number: NaN and Infinity are not JSON"
MAX_JSON_DEPTH = 32  # lab data nests a few levels; deeper is a mistake or an attack
TOO_DEEP = f"nests deeper than {MAX_JSON_DEPTH} levels"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problem(text: str) -> str | None:
    """Why `text` cannot be taken as a name, key, id or other plain text, or None."""
    if "\x00" in text:
        return NUL
    if _has_surrogate(text):
        return SURROGATE
    return None


def json_problems(value: Any, path: str, depth: int = 0) -> list[tuple[str, str]]:
    """(dotted path, why) for every part of a JSON value that cannot be stored and delivered as
    RFC 8259 JSON: non-finite numbers and lone surrogates, in keys and values alike; and
    nesting deeper than MAX_JSON_DEPTH."""
    found: list[tuple[str, str]] = []
    if depth > MAX_JSON_DEPTH:
        found.append((path, TOO_DEEP))
    elif isinstance(value, float) and not math.isfinite(value):
        found.append((path, NOT_FINITE))
    elif isinstance(value, str) and _has_surrogate(value):
        found.append((path, SURROGATE))
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            if _has_surrogate(name):
                found.append((path, f"has a key that {SURROGATE}"))
                continue
            found += json_problems(item, f"{path}.{name}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += json_problems(item, f"{path}.{index}", depth + 1)
    return found
