"""The worker's in-process tick bus: the feed publishes, several consumers (paper broker, alert engine, persistence,
dashboard) each read at their own pace.

Publishing never waits. Each subscriber has its own bounded queue; when a consumer falls behind and its queue is
full, further ticks are conflated per symbol: it keeps only the newest tick of each symbol until it catches up, and
`dropped` counts what it missed. So a slow consumer costs memory bounded by queue size plus the number of symbols,
never blocks the feed or the other consumers, and still sees every symbol's latest price in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType

from core.market.ticks import Tick

log = logging.getLogger(__name__)

_WARN_EVERY_S = 60.0


class Subscription:
    """One consumer's view of the bus. `async for tick in sub`, or `await sub.get()` / `await sub.get_many()`."""

    def __init__(
        self, bus: TickBus, name: str, maxsize: int, symbols: frozenset[str] | None, *, conflate: bool = True
    ) -> None:
        if maxsize < 1:
            raise ValueError("a subscription needs room for at least one tick")
        self.name = name
        # A consumer that must see every price path (the alert engine: 99 -> 101 -> 99 crosses 100 twice) never
        # conflates; it keeps up by doing only in-memory work per tick, and a backlog is logged, never dropped.
        self.conflate = conflate
        self.maxsize = maxsize
        self.symbols = symbols
        self.dropped = 0
        self.delivered = 0
        self._bus = bus
        self._queue: deque[Tick] = deque()
        # Newest tick per symbol, once the queue is full; always newer than anything still queued for that symbol.
        self._conflated: dict[str, Tick] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._warned_at: float | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        return len(self._queue) + len(self._conflated)

    def offer(self, tick: Tick) -> None:
        """Take a tick without ever waiting (the bus calls this)."""
        if self._closed or (self.symbols is not None and tick.symbol not in self.symbols):
            return
        if not self.conflate:
            self._queue.append(tick)
            if len(self._queue) > self.maxsize and self._may_warn():
                log.warning("tick bus: consumer %s is %d ticks behind (nothing dropped)", self.name, len(self._queue))
        elif self._conflated or len(self._queue) >= self.maxsize:
            if tick.symbol in self._conflated:
                self.dropped += 1
            elif self._conflated == {} and self._may_warn():
                log.warning(
                    "tick bus: consumer %s fell behind (%d queued); keeping only the latest tick per symbol until it "
                    "catches up (%d conflated so far)",
                    self.name,
                    len(self._queue),
                    self.dropped,
                )
            self._conflated[tick.symbol] = tick
        else:
            self._queue.append(tick)
        self._wake()

    def _may_warn(self) -> bool:
        # A consumer that keeps falling behind is reported once a minute, not on every episode.
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < _WARN_EVERY_S:
            return False
        self._warned_at = now
        return True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take(self) -> Tick:
        tick = self._queue.popleft() if self._queue else self._conflated.pop(next(iter(self._conflated)))
        self.delivered += 1
        return tick

    async def _wait(self) -> None:
        while not self._queue and not self._conflated:
            if self._closed:
                raise EOFError(f"subscription {self.name} is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self) -> Tick:
        """The next tick, waiting for one. EOFError once the subscription is closed and drained."""
        await self._wait()
        return self._take()

    async def get_many(self, limit: int = 1000) -> list[Tick]:
        """At least one tick (waiting for it) and at most `limit`: everything already waiting, oldest first."""
        await self._wait()
        batch = [self._take()]
        while len(batch) < limit and (self._queue or self._conflated):
            batch.append(self._take())
        return batch

    def close(self) -> None:
        """Leave the bus; a consumer waiting in get() gets the remaining ticks, then EOFError."""
        self._bus.unsubscribe(self)
        self._closed = True
        self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Tick:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class TickBus:
    """Fans ticks out to subscribers and remembers the last tick of every symbol. One event loop, no locks."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []
        self._last: dict[str, Tick] = {}
        self.published = 0

    def subscribe(
        self, name: str, *, maxsize: int = 10_000, symbols: Iterable[str] | None = None, conflate: bool = True
    ) -> Subscription:
        """A new consumer named `name` (for logs), receiving ticks of `symbols` (all when None) from now on."""
        sub = Subscription(self, name, maxsize, frozenset(symbols) if symbols is not None else None, conflate=conflate)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    @property
    def subscribers(self) -> list[Subscription]:
        return list(self._subscribers)

    def publish(self, tick: Tick) -> None:
        self.published += 1
        self._last[tick.symbol] = tick
        for sub in self._subscribers:
            sub.offer(tick)

    def last(self, symbol: str) -> Tick | None:
        """The newest tick of `symbol` seen by this process, or None."""
        return self._last.get(symbol)
