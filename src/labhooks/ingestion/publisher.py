"""Publishing to labhooks as a device gateway does: through the public API, with a publish-only
token, in batches, and with patience.

labhooks being unreachable or busy (no connection, 5xx, 429, 503) means waiting and trying
again, for as long as it takes: a bridge never drops what it was handed because labhooks was
restarting. An event labhooks refuses for what it is (an unknown device, data that does not
fit, a reused idempotency key) is handed back, with the problem document, for the bridge to
dead-letter; the rest of its batch is published. Only a token labhooks does not accept stops
the bridge (it is configured wrongly: waiting would not help).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("labhooks.ingestion")
BACKOFF_S = (0.5, 1, 2, 5, 10, 30)  # waits while labhooks cannot take events, then the last
_INDEXED_FIELD = re.compile(r"(\d+)\.(.*)")


class TokenRefused(Exception):
    """labhooks does not accept the bridge's token (401/403): a configuration error."""


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

    `counts` holds what happened: published, duplicates, refused, retries."""

    def __init__(self, api_url: str, token: str, timeout_s: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.counts: Counter[str] = Counter()
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token}"},
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
        pending = list(range(len(events)))
        while pending:
            status, body = await self._post([events[i] for i in pending])
            if status == 202:
                for position, event_id, duplicate in zip(
                    pending, body["event_ids"], body["duplicates"], strict=True
                ):
                    ids[position] = event_id
                    self.counts["duplicates" if duplicate else "published"] += 1
                return Outcome(ids, refused)
            by_position = _refusals(body, len(pending))
            if not by_position:  # a refusal that names no event: every one of them
                by_position = dict.fromkeys(range(len(pending)), body)
            for offset, problem in sorted(by_position.items()):
                refused.append(Refused(pending[offset], problem))
            self.counts["refused"] += len(by_position)
            pending = [p for offset, p in enumerate(pending) if offset not in by_position]
        return Outcome(ids, refused)

    async def _post(self, batch: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """The answer to one POST /events of `batch` that is not "try again later"."""
        failures = 0
        while True:
            wait: float | None = None
            try:
                response = await self._client.post("/events", json=batch)
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
            await asyncio.sleep(delay)


def _refusals(problem: dict[str, Any], size: int) -> dict[int, dict[str, Any]]:
    """Which events of the batch a problem document is about: field errors are named by the
    event's index (`3.data.value`); each refused event gets the problem with its own errors."""
    found: dict[int, list[dict[str, Any]]] = {}
    for error in problem.get("errors", []):
        if (named := _INDEXED_FIELD.fullmatch(str(error.get("field", "")))) is not None:
            index = int(named.group(1))
            if index < size:
                found.setdefault(index, []).append(
                    {"field": named.group(2), "message": error.get("message")}
                )
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
