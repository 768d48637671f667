"""Portfolios as the user sees them: opening, naming, paper cash, reset, and the valuation with its day change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text

from core.db.database import Database, raw_connection, run_sql
from core.db.identity import resolve_identity
from core.errors import DomainError
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.paper import PaperBroker
from core.portfolio import service
from tests.core.orders.conftest import Clock

D = Decimal
STALE = timedelta(seconds=30)


@pytest.fixture
async def user(db: Database, market: Any) -> UUID:
    return await resolve_identity(db, console_handle="carol")


async def test_the_default_portfolio_is_opened_once_with_starting_cash(db: Database, user: UUID) -> None:
    async with db.user_scope(user) as s:
        first = await service.default_portfolio(s, D(100000))
    async with db.user_scope(user) as s:
        again = await service.default_portfolio(s, D(5))
        listed = await service.list_portfolios(s)
    assert first.id == again.id and first.cash == D(100000) and first.is_default and first.name == "Main"
    assert [p.id for p in listed] == [first.id]


async def test_open_rename_and_find_by_name(db: Database, user: UUID) -> None:
    async with db.user_scope(user) as s:
        main = await service.default_portfolio(s, D(1000))
        swing = await service.open_portfolio(s, "  swing   trades ", D(500))
        assert swing.name == "swing trades" and not swing.is_default
        assert (await service.find_portfolio(s, "SWING TRADES", D(0))).id == swing.id
        assert (await service.find_portfolio(s, None, D(0))).id == main.id
        renamed = await service.rename_portfolio(s, swing.id, "Swing")
        assert renamed.name == "Swing"
        audit = await (await raw_connection(s)).fetch(
            "SELECT action, detail->>'name' AS name FROM audit_log ORDER BY id"
        )
        assert [(a["action"], a["name"]) for a in audit][-1] == ("portfolio.renamed", "Swing")
    for bad, code in [("", "invalid_input"), ("x" * 41, "invalid_input"), ("Main", "conflict")]:
        with pytest.raises(DomainError) as info:
            async with db.user_scope(user) as s:
                await service.rename_portfolio(s, swing.id, bad)
        assert info.value.code == code
    with pytest.raises(DomainError, match="already have a portfolio named Main"):
        async with db.user_scope(user) as s:
            await service.open_portfolio(s, "Main", D(0))
    with pytest.raises(DomainError, match="no portfolio named nope"):
        async with db.user_scope(user) as s:
            await service.find_portfolio(s, "nope", D(0))


async def test_deposit_withdraw_and_their_limits(db: Database, user: UUID, broker: PaperBroker) -> None:
    async with db.user_scope(user) as s:
        pf = await service.default_portfolio(s, D(1000))
        assert (await service.deposit(s, pf.id, D("250.50"))).cash == D("1250.50")
        assert (await service.withdraw(s, pf.id, D("50.50"))).cash == D(1200)
        await broker.submit(
            s, OrderRequest(pf.id, "AAPL", Side.BUY, OrderType.LIMIT, D(5), TimeInForce.GTC, limit_price=D("150.00"))
        )
    cases = [
        # 750.75 of the 1,200 is held for the open buy: 5 x 150.00 plus the broker's 10 bp fee.
        (partial(service.withdraw, costs=broker.costs), D("450"), "withdraw at most \\$449.25"),
        (service.deposit, D("0.001"), "dollars and cents"),
        (service.deposit, D(-5), "positive"),
        (service.deposit, D("100000001"), "up to \\$100,000,000"),
    ]
    for operation, amount, message in cases:
        with pytest.raises(DomainError, match=message):
            async with db.user_scope(user) as s:
                await operation(s, pf.id, amount)
    async with db.user_scope(user) as s:
        conn = await raw_connection(s)
        assert await conn.fetchval("SELECT cash FROM portfolios") == D(1200)
        kinds = [r[0] for r in await conn.fetch("SELECT kind FROM cash_ledger ORDER BY id")]
    assert kinds == ["deposit", "deposit", "withdrawal"]


async def test_reset_cancels_orders_clears_positions_and_resets_cash(
    db: Database, user: UUID, broker: PaperBroker, clock: Clock
) -> None:
    async with db.user_scope(user) as s:
        pf = await service.default_portfolio(s, D(10000))
        await broker.submit(s, OrderRequest(pf.id, "AAPL", Side.BUY, OrderType.MARKET, D(3)))
        resting = await broker.submit(
            s, OrderRequest(pf.id, "AAPL", Side.BUY, OrderType.LIMIT, D(1), TimeInForce.GTC, limit_price=D("150.00"))
        )
        reset = await service.reset_portfolio(s, pf.id, D(50000), clock())
        view = await service.value_portfolio(s, pf.id, now=clock(), stale_after=STALE)
        order = await broker.get(s, resting.id)
    assert reset.cash == D(50000) and view.positions == [] and view.equity == D(50000)
    assert order is not None and order.status == "canceled"
    assert view.realized_pnl + view.unrealized_pnl == view.equity - view.net_deposits


async def test_valuation_states_method_as_of_simulation_and_staleness(
    db: Database, user: UUID, broker: PaperBroker, market: Any, clock: Clock
) -> None:
    async with db.user_scope(user) as s:
        pf = await service.default_portfolio(s, D(10000))
        await broker.submit(s, OrderRequest(pf.id, "AAPL", Side.BUY, OrderType.MARKET, D(10)))
    await market("AAPL", "210.00", age_s=45)
    async with db.user_scope(user) as s:
        view = await service.value_portfolio(s, pf.id, now=clock(), stale_after=STALE)
    (position,) = view.positions
    assert view.cost_basis_method == "average cost (fees included)"
    assert position.price == D(210) and position.stale and position.price_source == "sim" and view.simulated
    assert view.as_of == clock() - timedelta(seconds=45)
    assert position.market_value == D(2100) and view.market_value == D(2100)
    assert position.unrealized_pnl == D(2100) - D("2003.00")  # bought at 200.10 + 2.00 fee
    assert view.equity == view.cash + D(2100) == D(10000) - D("2003.00") + D(2100)
    assert view.day_change is None  # no snapshot before today's start yet


async def test_day_change_counts_from_midnight_in_the_users_timezone_without_deposits(
    db: Database, user: UUID, broker: PaperBroker, clock: Clock
) -> None:
    async with db.user_scope(user) as s:
        await run_sql(s, text("UPDATE users SET timezone = 'America/New_York'"))
        pf = await service.default_portfolio(s, D(10000))
    async with db.system_scope("test.history") as s:  # the portfolio was funded last week
        await run_sql(s, text("UPDATE cash_ledger SET created_at = '2026-11-18T12:00Z'"))
    # Snapshots at 23:00 and 05:30 UTC: only the first is before midnight in New York (05:00 UTC).
    async with db.system_scope("test.snapshots") as s:
        await service.snapshot_equity(s, datetime(2026, 11, 24, 23, 0, tzinfo=UTC))
    async with db.user_scope(user) as s:
        await service.deposit(s, pf.id, D(1000))  # today: moved money, not a gain
    async with db.system_scope("test.snapshots") as s:
        assert await service.snapshot_equity(s, datetime(2026, 11, 25, 5, 30, tzinfo=UTC)) == 1
    async with db.user_scope(user) as s:
        await broker.submit(s, OrderRequest(pf.id, "AAPL", Side.BUY, OrderType.MARKET, D(10)))
        view = await service.value_portfolio(s, pf.id, now=clock(), stale_after=STALE)
    # Opening equity 10,000; a 1,000 deposit doesn't count; buying 10 at 200.10 with a 2.00 fee, marked at 200.00.
    assert view.day_change == D(2000) - D("2003.00")


async def test_resetting_to_the_same_cash_still_starts_the_books_over(
    db: Database, user: UUID, broker: PaperBroker, clock: Clock
) -> None:
    async with db.user_scope(user) as s:
        pf = await service.default_portfolio(s, D(10000))
        await service.deposit(s, pf.id, D(5000))
        await broker.submit(s, OrderRequest(pf.id, "AAPL", Side.BUY, OrderType.MARKET, D(20)))
        cash = (await service.value_portfolio(s, pf.id, now=clock(), stale_after=STALE)).cash
        await service.reset_portfolio(s, pf.id, cash, clock())
        view = await service.value_portfolio(s, pf.id, now=clock(), stale_after=STALE)
    assert view.positions == [] and view.equity == cash == view.net_deposits
    assert view.realized_pnl + view.unrealized_pnl == view.equity - view.net_deposits == 0
