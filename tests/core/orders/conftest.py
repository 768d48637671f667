"""Fixtures for broker tests: instruments, prices set as the feed would, users with funded paper portfolios."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text

from core.db.database import Database, raw_connection, run_sql
from core.db.identity import resolve_identity
from core.market.sessions import MarketHours
from core.orders.paper import BrokerCosts, PaperBroker
from tests.core.db.world import seed_reference
from tests.helpers import Clock

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in New York: the US market is open


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def broker(clock: Clock) -> PaperBroker:
    # A real calendar (not always-open) so session rules are exercised; fee 10 bps, slippage 5 bps.
    return PaperBroker(
        MarketHours(always_open=False, clock=clock),
        BrokerCosts(fee_bps=Decimal(10), slippage_bps=Decimal(5), stale_after=timedelta(seconds=30)),
    )


@pytest.fixture
async def market(db: Database, clock: Clock) -> Callable[..., Any]:
    await seed_reference(db)

    async def set_price(symbol: str, price: str, *, age_s: float = 0) -> None:
        async with db.system_scope("test.set_price") as s:
            await run_sql(
                s,
                text(
                    "INSERT INTO last_prices (symbol, price, ts, source) VALUES (:s, :p, :ts, 'sim') "
                    "ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, ts = EXCLUDED.ts"
                ),
                {"s": symbol, "p": Decimal(price), "ts": clock() - timedelta(seconds=age_s)},
            )

    await set_price("AAPL", "200.00")
    await set_price("MSFT", "400.00")
    await set_price("BTC-USD", "90000.00")
    return set_price


async def new_trader(db: Database, handle: str, cash: str = "10000") -> tuple[UUID, UUID]:
    user = await resolve_identity(db, console_handle=handle)
    async with db.user_scope(user) as s:
        conn = await raw_connection(s)
        portfolio = await conn.fetchval("SELECT id FROM open_portfolio('Main', $1::numeric, false)", Decimal(cash))
    return user, portfolio


@pytest.fixture
async def trader(db: Database, market: Any) -> tuple[UUID, UUID]:
    return await new_trader(db, "alice")
