"""Cursor pagination over time-ordered ids: a page is `WHERE id > cursor ORDER BY id LIMIT n`
(newest first: `WHERE id < cursor ORDER BY id DESC`). The cursor names the last id shown."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
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


def cursor_before(item_id: str) -> str:
    """The cursor of a page (in id order) that starts with `item_id`: the id one less. Ids are a
    prefix and fixed-width hex, so they compare as the numbers they spell."""
    prefix, _, number = item_id.partition("_")
    return encode_cursor(f"{prefix}_{max(int(number, 16) - 1, 0):032x}")


async def fetch_page(
    db: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[str],
    page: PageRequest,
    descending: bool = False,
) -> Page[Any]:
    if page.cursor:
        last = decode_cursor(page.cursor)
        statement = statement.where(id_column < last if descending else id_column > last)
    order = id_column.desc() if descending else id_column
    rows = list((await db.scalars(statement.order_by(order).limit(page.limit + 1))).unique())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page(rows, encode_cursor(rows[-1].id) if more and rows else None)


async def every_item(list_page: Callable[[PageRequest], Awaitable[Page[T]]]) -> list[T]:
    """Every item a listing function has, walking its pages: for a choice list, which must offer
    them all."""
    items: list[T] = []
    cursor = None
    while True:
        page = await list_page(PageRequest(limit=MAX_LIMIT, cursor=cursor))
        items += page.items
        if not (cursor := page.next_cursor):
            return items
