"""What a worker tells operators about the attempts it has just recorded: the metrics, and a
log line for each one that failed (successes are counted, not logged: there are too many)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from labhooks.domain.outcomes import Verdict
from labhooks.observability import metrics
from labhooks.storage.queue import Finished

log = logging.getLogger("labhooks.worker")


def report_recorded(written: Sequence[Finished], worker_id: str) -> None:
    metrics.count_recorded([(f.attempt, f.decision.verdict) for f in written])
    for f in written:
        if f.decision.verdict is Verdict.SUCCEEDED:
            continue
        ids = {
            "delivery_id": f.delivery.delivery_id,
            "subscription_id": f.delivery.subscription_id,
            "worker_id": worker_id,
        }
        what = f.attempt.error or f"HTTP {f.attempt.response_status}"
        if f.decision.verdict is Verdict.RETRY and f.decision.next_attempt_at:
            log.info(
                "attempt %d failed (%s); next at %s",
                f.attempt.number,
                what,
                f"{f.decision.next_attempt_at:%Y-%m-%dT%H:%M:%S}Z",
                extra=ids,
            )
        else:
            log.warning(
                "delivery failed after attempt %d (%s)%s",
                f.attempt.number,
                what,
                "; subscription deactivated" if f.decision.deactivate_reason else "",
                extra=ids,
            )
