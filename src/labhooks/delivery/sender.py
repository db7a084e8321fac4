"""The seam between the worker and the network: a `Sender` turns one outgoing `Request` into
the `Attempt` the delivery log records. `delivery.http.HttpSender` is the real one; tests give
the worker their own to exercise its logic in milliseconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from labhooks import __version__
from labhooks.domain.outcomes import Attempt

USER_AGENT = f"labhooks/{__version__}"


@dataclass(frozen=True)
class Request:
    """One attempt at one delivery, ready to go."""

    delivery_id: str
    number: int  # 1 for the first attempt
    url: str
    headers: dict[str, str]  # what goes on the wire
    logged_headers: dict[str, str]  # the same, custom header values masked
    body: bytes

    def attempt(self, started_at: datetime, duration_ms: float, **outcome: object) -> Attempt:
        """The record of this request's attempt, with what came of it."""
        return Attempt(
            delivery_id=self.delivery_id,
            number=self.number,
            started_at=started_at,
            duration_ms=duration_ms,
            request_headers=self.logged_headers,
            **outcome,  # type: ignore[arg-type]
        )


class Sender(Protocol):
    async def send(self, request: Request) -> Attempt:
        """Sends the request and records what happened; never raises for what the target or
        the network did (that is the attempt's error)."""
        ...
