"""Last prices and 1-minute bars, written to the database at a throttled rate for the roles that don't see the bus.

A bus consumer folds every tick into memory (the newest tick per symbol, and per symbol and minute the open, high,
low, close, volume and count of the ticks since the last write); every `flush_every_s` one `system_scope`
transaction writes all of it with one multi-row upsert per table, and publishes the new last prices on the
`tradedesk_prices` channel (core/live.py) for live dashboards in processes without the bus. So the database sees
at most one write transaction per second whatever the tick rate, and last_prices is never older than that, well
inside the staleness window (TRADEDESK_MARKET_STALE_AFTER_S) that QuoteSource and the broker apply.

Bars are upserted as deltas that merge with what is stored (high/low widen, close moves on, volume and count add
up), so bars stay right across flushes, restarts mid-minute, and a failed write, whose data is merged back and
retried with the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text

from core.db.database import Database, run_sql
from core.live import notify_prices
from core.market.bus import Subscription, TickBus
from core.market.ticks import Tick

log = logging.getLogger(__name__)

_UPSERT_LAST = text(
    """
    INSERT INTO last_prices AS lp (symbol, price, size, ts, source)
    SELECT * FROM unnest(CAST(:symbol AS text[]), CAST(:price AS numeric[]), CAST(:size AS numeric[]),
                         CAST(:ts AS timestamptz[]), CAST(:source AS text[]))
    ON CONFLICT (symbol) DO UPDATE
       SET price = excluded.price, size = excluded.size, ts = excluded.ts, source = excluded.source,
           received_at = now()
     WHERE lp.ts <= excluded.ts
    """
)
_UPSERT_BARS = text(
    """
    INSERT INTO price_bars AS b (symbol, minute, open, high, low, close, volume, tick_count, source)
    SELECT * FROM unnest(CAST(:symbol AS text[]), CAST(:minute AS timestamptz[]), CAST(:open AS numeric[]),
                         CAST(:high AS numeric[]), CAST(:low AS numeric[]), CAST(:close AS numeric[]),
                         CAST(:volume AS numeric[]), CAST(:tick_count AS integer[]), CAST(:source AS text[]))
    ON CONFLICT (symbol, minute) DO UPDATE
       SET high = greatest(b.high, excluded.high), low = least(b.low, excluded.low), close = excluded.close,
           volume = b.volume + excluded.volume, tick_count = b.tick_count + excluded.tick_count,
           source = excluded.source
    """
)


@dataclass(slots=True)
class BarDelta:
    """The ticks of one symbol in one minute since the last write."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    count: int
    source: str

    @classmethod
    def first(cls, tick: Tick) -> BarDelta:
        p = tick.price
        return cls(p, p, p, p, tick.size, 1, tick.source)

    def add(self, tick: Tick) -> None:
        p = tick.price
        if p > self.high:
            self.high = p
        elif p < self.low:
            self.low = p
        self.close = p
        self.volume += tick.size
        self.count += 1
        self.source = tick.source

    def then(self, later: BarDelta) -> BarDelta:
        """This delta followed by a later one of the same minute."""
        return BarDelta(
            self.open,
            max(self.high, later.high),
            min(self.low, later.low),
            later.close,
            self.volume + later.volume,
            self.count + later.count,
            later.source,
        )


def minute_of(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


class PricePersister:
    """Consumes the bus and writes last_prices and price_bars every `flush_every_s`. `start()`, then `stop()`."""

    def __init__(self, database: Database, bus: TickBus, *, flush_every_s: float = 1.0) -> None:
        self.database = database
        self.bus = bus
        self.flush_every_s = flush_every_s
        self.flushes = 0
        self.failures = 0
        self._last: dict[str, Tick] = {}
        self._bars: dict[tuple[str, datetime], BarDelta] = {}
        self._sub: Subscription | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._failing = 0  # consecutive failed flushes
        self._stopping = asyncio.Event()

    @property
    def backlog(self) -> int:
        """Ticks waiting on the bus to be folded in."""
        return self._sub.pending() if self._sub is not None else 0

    def add(self, tick: Tick) -> None:
        """Fold one tick into what the next flush writes."""
        last = self._last.get(tick.symbol)
        if last is None or tick.ts >= last.ts:  # a late tick still counts in its bar, but isn't the last price
            self._last[tick.symbol] = tick
        key = (tick.symbol, minute_of(tick.ts))
        bar = self._bars.get(key)
        if bar is None:
            self._bars[key] = BarDelta.first(tick)
        else:
            bar.add(tick)

    def start(self) -> None:
        # The queue is generous: folding a tick in is cheap, so this consumer only lags if the loop is starved.
        self._sub = self.bus.subscribe("market.persist", maxsize=100_000)
        self._consumer = asyncio.create_task(self._consume(self._sub), name="market.persist consume")
        self._flusher = asyncio.create_task(self._flush_loop(), name="market.persist flush")
        log.info("market data: last prices and 1-minute bars written every %.1f s", self.flush_every_s)

    async def stop(self) -> None:
        """Stop consuming and write what is left. A flush under way finishes first: cancelling it would lose it."""
        self._stopping.set()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        if self._flusher is not None:
            await self._flusher
            self._flusher = None
        if self._sub is not None:
            self._sub.close()
            while self._sub.pending():
                self.add(await self._sub.get())
            self._sub = None
        await self.flush()

    async def _consume(self, sub: Subscription) -> None:
        while True:
            for tick in await sub.get_many():
                self.add(tick)

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.flush_every_s)
            if not self._stopping.is_set():
                await self.flush()

    async def flush(self) -> bool:
        """Write everything folded in since the last flush, in one transaction. False if the write failed (the data
        is kept for the next flush)."""
        if not self._last and not self._bars:
            return True
        last, bars = self._last, self._bars
        self._last, self._bars = {}, {}
        try:
            async with self.database.system_scope("market.persist") as session:
                if last:
                    await run_sql(session, _UPSERT_LAST, _last_params(last.values()))
                if bars:
                    await run_sql(session, _UPSERT_BARS, _bar_params(bars))
                if last:
                    # Web processes without the tick bus show live prices from this (delivered at commit).
                    await notify_prices(session, last.values())
        except Exception as exc:  # noqa: BLE001 -- a failed write (database away) is retried, never fatal
            self._merge_back(last, bars)
            self.failures += 1
            self._failing += 1
            if self._failing == 1:
                reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                log.warning("market data: writing prices failed (%s); retrying each flush", reason)
            return False
        except BaseException:  # cancelled mid-write: keep the data for whoever flushes next
            self._merge_back(last, bars)
            raise
        self.flushes += 1
        if self._failing:
            log.info("market data: writing prices works again after %d failed flush(es)", self._failing)
            self._failing = 0
        return True

    def _merge_back(self, last: dict[str, Tick], bars: dict[tuple[str, datetime], BarDelta]) -> None:
        for symbol, tick in last.items():
            current = self._last.get(symbol)
            if current is None or tick.ts > current.ts:
                self._last[symbol] = tick
        for key, bar in bars.items():
            newer = self._bars.get(key)
            self._bars[key] = bar if newer is None else bar.then(newer)


def _last_params(ticks: Iterable[Tick]) -> dict[str, list[object]]:
    rows = list(ticks)
    return {
        "symbol": [t.symbol for t in rows],
        "price": [t.price for t in rows],
        "size": [t.size for t in rows],
        "ts": [t.ts for t in rows],
        "source": [t.source for t in rows],
    }


def _bar_params(bars: dict[tuple[str, datetime], BarDelta]) -> dict[str, list[object]]:
    items = list(bars.items())
    return {
        "symbol": [k[0] for k, _ in items],
        "minute": [k[1] for k, _ in items],
        "open": [b.open for _, b in items],
        "high": [b.high for _, b in items],
        "low": [b.low for _, b in items],
        "close": [b.close for _, b in items],
        "volume": [b.volume for _, b in items],
        "tick_count": [b.count for _, b in items],
        "source": [b.source for _, b in items],
    }
