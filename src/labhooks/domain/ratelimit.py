"""Rate limits as a pure rule: the clock is passed in."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """A subscription's rate limit: a bucket of max(rate, 1) requests, refilled at `rate` per
    second. Each worker keeps its own (docs/delivery.md: limits are per worker process)."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.capacity = max(rate_per_s, 1.0)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self._reserved_until = 0.0  # the clock reading up to which given-back slots are taken

    def reserve(self) -> float:
        """For a request refused now: seconds past the next free slot at which it may go,
        one slot of 1/rate after every request given back before it."""
        now = self.clock()
        start = max(self._reserved_until, now)
        self._reserved_until = start + 1 / self.rate
        return start - now

    def take(self) -> float:
        """0 when a request may go now, else seconds until one may."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1 - 1e-9:  # after waiting what it was told, float error must not refuse
            self.tokens = max(self.tokens - 1, 0.0)
            return 0.0
        return (1 - self.tokens) / self.rate
