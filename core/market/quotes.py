"""Where prices come from outside the feed: `QuoteSource`, the one way the bot, the web app and the tools ask.

`DbQuoteSource` reads last_prices, which the worker's feed keeps current (core/market/persist.py), so it works in
any role and any process. `BusQuoteSource` answers from the worker's own bus, for code that runs beside the feed.
Both mark a quote stale when its tick is older than the staleness window, as the broker's SQL does (fresh while
`ts >= now - stale_after`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg
from sqlalchemy import text

from core.db.database import Database
from core.market.bus import TickBus
from core.market.sessions import Clock, utc_clock
from core.market.ticks import Quote

_SELECT = text("SELECT symbol, price, ts, source FROM last_prices WHERE symbol = ANY(CAST(:symbols AS text[]))")


class QuoteSource(Protocol):
    async def quote(self, symbol: str) -> Quote | None:
        """The last price of `symbol` (canonical), or None when there has never been one."""
        ...

    async def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """The quotes of those `symbols` that have one."""
        ...


class DbQuoteSource:
    """Quotes from last_prices: reference data that tradedesk_user may read, so no scope is needed."""

    def __init__(self, database: Database, stale_after_s: float, clock: Clock = utc_clock) -> None:
        self.database = database
        self.stale_after = timedelta(seconds=stale_after_s)
        self.clock = clock

    async def quote(self, symbol: str) -> Quote | None:
        return (await self.quotes([symbol])).get(symbol)

    async def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        if not symbols:
            return {}
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(_SELECT, {"symbols": list(symbols)})).all()
        oldest_fresh = self.clock() - self.stale_after
        return {r.symbol: Quote(r.symbol, r.price, r.ts, r.source, stale=_is_stale(r.ts, oldest_fresh)) for r in rows}


class BusQuoteSource:
    """Quotes from the worker's tick bus: the newest tick this process has seen."""

    def __init__(self, bus: TickBus, stale_after_s: float, clock: Clock = utc_clock) -> None:
        self.bus = bus
        self.stale_after = timedelta(seconds=stale_after_s)
        self.clock = clock

    async def quote(self, symbol: str) -> Quote | None:
        tick = self.bus.last(symbol)
        if tick is None:
            return None
        return Quote(
            tick.symbol, tick.price, tick.ts, tick.source, stale=_is_stale(tick.ts, self.clock() - self.stale_after)
        )

    async def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        found = {s: await self.quote(s) for s in symbols}
        return {s: q for s, q in found.items() if q is not None}


async def read_quote(conn: asyncpg.Connection, symbol: str, *, now: datetime, stale_after: timedelta) -> Quote | None:
    """A quote read on the caller's own connection, inside its transaction (last_prices, as DbQuoteSource reads it):
    for code that holds row locks and must not wait for a second pooled connection."""
    row = await conn.fetchrow("SELECT symbol, price, ts, source FROM last_prices WHERE symbol = $1", symbol)
    if row is None:
        return None
    return Quote(row["symbol"], row["price"], row["ts"], row["source"], stale=_is_stale(row["ts"], now - stale_after))


def _is_stale(ts: datetime, oldest_fresh: datetime) -> bool:
    return ts < oldest_fresh
