"""A Desk on a fresh test database with prices in last_prices, and a ToolContext for the console user alice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from core.db.database import Database, run_sql
from core.db.identity import resolve_identity
from core.market.quotes import DbQuoteSource
from core.market.sessions import MarketHours
from core.orders.paper import BrokerCosts, PaperBroker
from tests.helpers import Clock
from tools.context import ToolContext
from tools.desk import Desk, DeskConfig

STARTING_CASH = Decimal(100_000)
PRICES = {"AAPL": "200.00", "MSFT": "400.00", "TSLA": "250.00", "BTC-USD": "90000.00", "ETH-USD": "3000.00"}


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def desk(db: Database, clock: Clock) -> Desk:
    async with db.system_scope("test.prices") as s:
        for symbol, price in PRICES.items():
            await run_sql(
                s,
                text("INSERT INTO last_prices (symbol, price, ts, source) VALUES (:s, :p, :ts, 'sim')"),
                {"s": symbol, "p": Decimal(price), "ts": clock()},
            )
    return Desk(
        db,
        DbQuoteSource(db, stale_after_s=30, clock=clock),
        PaperBroker(MarketHours(always_open=True, clock=clock), BrokerCosts(stale_after=timedelta(seconds=30))),
        DeskConfig(starting_cash=STARTING_CASH, stale_after=timedelta(seconds=30)),
        clock=clock,
    )


@pytest.fixture
async def ctx(db: Database, desk: Desk) -> ToolContext:
    return ToolContext(user_id=await resolve_identity(db, console_handle="alice"), desk=desk)
