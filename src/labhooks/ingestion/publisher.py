"""Publishing to labhooks as a device gateway does: through the public API, with a publish-only
token, in batches, and with patience.

labhooks being unreachable or busy (no connection, 5xx, 429, 503) means waiting and trying
again, for as long as it takes: a bridge never drops what it was handed because labhooks was
restarting. An event labhooks refuses for what it is (an unknown device, data that does not
fit, a reused idempotency key) is handed back, with the problem document, for the bridge to
dead-letter; the rest of its batch is published, and a refusal that names no event (a batch
too large, say) is narrowed down by halving the batch until the one event it is about stands
alone. Only an answer that says the bridge itself is wrong (a token labhooks does not accept, an
address that is not labhooks' API) stops it: waiting would not help.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("labhooks.ingestion")
BACKOFF_S = (0.5, 1, 2, 5, 10, 30)  # waits while labhooks cannot take events, then the last
_INDEXED_FIELD = re.compile(r"(\d+)(?:\.(.*))?")  # `3.data.value`, or `3`: the whole event
# Refusals of what was sent, not of the sender: an event that does not fit (422), a reused
# idempotency key (409), a body over labhooks' limit (413).
BATCH_REFUSALS = (409, 413, 422)


class PublishingRefused(Exception):
    """labhooks refuses the bridge itself (a 4xx about no event): a configuration error."""


class TokenRefused(PublishingRefused):
    """labhooks does not accept the bridge's token (401/403)."""


class Stopped(Exception):
    """The bridge was told to stop while it waited for labhooks; what it held is unpublished."""


async def pause(seconds: float, stop: asyncio.Event | None) -> None:
    """Waits `seconds`, or less when `stop` is set, then raises Stopped."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    if stop.is_set():
        raise Stopped


@dataclass(frozen=True)
class Refused:
    """An event labhooks refused for what it is (its position in what was given), and
    labhooks' problem document about it."""

    index: int
    problem: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    event_ids: list[str | None]  # per event given: its id, or None if refused
    refused: list[Refused]


class Publisher:
    """`async with Publisher(api_url, token) as publisher: await publisher.publish(events)`.

    `counts` holds what happened: published, duplicates, refused, retries. With `stop`, a wait
    for labhooks ends when it is set, raising Stopped."""

    def __init__(
        self,
        api_url: str,
        token: str,
        timeout_s: float = 30.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.counts: Counter[str] = Counter()
        self._stop = stop
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout_s,
        )

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    async def publish(self, events: Sequence[dict[str, Any]]) -> Outcome:
        """Publishes `events` (EventIn bodies); returns each one's event id, None for those
        labhooks refused, and the refusals. Waits while labhooks cannot take them."""
        ids: list[str | None] = [None] * len(events)
        refused: list[Refused] = []
        encoded: dict[int, bytes] = {}
        for position, event in enumerate(events):
            try:
                encoded[position] = _strict_json(event)
            except ValueError as exc:  # NaN, infinity, a lone surrogate: no JSON has them
                refused.append(Refused(position, _not_json(exc)))
        self.counts["refused"] += len(refused)
        await self._publish(list(encoded), encoded, ids, refused)
        return Outcome(ids, sorted(refused, key=lambda r: r.index))

    async def _publish(
        self,
        positions: list[int],
        encoded: dict[int, bytes],
        ids: list[str | None],
        refused: list[Refused],
    ) -> None:
        while positions:
            status, body = await self._post(b"[" + b",".join(encoded[p] for p in positions) + b"]")
            if status == 202:
                for position, event_id, duplicate in zip(
                    positions, body["event_ids"], body["duplicates"], strict=True
                ):
                    ids[position] = event_id
                    self.counts["duplicates" if duplicate else "published"] += 1
                return
            if status not in BATCH_REFUSALS:
                raise PublishingRefused(f"labhooks answered {status}: {body.get('detail', body)}")
            by_offset = _refusals(body, len(positions))
            if not by_offset and len(positions) > 1:  # about some event: halve until it is alone
                half = len(positions) // 2
                await self._publish(positions[:half], encoded, ids, refused)
                await self._publish(positions[half:], encoded, ids, refused)
                return
            if not by_offset:
                by_offset = {0: body}
            for offset, problem in sorted(by_offset.items()):
                refused.append(Refused(positions[offset], problem))
            self.counts["refused"] += len(by_offset)
            positions = [p for offset, p in enumerate(positions) if offset not in by_offset]

    async def _post(self, batch: bytes) -> tuple[int, dict[str, Any]]:
        """The answer to one POST /events of `batch` that is not "try again later"."""
        failures = 0
        while True:
            wait: float | None = None
            try:
                response = await self._client.post("/events", content=batch)
            except httpx.TransportError as exc:
                reason = f"labhooks is not answering ({type(exc).__name__})"
            else:
                if response.status_code in (401, 403):
                    raise TokenRefused(_detail(response))
                if response.status_code < 500 and response.status_code != 429:
                    return response.status_code, _json(response)
                reason = f"labhooks answered {response.status_code}"
                wait = _retry_after(response)
            delay = wait if wait is not None else BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            failures += 1
            self.counts["retries"] += 1
            log.warning("%s; trying again in %g s", reason, delay)
            await pause(delay, self._stop)


def _strict_json(event: dict[str, Any]) -> bytes:
    """The event as JSON labhooks can store, or ValueError (UnicodeEncodeError is one)."""
    return json.dumps(event, allow_nan=False, ensure_ascii=False).encode()


def _not_json(exc: ValueError) -> dict[str, Any]:
    reason = "a lone surrogate" if isinstance(exc, UnicodeEncodeError) else str(exc)
    return {
        "title": "Not an event",
        "status": 422,
        "code": "not_json",
        "detail": f"the event cannot be written as JSON ({reason})",
    }


def _refusals(problem: dict[str, Any], size: int) -> dict[int, dict[str, Any]]:
    """Which events of the batch a problem document is about: field errors are named by the
    event's index (`3.data.value`); each refused event gets the problem with its own errors."""
    found: dict[int, list[dict[str, Any]]] = {}
    for error in problem.get("errors", []):
        if (named := _INDEXED_FIELD.fullmatch(str(error.get("field", "")))) is not None:
            index = int(named.group(1))
            if index < size:
                named_error = {"field": named.group(2) or "event", "message": error.get("message")}
                found.setdefault(index, []).append(named_error)
    return {index: problem | {"errors": errors} for index, errors in found.items()}


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "detail": response.text[:500]}
    return body if isinstance(body, dict) else {"status": response.status_code, "body": body}


def _detail(response: httpx.Response) -> str:
    return str(_json(response).get("detail", response.status_code))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isascii() and value.isdigit() else None
