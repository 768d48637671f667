"""Accounting invariants under any sequence of deposits, withdrawals, resets, orders, fills and price moves.

For every portfolio, after every step: cash + market value = equity; realized + unrealized P&L = equity - net
deposits, to the last decimal; each position's quantity is the signed sum of its fills; cash equals the ledger's sum
and never goes negative. Run on the real database through the real broker and matcher.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.db.database import Database, raw_connection
from core.errors import DomainError
from core.market.ticks import Tick
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.matching import Matcher
from core.orders.paper import PaperBroker
from core.portfolio import service
from tests.core.orders.conftest import Clock, new_trader

D = Decimal
_handles = itertools.count()

cents = st.integers(min_value=1, max_value=500_000).map(lambda c: D(c) / 100)
steps = st.one_of(
    st.tuples(st.just("deposit"), cents),
    st.tuples(st.just("withdraw"), cents),
    st.tuples(st.just("reset"), cents),
    st.tuples(st.just("buy"), st.sampled_from(["AAPL", "BTC-USD"]), st.integers(1, 40)),
    st.tuples(st.just("sell"), st.sampled_from(["AAPL", "BTC-USD"]), st.integers(1, 40)),
    st.tuples(
        st.just("limit"),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["AAPL", "BTC-USD"]),
        st.integers(1, 20),
        st.integers(-300, 300),
    ),
    st.tuples(st.just("price"), st.sampled_from(["AAPL", "BTC-USD"]), st.integers(-800, 800)),
)


def quantity(symbol: str, n: int) -> Decimal:
    return D(n) if symbol == "AAPL" else D(n) / 1000  # fractional bitcoin, a multiple of its 0.00001 lot


async def check_invariants(db: Database, user: UUID, pf: UUID, clock: Clock) -> None:
    async with db.user_scope(user) as s:
        view = await service.value_portfolio(s, pf, now=clock(), stale_after=timedelta(days=1))
        conn = await raw_connection(s)
        ledger = await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM cash_ledger WHERE portfolio_id = $1", pf)
        fills = {
            r["symbol"]: r["qty"]
            for r in await conn.fetch(
                # Since the last reset, which closes positions out of the books (fills keep their history).
                "SELECT f.symbol, sum(CASE f.side WHEN 'buy' THEN f.qty ELSE -f.qty END) AS qty FROM fills f "
                "JOIN cash_ledger l ON l.fill_id = f.id WHERE f.portfolio_id = $1 AND l.id > coalesce("
                "(SELECT max(id) FROM cash_ledger WHERE portfolio_id = $1 AND kind = 'reset'), 0) GROUP BY f.symbol",
                pf,
            )
        }
    assert view.complete
    event(f"positions held: {sum(1 for p in view.positions if p.qty != 0)}")
    assert view.cash >= 0 and view.cash == ledger
    assert view.cash + view.market_value == view.equity
    assert view.realized_pnl + view.unrealized_pnl == view.equity - view.net_deposits
    assert {p.symbol: p.qty for p in view.positions if p.qty != 0} == {s: q for s, q in fills.items() if q != 0}
    for p in view.positions:
        assert p.qty >= 0 and p.cost_basis >= 0 and (p.qty != 0 or p.cost_basis == 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(steps, min_size=1, max_size=14))
async def test_books_balance_after_any_sequence(
    plan: list[tuple[Any, ...]], db: Database, broker: PaperBroker, market: Any, clock: Clock
) -> None:
    user, pf = await new_trader(db, f"prop{next(_handles)}", cash="25000")
    matcher = Matcher(db, broker.hours, broker.costs)
    prices = {"AAPL": D("200.00"), "BTC-USD": D("90000.00")}
    for symbol, price in prices.items():
        await market(symbol, str(price))
    await matcher.reload()
    for step in plan:
        try:
            async with db.user_scope(user) as s:
                match step:
                    case ("deposit", amount):
                        await service.deposit(s, pf, amount)
                    case ("withdraw", amount):
                        await service.withdraw(s, pf, amount)
                    case ("reset", amount):
                        await service.reset_portfolio(s, pf, amount, clock())
                    case ("buy" | "sell" as side, symbol, n):
                        await broker.submit(
                            s, OrderRequest(pf, symbol, Side(side), OrderType.MARKET, quantity(symbol, n))
                        )
                    case ("limit", side, symbol, n, offset_bp):
                        level = (prices[symbol] * (1 + D(offset_bp) / 10000)).quantize(D("0.01"))
                        order = await broker.submit(
                            s,
                            OrderRequest(
                                pf,
                                symbol,
                                Side(side),
                                OrderType.LIMIT,
                                quantity(symbol, n),
                                tif=TimeInForce.GTC,
                                limit_price=level,
                            ),
                        )
                        if order.status == "new":
                            await matcher.on_change(f"orders:{order.id}")
            if step[0] == "reset":
                await matcher.on_change(f"portfolios:{pf}")
        except DomainError:
            pass  # refused orders and withdrawals are part of the game; they must leave the books as they were
        if step[0] == "price":
            _, symbol, move_bp = step
            prices[symbol] = max(D("1.00"), (prices[symbol] * (1 + D(move_bp) / 10000)).quantize(D("0.01")))
            await market(symbol, str(prices[symbol]))
            await matcher.on_tick(Tick(symbol, prices[symbol], D(1), clock(), "sim"))
        await check_invariants(db, user, pf, clock)
