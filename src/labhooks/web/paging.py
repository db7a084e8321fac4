"""Paging on the web pages. Each list reads its page from a query parameter of its own (a page
shows several lists, each where the user left it) and offers "Next page" and "First page" links
that keep every other parameter: the other lists' positions, a filter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from fastapi import Request

from labhooks.domain.errors import InvalidInput
from labhooks.services.pages import Page, PageRequest, cursor_before, decode_cursor

PAGE_SIZE = 50
T = TypeVar("T")
ListPage = Callable[[PageRequest], Awaitable[Page[T]]]


@dataclass(frozen=True)
class Links:
    next: str | None = None
    first: str | None = None


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    links: Links


def url_with(request: Request, path: str, changes: dict[str, str | None], anchor: str = "") -> str:
    """`path` with the request's query parameters, those named in `changes` set (or dropped)."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    params += [(k, v) for k, v in changes.items() if v]
    query = f"?{urlencode(params)}" if params else ""
    return f"{path}{query}{f'#{anchor}' if anchor else ''}"


def back(request: Request, path: str) -> str:
    """Where a form on a paged page returns to: the same pages (its action carries the query)."""
    return url_with(request, path, {})


async def listing(
    request: Request, path: str, param: str, list_page: ListPage[T], anchor: str = ""
) -> Listing[T]:
    """The page of a list that the request asks for, and the links to its neighbours."""
    cursor = request.query_params.get(param) or None
    if cursor:
        try:
            decode_cursor(cursor)
        except InvalidInput:
            raise InvalidInput.single(
                param, "names no page of this list; open the list again from its first page"
            ) from None
    page = await list_page(PageRequest(limit=PAGE_SIZE, cursor=cursor))
    return Listing(
        page.items,
        Links(
            next=url_with(request, path, {param: page.next_cursor}, anchor)
            if page.next_cursor
            else None,
            first=url_with(request, path, {param: None}, anchor) if cursor else None,
        ),
    )


async def showing(
    request: Request, path: str, param: str, item: Any, list_page: ListPage[Any], anchor: str = ""
) -> str:
    """Where to go after adding `item`: the page of its list that shows it. New items come last,
    so beyond the first page that is a page starting with it."""
    first = await list_page(PageRequest(limit=PAGE_SIZE))
    cursor = None if any(i.id == item.id for i in first.items) else cursor_before(item.id)
    return url_with(request, path, {param: cursor}, anchor if cursor else "")
