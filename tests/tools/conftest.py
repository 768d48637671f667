"""A Desk on a fresh test database with prices in last_prices; a ToolContext for the console user alice, and a
World with two users for the agent's tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from sqlalchemy import text

from core.db.database import Database, run_sql
from core.db.identity import resolve_identity
from core.market.quotes import DbQuoteSource
from core.market.sessions import MarketHours
from core.orders.broker import Side
from core.orders.paper import BrokerCosts, PaperBroker
from core.orders.proposals import Confirmed
from tests.helpers import Clock
from tools.context import ToolContext
from tools.desk import Desk, DeskConfig, OrderDraft

STARTING_CASH = Decimal(100_000)
PRICES = {"AAPL": "200.00", "MSFT": "400.00", "TSLA": "250.00", "BTC-USD": "90000.00", "ETH-USD": "3000.00"}


async def set_price(db: Database, clock: Clock, symbol: str, price: str) -> None:
    async with db.system_scope("test.set_price") as s:
        await run_sql(
            s,
            text(
                "INSERT INTO last_prices (symbol, price, ts, source) VALUES (:s, :p, :ts, 'sim') "
                "ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, ts = EXCLUDED.ts"
            ),
            {"s": symbol, "p": Decimal(price), "ts": clock()},
        )


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def desk(db: Database, clock: Clock) -> Desk:
    for symbol, price in PRICES.items():
        await set_price(db, clock, symbol, price)
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


@dataclass
class World:
    db: Database
    desk: Desk
    clock: Clock
    alice: UUID
    bob: UUID

    def ctx(self, user: UUID | None = None) -> ToolContext:
        return ToolContext(user or self.alice, self.desk)

    async def set_price(self, symbol: str, price: str) -> None:
        await set_price(self.db, self.clock, symbol, price)

    async def buy(self, user: UUID, symbol: str, qty: str) -> None:
        proposal = await self.desk.propose(user, OrderDraft(symbol=symbol, side=Side.BUY, qty=Decimal(qty)))
        assert isinstance(await self.desk.confirm(user, proposal.id), Confirmed)


@pytest.fixture
async def world(db: Database, desk: Desk, clock: Clock) -> World:
    alice = await resolve_identity(db, console_handle="alice")
    bob = await resolve_identity(db, console_handle="bob")
    return World(db, desk, clock, alice, bob)
