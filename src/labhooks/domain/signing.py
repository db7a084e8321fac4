"""Standard Webhooks signatures (SPEC §4), computed by the `standardwebhooks` library itself so
that any receiver's library verifies them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook


class Signer:
    """Signs with each given secret, newest first; two during a rotation's grace period."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets]

    def signature(self, message_id: str, timestamp: int, body: str) -> str:
        moment = datetime.fromtimestamp(timestamp, UTC)
        return " ".join(w.sign(message_id, moment, body) for w in self._webhooks)
