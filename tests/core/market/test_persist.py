"""Persistence of last prices and 1-minute bars: throttled to one transaction per flush, exact OHLCV, and merging
across flushes and failures. Statements are counted with SQLAlchemy's own cursor events on the real engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text

from core.db.database import Database
from core.market.bus import TickBus
from core.market.persist import PricePersister
from core.market.ticks import Tick
from tests.conftest import PgCluster
from tests.core.market.wire import until

MINUTE = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def tick(symbol: str, price: str, size: str, at: datetime) -> Tick:
    return Tick(symbol, Decimal(price), Decimal(size), at, "sim")


class Statements:
    """Every statement the engine sends, as SQLAlchemy reports it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)

    def writing(self, table: str) -> int:
        return sum(f"INSERT INTO {table}" in s for s in self.seen)


@pytest.fixture
def statements(db: Database) -> Iterator[Statements]:
    counter = Statements()
    event.listen(db.engine.sync_engine, "before_cursor_execute", counter)
    yield counter
    event.remove(db.engine.sync_engine, "before_cursor_execute", counter)


async def rows(db: Database, sql: str) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql))).mappings()]


async def test_many_ticks_cost_one_upsert_per_table_per_flush(db: Database, statements: Statements) -> None:
    bus = TickBus()
    persister = PricePersister(db, bus, flush_every_s=0.2)
    persister.start()
    # AAPL trades through two minutes, BTC-USD through one: 2,000 ticks in all, published in a few bursts.
    published = 0
    try:
        for burst in range(4):
            for i in range(500):
                n = burst * 500 + i
                at = MINUTE + timedelta(seconds=n * 0.05)  # 2,000 ticks over 100 s
                bus.publish(tick("AAPL", f"{230 + (n % 97) / 100:.2f}", "3", at))
                if n % 4 == 0:
                    bus.publish(tick("BTC-USD", f"{90000 + n % 13}.50", "0.00125", MINUTE + timedelta(seconds=n % 60)))
                published += 1
            await asyncio.sleep(0.05)
        await until(lambda: persister.backlog == 0, what="ticks folded in")
    finally:
        await persister.stop()

    assert persister.flushes <= 6  # the throttle: a handful of flushes for 2,500 ticks
    assert statements.writing("last_prices") == persister.flushes
    assert statements.writing("price_bars") == persister.flushes

    last = {r["symbol"]: r for r in await rows(db, "SELECT * FROM last_prices")}
    assert last["AAPL"]["price"] == Decimal(f"{230 + (1999 % 97) / 100:.2f}")
    assert last["AAPL"]["ts"] == MINUTE + timedelta(seconds=1999 * 0.05)
    assert last["BTC-USD"]["size"] == Decimal("0.00125") and last["BTC-USD"]["source"] == "sim"

    bars = {(r["symbol"], r["minute"]): r for r in await rows(db, "SELECT * FROM price_bars")}
    first = [230 + (n % 97) / 100 for n in range(0, 1200)]  # the first 60 s: n * 0.05 < 60
    second = [230 + (n % 97) / 100 for n in range(1200, 2000)]
    for key, prices in (((("AAPL", MINUTE)), first), (("AAPL", MINUTE + timedelta(minutes=1)), second)):
        bar = bars[key]
        expected = [Decimal(f"{p:.2f}") for p in (prices[0], max(prices), min(prices), prices[-1])]
        assert [bar["open"], bar["high"], bar["low"], bar["close"]] == expected
        assert bar["volume"] == 3 * len(prices) and bar["tick_count"] == len(prices)
    btc = bars[("BTC-USD", MINUTE)]
    assert btc["tick_count"] == 500 and btc["volume"] == Decimal("0.625")


async def test_a_bar_merges_across_flushes_and_last_price_never_goes_back(db: Database) -> None:
    persister = PricePersister(db, TickBus())
    for price, second in (("100.00", 1), ("105.00", 2), ("99.00", 3)):
        persister.add(tick("MSFT", price, "10", MINUTE + timedelta(seconds=second)))
    assert await persister.flush()
    for price, second in (("98.50", 10), ("101.25", 11)):
        persister.add(tick("MSFT", price, "5", MINUTE + timedelta(seconds=second)))
    persister.add(tick("MSFT", "500.00", "1", MINUTE - timedelta(minutes=5)))  # a late tick of an older minute
    assert await persister.flush()

    [bar, older] = sorted(await rows(db, "SELECT * FROM price_bars WHERE symbol = 'MSFT'"), key=lambda r: r["minute"])[
        ::-1
    ]
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (
        Decimal("100.00"),
        Decimal("105.00"),
        Decimal("98.50"),
        Decimal("101.25"),
    )
    assert (bar["volume"], bar["tick_count"]) == (Decimal(40), 5)
    assert older["close"] == Decimal("500.00")
    [last] = await rows(db, "SELECT price, ts FROM last_prices WHERE symbol = 'MSFT'")
    assert last == {"price": Decimal("101.25"), "ts": MINUTE + timedelta(seconds=11)}


async def test_a_failed_flush_keeps_the_data_and_the_next_one_writes_it(
    db: Database, pg: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.market.persist")
    away = Database(pg.url("no_such_database"), pool_size=1, max_overflow=0)
    persister = PricePersister(away, TickBus())
    try:
        persister.add(tick("AAPL", "230.00", "1", MINUTE))
        assert not await persister.flush()
        persister.add(tick("AAPL", "231.00", "2", MINUTE + timedelta(seconds=5)))
        assert not await persister.flush()
    finally:
        await away.dispose()
    assert len([r for r in caplog.records if "writing prices failed" in r.getMessage()]) == 1

    persister.database = db  # the database is back
    assert await persister.flush()
    [bar] = await rows(db, "SELECT open, close, volume, tick_count FROM price_bars WHERE symbol = 'AAPL'")
    assert bar == {"open": Decimal("230.00"), "close": Decimal("231.00"), "volume": Decimal(3), "tick_count": 2}
    assert any("works again" in r.getMessage() for r in caplog.records)
