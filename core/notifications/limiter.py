"""Pacing toward Discord's global limit (50 requests/s per bot): one token bucket shared by every sender.

Pass the same `TokenBucket` to every dispatcher in a process so their deliveries add up to one rate. (Sharing it
across processes, when the roles run apart, comes with a later issue.) The default, 46/s with a burst of 2, keeps
any rolling second at or under 48 requests: under Discord's 50, with room for clock jitter. (At exactly 45/s, the
claim and commit around each batch would keep the delivered rate a hair under the 90% we aim for.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

DEFAULT_RATE_PER_S = 46.0
DEFAULT_BURST = 2.0


class Limiter(Protocol):
    async def acquire(self, cost: float = 1.0) -> None: ...


class TokenBucket:
    """`rate` tokens a second, at most `burst` banked; `acquire(cost)` waits its turn (first come, first served)."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE_PER_S,
        burst: float = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.acquired = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, cost: float = 1.0) -> None:
        cost = min(cost, self.burst)  # a cost above the burst could never be paid at once; pay it at the cap
        async with self._lock:  # waiters queue here in arrival order
            self._refill()
            while self._tokens < cost:
                await asyncio.sleep((cost - self._tokens) / self.rate)
                self._refill()
            self._tokens -= cost
            self.acquired += cost


class Unpaced:
    """No pacing at all: the naive baseline of `tradedesk bench dispatch`. Never use it toward Discord."""

    async def acquire(self, cost: float = 1.0) -> None:
        return None
