"""The worker: claims due deliveries, sends each as its own task, writes results in batches.

Claiming, sending and writing overlap: the claim loop keeps up to `worker_concurrency` attempts
in flight and claims again once a quarter of the slots are free, so a slow or dead target only
ever holds the slots of its own attempts, never a whole batch. The writer flushes finished
attempts together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from labhooks.delivery.sender import USER_AGENT, Sender, Target
from labhooks.domain.headers import MASKED_VALUE
from labhooks.domain.network import AddressPolicy
from labhooks.domain.retry import Outcome, Verdict, decide
from labhooks.domain.signing import Signer
from labhooks.security import SecretBox
from labhooks.settings import Settings
from labhooks.storage.database import Database
from labhooks.storage.models import utcnow
from labhooks.storage.queue import Claimed, Completion, DeliveryQueue

log = logging.getLogger("labhooks.worker")
ERROR_BACKOFF_S = 0.5


@dataclass(frozen=True)
class SubscriptionRuntime:
    """What sending to one subscription needs, decrypted once per version of it."""

    version: tuple[datetime, str]
    target: Target
    signer: Signer
    headers: dict[str, str]
    logged_headers: dict[str, str]
    schedule: tuple[float, ...]


class TokenBucket:
    """Per-subscription rate limit, in this worker (see docs: limits are per worker process)."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate = rate_per_s
        self.tokens = max(rate_per_s, 1.0)
        self.updated = time.monotonic()

    def take(self) -> float:
        """0 when a request may go now, else seconds until one may."""
        now = time.monotonic()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Worker:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        box: SecretBox,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.queue = DeliveryQueue(database)
        self.box = box
        self.wakeup = database.wakeup
        self.on_written = on_written or (lambda: None)
        self.policy = AddressPolicy(settings.networks, public=settings.deliver_to_public)
        self._runtimes: dict[str, SubscriptionRuntime] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._finished: list[Completion] = []
        self._finished_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._claim_at = max(1, min(settings.worker_batch_size, settings.worker_concurrency // 4))
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        async with (
            Sender(self.policy, settings.delivery_timeout, settings.worker_concurrency) as sender,
            self.queue.listening(self.wakeup),
        ):
            writer = asyncio.create_task(self._write_loop(stop))
            log.info("worker started (concurrency %d)", settings.worker_concurrency)
            try:
                await self._claim_loop(stop, sender)
            finally:
                if self._in_flight:
                    await asyncio.wait(self._in_flight, timeout=settings.delivery_timeout + 1)
                stop.set()
                self._finished_ready.set()
                await writer
                log.info("worker stopped")

    # -- claiming and sending -------------------------------------------------------------

    async def _claim_loop(self, stop: asyncio.Event, sender: Sender) -> None:
        settings = self.settings
        while not stop.is_set():
            room = settings.worker_concurrency - len(self._in_flight)
            if room < self._claim_at and self._in_flight:
                self._room.clear()
                await _first_of(stop, self._room.wait())
                continue
            wanted = min(room, settings.worker_batch_size)
            try:
                claimed = await self.queue.claim(wanted, settings.lease)
                if claimed:
                    await self._dispatch(claimed, sender)
            except Exception:
                log.exception("claiming deliveries failed; trying again")
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if len(claimed) < wanted:  # the queue is drained: sleep until woken
                await _first_of(stop, self.wakeup.wait(settings.poll_interval))

    async def _dispatch(self, claimed: list[Claimed], sender: Sender) -> None:
        await self._load_runtimes(claimed, sender)
        deferred: dict[float, list[str]] = {}
        for delivery in claimed:
            if delivery.rate_limit_per_s:
                bucket = self._buckets.get(delivery.subscription_id)
                if bucket is None or bucket.rate != delivery.rate_limit_per_s:
                    bucket = self._buckets[delivery.subscription_id] = TokenBucket(
                        delivery.rate_limit_per_s
                    )
                wait = bucket.take()
                if wait:
                    deferred.setdefault(round(wait, 2), []).append(delivery.delivery_id)
                    continue
            task = asyncio.create_task(self._attempt(delivery, sender))
            self._in_flight.add(task)
            task.add_done_callback(self._task_done)
        for wait, ids in deferred.items():
            await self.queue.defer(ids, utcnow() + timedelta(seconds=wait))
            self._wake_at(time.time() + wait)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        # Claim again once a useful batch fits, not for every slot that frees: one query per
        # delivery would cost more than the deliveries.
        if self.settings.worker_concurrency - len(self._in_flight) >= self._claim_at:
            self._room.set()
        if not task.cancelled() and task.exception():
            log.error("an attempt crashed", exc_info=task.exception())

    async def _load_runtimes(self, claimed: list[Claimed], sender: Sender) -> None:
        stale = {
            c.subscription_id: c
            for c in claimed
            if (runtime := self._runtimes.get(c.subscription_id)) is None
            or runtime.version != (c.subscription_version, c.secret_encrypted)
        }
        if not stale:
            return
        headers = await self.queue.headers(list(stale))
        for subscription_id, delivery in stale.items():
            secrets = [self.box.decrypt(delivery.secret_encrypted)]
            expires = delivery.previous_secret_expires_at
            if delivery.previous_secret_encrypted and expires and expires > utcnow():
                secrets.append(self.box.decrypt(delivery.previous_secret_encrypted))
            custom = {name: self.box.decrypt(value) for name, value in headers[subscription_id]}
            self._runtimes[subscription_id] = SubscriptionRuntime(
                version=(delivery.subscription_version, delivery.secret_encrypted),
                target=sender.target(delivery.target_url),
                signer=Signer(secrets),
                headers=custom,
                logged_headers=dict.fromkeys(custom, MASKED_VALUE),
                schedule=tuple(delivery.retry_schedule or self.settings.schedule),
            )

    async def _attempt(self, delivery: Claimed, sender: Sender) -> None:
        runtime = self._runtimes[delivery.subscription_id]
        timestamp = int(time.time())
        body = delivery.payload.encode()
        standard = {
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": runtime.signer.signature(delivery.delivery_id, timestamp, body),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        started_at = utcnow()
        answer = await sender.send(runtime.target, runtime.headers | standard, body)
        outcome = Outcome(answer.status, answer.error, answer.retry_after)
        decision = decide(outcome, delivery.schedule_position + 1, runtime.schedule, utcnow())
        self._finished.append(
            Completion(
                delivery_id=delivery.delivery_id,
                subscription_id=delivery.subscription_id,
                number=delivery.attempt_count + 1,
                started_at=started_at,
                duration_ms=answer.duration_ms,
                request_headers=runtime.logged_headers | standard,
                response_status=answer.status,
                response_headers=answer.headers,
                response_body=answer.body,
                error=answer.error,
                decision=decision,
            )
        )
        self._finished_ready.set()

    # -- writing results ------------------------------------------------------------------

    async def _write_loop(self, stop: asyncio.Event) -> None:
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            await asyncio.sleep(0.005)  # let a few more attempts finish into this batch
            batch, self._finished = self._finished, []
            while batch:
                try:
                    await self.queue.complete(batch, self.settings.auto_disable_after_days * 86400)
                except Exception:
                    log.exception("recording %d attempts failed; trying again", len(batch))
                    await asyncio.sleep(ERROR_BACKOFF_S)
                    continue
                self.on_written()
                retries = [
                    c.decision.next_attempt_at
                    for c in batch
                    if c.decision.verdict is Verdict.RETRY and c.decision.next_attempt_at
                ]
                if retries:
                    self._wake_at(min(retries).timestamp())
                batch = []
            if stop.is_set() and not self._in_flight and not self._finished:
                return

    def _wake_at(self, when: float) -> None:
        """Wake the claim loop when the earliest retry this worker scheduled comes due."""
        if when >= self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time()) + 0.01

        def fire() -> None:
            self._timer, self._timer_at = None, float("inf")
            self.wakeup.set()

        self._timer = loop.call_later(delay, fire)
        self._timer_at = when


async def _first_of(stop: asyncio.Event, waiting: Coroutine[Any, Any, object]) -> None:
    """Waits for `waiting` or for `stop`, whichever comes first."""
    stopper = asyncio.create_task(stop.wait())
    other = asyncio.create_task(waiting)
    _, pending = await asyncio.wait({stopper, other}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
