"""QuoteSource: last prices from the database (as the bot and the web app read them) and from the worker's bus,
marked stale by an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db.database import Database, run_sql
from core.market.bus import TickBus
from core.market.quotes import BusQuoteSource, DbQuoteSource, QuoteSource
from core.market.ticks import Quote, Tick
from tests.helpers import Clock

TS = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


async def set_last_price(db: Database, symbol: str, price: str, source: str = "sim") -> None:
    async with db.system_scope("test.last_price") as session:
        await run_sql(
            session,
            text("INSERT INTO last_prices (symbol, price, ts, source) VALUES (:s, :p, :ts, :src)"),
            {"s": symbol, "p": Decimal(price), "ts": TS, "src": source},
        )


async def test_db_quotes_turn_stale_after_the_window(db: Database) -> None:
    await set_last_price(db, "AAPL", "231.07")
    await set_last_price(db, "BTC-USDT", "90412.35", source="binance")
    clock = Clock(TS + timedelta(seconds=30))
    quotes: QuoteSource = DbQuoteSource(db, stale_after_s=30, clock=clock)

    fresh = await quotes.quote("AAPL")
    assert fresh == Quote("AAPL", Decimal("231.07"), TS, "sim", stale=False)
    assert fresh.simulated

    clock.at += timedelta(microseconds=1)
    assert (await quotes.quote("AAPL")) == Quote("AAPL", Decimal("231.07"), TS, "sim", stale=True)
    assert await quotes.quote("MSFT") is None  # never traded
    both = await quotes.quotes(["AAPL", "BTC-USDT", "MSFT"])
    assert set(both) == {"AAPL", "BTC-USDT"} and not both["BTC-USDT"].simulated
    assert await quotes.quotes([]) == {}


async def test_db_quotes_need_no_scope_but_only_read(db: Database) -> None:
    """tradedesk_user, the pool's default role, reads last_prices and can't write it (the worker does)."""
    await set_last_price(db, "AAPL", "231.07")
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT current_user, count(*) FROM last_prices"))).one() == (
            "tradedesk_user",
            1,
        )
        with pytest.raises(DBAPIError, match="permission denied"):
            await conn.execute(text("UPDATE last_prices SET price = 1"))


async def test_bus_quotes() -> None:
    bus = TickBus()
    clock = Clock(TS + timedelta(seconds=5))
    quotes: QuoteSource = BusQuoteSource(bus, stale_after_s=2, clock=clock)
    assert await quotes.quote("ETH-USD") is None
    bus.publish(Tick("ETH-USD", Decimal("3001.10"), Decimal("0.5"), TS + timedelta(seconds=4), "sim"))
    assert await quotes.quote("ETH-USD") == Quote(
        "ETH-USD", Decimal("3001.10"), TS + timedelta(seconds=4), "sim", False
    )
    clock.at += timedelta(seconds=2)
    assert (await quotes.quotes(["ETH-USD", "AAPL"]))["ETH-USD"].stale
