"""Cursor pagination over time-ordered ids: a page is `WHERE id > cursor ORDER BY id LIMIT n`."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from labhooks.domain.errors import InvalidInput

DEFAULT_LIMIT = 50
_ID = re.compile(r"[a-z]{3}_[0-9a-f]{32}")
MAX_LIMIT = 200


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        last_id = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        last_id = ""
    if not _ID.fullmatch(last_id):
        raise InvalidInput.single(
            "cursor", "is not a cursor this API returned; use next_cursor from a previous page"
        )
    return last_id


async def fetch_page(
    db: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[str],
    page: PageRequest,
) -> Page[Any]:
    if page.cursor:
        statement = statement.where(id_column > decode_cursor(page.cursor))
    rows = list((await db.scalars(statement.order_by(id_column).limit(page.limit + 1))).unique())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page(rows, encode_cursor(rows[-1].id) if more and rows else None)
