"""The worker: claims due deliveries, sends each as its own task, records results in batches.

In `labhooks serve`, where publishers share the worker's process, a publish hands its
deliveries to the worker as its transaction commits, written already leased to it
(storage.queue.enqueue): the first attempt starts without a claim or a wake-up. What the worker
has no room for, and an ordered subscription's deliveries, wait in the queue as ever.

Claiming, sending and recording overlap: the claim loop keeps up to `worker_concurrency`
attempts in flight and claims again once a quarter of the slots are free, so a slow or dead
target only ever holds the slots of its own attempts, never a whole batch. One bad item fails
alone: a subscription whose secret cannot be decrypted gets failed attempts that say why, a
sender that raises fails its own attempt, and a batch of results that cannot be written is split
until the one attempt that cannot be stored is recorded without its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken

from labhooks.delivery.http import HttpSender
from labhooks.delivery.sender import USER_AGENT, Request, Sender
from labhooks.domain.headers import MASKED_VALUE
from labhooks.domain.network import AddressPolicy
from labhooks.domain.outcomes import Attempt, AutoDisable, Decision, Verdict, decide
from labhooks.domain.ratelimit import TokenBucket
from labhooks.domain.signing import SignatureScheme, Signer
from labhooks.observability import metrics
from labhooks.observability.heartbeats import Heartbeats, new_worker_id
from labhooks.observability.recorded import report_recorded
from labhooks.security import SecretBox
from labhooks.settings import Settings
from labhooks.signals import Signal
from labhooks.storage.database import Database, DatabaseUnavailable
from labhooks.storage.models import utcnow
from labhooks.storage.queue import Claimed, DeliveryQueue, Finished, SubscriptionDetails

log = logging.getLogger("labhooks.worker")
ERROR_BACKOFF_S = 0.5
GIVE_UP_WRITING_AT_STOP = 5  # tries to record the last results while stopping, then leave them
UNDECRYPTABLE = (
    "LABHOOKS_SECRET_KEY is not the key it was stored with, or the stored value is damaged"
)
KEY_NAMES: dict[str, str] = {
    SignatureScheme.HMAC: "signing secret",
    SignatureScheme.ED25519: "ed25519 private key",
}


@dataclass(frozen=True)
class SubscriptionRuntime:
    """What sending to one subscription needs, decrypted once per version of it."""

    version: datetime
    refresh_at: datetime | None  # the previous secret stops signing then
    url: str
    signer: Signer
    headers: dict[str, str]
    logged_headers: dict[str, str]
    schedule: tuple[float, ...]
    rate_limit_per_s: float | None
    broken: str | None = None  # why nothing can be sent to it


class Worker:
    def __init__(
        self,
        settings: Settings,
        queue: DeliveryQueue,
        box: SecretBox,
        sender: Sender,
        enqueued: Signal,
        recorded: Signal | None = None,
        heartbeats: Heartbeats | None = None,
        takes_handoffs: bool = False,
    ) -> None:
        """`takes_handoffs`: deliveries enqueued in this process are handed to this worker
        directly when it has room (storage.queue.enqueue), rather than claimed."""
        self.settings = settings
        self.lease_s = settings.lease
        self._takes_handoffs = takes_handoffs
        self._reserved = 0  # slots held for deliveries being handed over
        self._accepting = False
        self._handing: set[asyncio.Task[None]] = set()
        self.heartbeats = heartbeats
        self.worker_id = heartbeats.worker_id if heartbeats else new_worker_id()
        self._in_flight_gauge = metrics.IN_FLIGHT.labels(worker=self.worker_id)
        self._attempts_recorded = 0
        self.queue = queue
        self.box = box
        self.sender = sender
        self.enqueued = enqueued
        self.recorded = recorded or Signal()
        self.auto_disable = AutoDisable(settings.auto_disable_after_days)
        self._runtimes: dict[str, SubscriptionRuntime] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._finished: list[Finished] = []
        self._unwritten: list[Finished] = []  # results the database could not take yet
        self._finished_ready = asyncio.Event()
        self._room = asyncio.Event()
        self._claim_at = max(1, min(settings.worker_batch_size, settings.worker_concurrency // 4))
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    async def run(self, stop: asyncio.Event) -> None:
        claiming_done = asyncio.Event()
        database = self.queue.database
        if self._takes_handoffs:
            database.local_worker, self._accepting = self, True
        # The LISTEN connection goes as soon as claiming stops, not after the drain below: on
        # PostgreSQL it holds the turn to listen (storage.notify), which another worker takes.
        listening = contextlib.AsyncExitStack()
        async with listening:
            await listening.enter_async_context(self.queue.listening(self.enqueued))
            writer = asyncio.create_task(self._write_loop(claiming_done))
            beating = asyncio.create_task(self._heartbeat(stop))
            log.info(
                "worker started (concurrency %d)",
                self.settings.worker_concurrency,
                extra={"worker_id": self.worker_id},
            )
            try:
                await self._claim_loop(stop)
            finally:
                await listening.aclose()
                self._accepting = False
                if database.local_worker is self:
                    database.local_worker = None
                if self._handing:
                    await asyncio.wait(self._handing, timeout=self.settings.delivery_timeout + 1)
                if self._in_flight:
                    await asyncio.wait(self._in_flight, timeout=self.settings.delivery_timeout + 1)
                # only now: a claim still running when `stop` was set may have dispatched more
                claiming_done.set()
                self._finished_ready.set()
                await writer
                await beating
                metrics.IN_FLIGHT.remove(self.worker_id)
                log.info("worker stopped", extra={"worker_id": self.worker_id})

    # -- claiming and sending -------------------------------------------------------------

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        settings = self.settings
        while not stop.is_set():
            if self._unwritten:  # the database cannot record results: send nothing more now
                await _first_of(stop, asyncio.sleep(ERROR_BACKOFF_S))
                continue
            room = settings.worker_concurrency - len(self._in_flight) - self._reserved
            if room < self._claim_at and (self._in_flight or self._reserved):
                self._room.clear()
                await _first_of(stop, self._room.wait())
                continue
            wanted = min(room, settings.worker_batch_size)
            seen = self.enqueued.generation
            try:
                claimed = await self.queue.claim(wanted, settings.lease)
                if claimed:
                    await self._dispatch(claimed)
            except Exception:
                # the database is unreachable; what was claimed goes out when its lease ends
                log.exception("claiming deliveries failed; trying again")
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if len(claimed) < wanted:  # the queue is drained: sleep until woken
                await _first_of(stop, self.enqueued.wait(settings.poll_interval, seen))

    async def _dispatch(self, claimed: list[Claimed]) -> None:
        await self._load_runtimes(claimed)
        now = utcnow()
        deferred: list[tuple[str, datetime]] = []
        for delivery in claimed:
            runtime = self._runtimes.get(delivery.subscription_id)
            if runtime is None:
                self._finish(delivery, _unsent(delivery, "the subscription no longer exists"))
                continue
            if runtime.broken:
                self._finish(delivery, _unsent(delivery, runtime.broken))
                continue
            if runtime.rate_limit_per_s:
                bucket = self._buckets.get(delivery.subscription_id)
                if bucket is None or bucket.rate != runtime.rate_limit_per_s:
                    bucket = self._buckets[delivery.subscription_id] = TokenBucket(
                        runtime.rate_limit_per_s
                    )
                wait = bucket.take()
                if wait:
                    # each one given back gets its own slot in the subscription's rate, so a
                    # backlog is not claimed and given back whole at every refill
                    queued = bucket.reserve()
                    deferred.append((delivery.delivery_id, now + timedelta(seconds=wait + queued)))
                    continue
            task = asyncio.create_task(self._attempt(delivery, runtime))
            self._in_flight.add(task)
            task.add_done_callback(self._task_done)
        self._in_flight_gauge.set(len(self._in_flight))
        if deferred:
            await self.queue.defer(deferred)
            self._wake_at(min(at for _, at in deferred).timestamp())

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._in_flight_gauge.set(len(self._in_flight))
        self._room_changed()

    def _room_changed(self) -> None:
        # Claim again once a useful batch fits, not for every slot that frees: one query per
        # delivery would cost more than the deliveries.
        free = self.settings.worker_concurrency - len(self._in_flight) - self._reserved
        if free >= self._claim_at:
            self._room.set()

    # -- deliveries handed over by this process's publishers (storage.queue.enqueue) ----------

    def reserve(self, wanted: int) -> int:
        if not self._accepting or self._unwritten:
            return 0
        free = self.settings.worker_concurrency - len(self._in_flight) - self._reserved
        granted = max(0, min(wanted, free))
        self._reserved += granted
        return granted

    def give_back(self, count: int) -> None:
        self._reserved -= count
        self._room_changed()

    def hand_over(self, claimed: list[Claimed]) -> None:
        """Called as the publishing transaction commits (a session hook, on this loop)."""
        if not self._accepting:  # stopping: they go out when their lease ends, by any worker
            self._reserved -= len(claimed)
            return
        handing = asyncio.get_running_loop().create_task(self._take(claimed))
        self._handing.add(handing)
        handing.add_done_callback(self._handing.discard)

    async def _take(self, claimed: list[Claimed]) -> None:
        try:
            await self._dispatch(claimed)
        except Exception:
            # the subscriptions could not be read: what was leased goes out when its lease ends
            log.exception("sending %d deliveries handed over failed", len(claimed))
        finally:  # their reserved slots are in-flight attempts now, or free
            self._reserved -= len(claimed)
            self._room_changed()

    async def _load_runtimes(self, claimed: list[Claimed]) -> None:
        now = utcnow()
        stale = {
            c.subscription_id
            for c in claimed
            if (runtime := self._runtimes.get(c.subscription_id)) is None
            or runtime.version != c.subscription_version
            or (runtime.refresh_at is not None and runtime.refresh_at <= now)
        }
        if stale:
            for subscription_id, details in (await self.queue.subscriptions(list(stale))).items():
                self._runtimes[subscription_id] = self._runtime(details, now)

    def _runtime(self, details: SubscriptionDetails, now: datetime) -> SubscriptionRuntime:
        """Decrypts what the subscription needs; what does not decrypt makes it `broken`, so
        its deliveries fail with the reason and every other subscription's go out."""
        broken = None
        secrets: list[str] = []
        headers: dict[str, str] = {}
        key = KEY_NAMES.get(details.signature_scheme, "signing secret")
        try:
            secrets.append(self._decrypt(details.secret_encrypted))
        except ValueError:
            broken = f"the {key} cannot be decrypted: {UNDECRYPTABLE}"
        expires = details.previous_secret_expires_at
        if details.previous_secret_encrypted and expires and expires > now:
            with contextlib.suppress(ValueError):  # then only the new secret signs
                secrets.append(self._decrypt(details.previous_secret_encrypted))
        try:
            signer = Signer(secrets)
        except ValueError:  # it decrypted, so it was stored so: nothing labhooks itself writes
            signer = Signer([])
            broken = broken or f"the {key} is not a valid key; rotate the secret"
        for name, value in details.headers:
            try:
                headers[name] = self._decrypt(value)
            except ValueError:
                broken = broken or (
                    f"the value of header {name} cannot be decrypted: {UNDECRYPTABLE}; "
                    "enter the value again"
                )
        return SubscriptionRuntime(
            version=details.version,
            refresh_at=expires if expires and expires > now else None,
            url=details.target_url,
            signer=signer,
            headers=headers,
            logged_headers=dict.fromkeys(headers, MASKED_VALUE),
            schedule=tuple(details.retry_schedule or self.settings.schedule),
            rate_limit_per_s=details.rate_limit_per_s,
            broken=broken,
        )

    def _decrypt(self, ciphertext: str) -> str:
        try:
            return self.box.decrypt(ciphertext)
        except InvalidToken:
            raise ValueError("cannot be decrypted") from None

    async def _attempt(self, delivery: Claimed, runtime: SubscriptionRuntime) -> None:
        timestamp = int(time.time())
        body = delivery.payload.encode()
        standard = {
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": runtime.signer.signature(delivery.delivery_id, timestamp, body),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        request = Request(
            delivery_id=delivery.delivery_id,
            number=delivery.attempt_count + 1,
            url=runtime.url,
            headers=runtime.headers | standard,
            logged_headers=runtime.logged_headers | standard,
            body=body,
        )
        started_at = utcnow()
        try:
            attempt = await self.sender.send(request)
        except Exception as exc:  # a fault of ours must fail this attempt, not lose it
            log.exception("sending delivery %s failed", delivery.delivery_id)
            attempt = request.attempt(started_at, 0.0, error=f"labhooks could not send it: {exc!r}")
        self._finish(delivery, attempt)

    def _finish(self, delivery: Claimed, attempt: Attempt) -> None:
        self._finished.append(Finished(delivery, attempt, self._decide(delivery, attempt)))
        self._finished_ready.set()

    def _decide(self, delivery: Claimed, attempt: Attempt) -> Decision:
        runtime = self._runtimes.get(delivery.subscription_id)
        schedule = runtime.schedule if runtime else self.settings.schedule
        return decide(attempt, delivery.schedule_position + 1, schedule, utcnow())

    # -- recording results ----------------------------------------------------------------

    async def _write_loop(self, claiming_done: asyncio.Event) -> None:
        failed_tries = 0
        while True:
            await self._finished_ready.wait()
            self._finished_ready.clear()
            await asyncio.sleep(0.005)  # let a few more attempts finish into this batch
            batch, self._finished = self._unwritten + self._finished, []
            self._unwritten = await self._record(batch)
            left = {id(f) for f in self._unwritten}
            written = [f for f in batch if id(f) not in left]
            if written:
                self.recorded.set()
                self._account(written)
                retries = [
                    f.decision.next_attempt_at
                    for f in written
                    if f.decision.verdict is Verdict.RETRY and f.decision.next_attempt_at
                ]
                if retries:
                    self._wake_at(min(retries).timestamp())
            if self._unwritten:
                failed_tries += 1
                if claiming_done.is_set() and failed_tries >= GIVE_UP_WRITING_AT_STOP:
                    log.error(
                        "stopping with %d attempts unrecorded; their deliveries go out again "
                        "when their leases end",
                        len(self._unwritten),
                    )
                    return
                await asyncio.sleep(ERROR_BACKOFF_S)
                self._finished_ready.set()
                continue
            failed_tries = 0
            if claiming_done.is_set() and not self._in_flight and not self._finished:
                return

    async def _record(self, batch: list[Finished]) -> list[Finished]:
        """Writes the batch and returns what the database could not take now (it is down,
        locked, restarting): that waits whole for the next try. What it refuses for its
        content is split in halves and written again, down to the one attempt that cannot be
        stored; that one is recorded without its answer, failed with the database's error. If
        the database refuses even that (its delivery is gone), it is logged and dropped."""
        parts = [batch] if batch else []
        while parts:
            part = parts.pop()
            try:
                await self.queue.complete(part, self.auto_disable)
                continue
            except DatabaseUnavailable as exc:
                log.error("the database cannot record attempts now (%s); trying again", exc)
                return [*part, *[f for rest in parts for f in rest]]
            except Exception as exc:
                refused = exc
            if len(part) > 1:
                middle = len(part) // 2
                parts += [part[middle:], part[:middle]]
                continue
            [finished] = part
            reason = _storage_error(refused)
            log.error("recording delivery %s failed: %s", finished.delivery.delivery_id, reason)
            stripped = finished.attempt.as_unstorable(reason)
            fallback = Finished(
                finished.delivery, stripped, self._decide(finished.delivery, stripped)
            )
            try:
                await self.queue.complete([fallback], self.auto_disable)
            except DatabaseUnavailable:
                return [finished, *[f for rest in parts for f in rest]]
            except Exception:
                log.exception(
                    "delivery %s cannot be recorded at all; left to its lease",
                    finished.delivery.delivery_id,
                )
        return []

    # -- what operators see -----------------------------------------------------------------

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        if self.heartbeats is not None:
            await self.heartbeats.keep_beating(
                stop,
                self.settings.worker_heartbeat_s,
                lambda: (len(self._in_flight), self._attempts_recorded),
            )

    def _account(self, written: list[Finished]) -> None:
        """Metrics and log lines for attempts just recorded."""
        self._attempts_recorded += len(written)
        report_recorded(written, self.worker_id)

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
            self.enqueued.set()

        self._timer = loop.call_later(delay, fire)
        self._timer_at = when


def _unsent(delivery: Claimed, reason: str) -> Attempt:
    return Attempt(
        delivery_id=delivery.delivery_id,
        number=delivery.attempt_count + 1,
        started_at=utcnow(),
        duration_ms=0.0,
        request_headers={},
        error=f"not sent: {reason}",
    )


def _storage_error(exc: BaseException) -> str:
    """The driver's message, first line only (SQLAlchemy appends the statement and a link)."""
    original = getattr(exc, "orig", None) or exc
    return (str(original).splitlines() or [type(original).__name__])[0]


async def run_worker(
    settings: Settings,
    database: Database,
    box: SecretBox,
    stop: asyncio.Event,
    recorded: Signal | None = None,
) -> None:
    """A worker with the real sender, until `stop` is set."""
    policy = AddressPolicy(settings.networks, public=settings.deliver_to_public)
    async with HttpSender(policy, settings.delivery_timeout, settings.worker_concurrency) as sender:
        worker = Worker(
            settings,
            DeliveryQueue(database),
            box,
            sender,
            database.enqueued,
            recorded,
            Heartbeats(database),
            takes_handoffs=True,
        )
        await worker.run(stop)


async def _first_of(stop: asyncio.Event, waiting: Coroutine[Any, Any, object]) -> None:
    """Waits for `waiting` or for `stop`, whichever comes first."""
    stopper = asyncio.create_task(stop.wait())
    other = asyncio.create_task(waiting)
    _, pending = await asyncio.wait({stopper, other}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
