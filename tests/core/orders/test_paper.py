"""The paper broker on the real database, as the user (user_scope): order types, TIF, validation, idempotency,
cancel races and the books each fill writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from core.db.database import Database, raw_connection
from core.errors import DomainError
from core.live import LIVE, parse_live
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.models import OrderView as Order
from core.orders.paper import PaperBroker, expire_day_orders
from tests.core.orders.conftest import Clock, new_trader
from tests.core.test_live import heard

D = Decimal


async def submit(db: Database, broker: PaperBroker, user: UUID, portfolio: UUID, **kw: Any) -> Order:
    kw.setdefault("tif", TimeInForce.GTC)
    request = OrderRequest(portfolio_id=portfolio, **kw)
    async with db.user_scope(user) as s:
        return await broker.submit(s, request)


@dataclass
class Books:
    cash: Decimal
    ledger_sum: Decimal
    positions: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]]  # qty, avg_cost, cost_basis, realized
    fills: list[tuple[str, Decimal, Decimal, Decimal, Decimal]]  # side, qty, price, gross, fee
    orders: int
    audit: list[str]


async def books(db: Database, user: UUID, portfolio: UUID) -> Books:
    async with db.user_scope(user) as s:
        c = await raw_connection(s)
        cash = await c.fetchval("SELECT cash FROM portfolios WHERE id = $1", portfolio)
        ledger = await c.fetchval("SELECT coalesce(sum(amount), 0) FROM cash_ledger WHERE portfolio_id = $1", portfolio)
        positions = {
            r["symbol"]: (r["qty"], r["avg_cost"], r["cost_basis"], r["realized_pnl"])
            for r in await c.fetch("SELECT * FROM positions WHERE portfolio_id = $1", portfolio)
        }
        fills = [
            (r["side"], r["qty"], r["price"], r["gross"], r["fee"])
            for r in await c.fetch("SELECT * FROM fills WHERE portfolio_id = $1 ORDER BY executed_at, seq", portfolio)
        ]
        orders = await c.fetchval("SELECT count(*) FROM orders")
        audit = [r[0] for r in await c.fetch("SELECT action FROM audit_log ORDER BY id")]
    return Books(cash, ledger, positions, fills, orders, audit)


async def test_market_buy_fills_at_once_with_slippage_fee_and_exact_books(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    order = await submit(db, broker, user, pf, symbol="aapl", side=Side.BUY, type=OrderType.MARKET, qty=D(10))
    # 200.00 + 5 bps = 200.10; gross 2001.00; fee 10 bps = 2.00
    assert (order.status, order.filled_qty, order.avg_fill_price, order.quote_price) == ("filled", 10, D("200.10"), 200)
    b = await books(db, user, pf)
    assert b.fills == [("buy", 10, D("200.10"), D("2001.00"), D("2.00"))]
    assert b.cash == D("10000") - D("2003.00") == b.ledger_sum
    assert b.positions["AAPL"] == (10, D("200.3"), D("2003.00"), 0)
    # One audit row for the user's one action: the order as placed, with the fill it got at once.
    assert b.audit == ["portfolio.opened", "order.placed"]
    async with db.user_scope(user) as s:
        c = await raw_connection(s)
        row = await c.fetchrow(
            "SELECT actor, detail->>'order_id' AS order_id, detail->>'symbol' AS symbol, detail->>'quote' AS quote,"
            " detail->'filled'->>'fill_id' AS fill_id, detail->'filled'->>'price' AS price,"
            " detail->'filled'->>'fee' AS fee FROM audit_log WHERE action = 'order.placed'"
        )
        fill_id = await c.fetchval("SELECT id FROM fills WHERE order_id = $1", order.id)
    assert dict(row) == {
        "actor": "user",
        "order_id": str(order.id),
        "symbol": "AAPL",
        "quote": "200.0000000000",
        "fill_id": str(fill_id),
        "price": "200.1000000000",
        "fee": "2.00",
    }


async def test_selling_realizes_pnl_on_average_cost(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], market: Any
) -> None:
    user, pf = trader
    await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(10))
    await market("AAPL", "210.00")
    await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(10))
    await market("AAPL", "220.00")
    sell = await submit(db, broker, user, pf, symbol="AAPL", side=Side.SELL, type=OrderType.MARKET, qty=D(5))
    assert sell.avg_fill_price == D("219.89")  # 220.00 - 5 bps, to the cent tick
    b = await books(db, user, pf)
    # 210.00 + 5 bps = 210.105, half-even to the cent tick: 210.10; gross 2101.00 and fee 2.101 -> 2.10.
    buys = D("2003.00") + D("2103.10")
    proceeds = D("1099.45") - D("1.10")  # 5 x 219.89, fee 1.09945 -> 1.10
    qty, avg, basis, realized = b.positions["AAPL"]
    assert qty == 15
    assert realized == proceeds - buys / 4 == D("71.825")  # a quarter of the position takes a quarter of the basis
    assert basis == buys * 3 / 4
    assert avg == (basis / 15).quantize(D("1e-10"))
    assert b.cash == D(10000) - buys + proceeds == b.ledger_sum


async def test_fractional_crypto_quantities(db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]) -> None:
    user, pf = trader
    order = await submit(db, broker, user, pf, symbol="BTC-USD", side=Side.BUY, type=OrderType.MARKET, qty=D("0.015"))
    assert order.status == "filled" and order.filled_qty == D("0.015")
    sell = await submit(db, broker, user, pf, symbol="BTC-USD", side=Side.SELL, type=OrderType.MARKET, qty=D("0.00501"))
    assert sell.status == "filled"
    b = await books(db, user, pf)
    assert b.positions["BTC-USD"][0] == D("0.00999")
    assert b.cash == b.ledger_sum


async def test_limit_orders_rest_or_fill_never_worse_than_the_limit(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    resting = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(5), limit_price=D("190.00")
    )
    assert resting.status == "new" and resting.filled_qty == 0
    # Marketable: the last price (200.00) is under the limit; slippage would make it 200.10, capped at 200.05.
    capped = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(5), limit_price=D("200.05")
    )
    assert (capped.status, capped.avg_fill_price) == ("filled", D("200.05"))
    sell = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.SELL, type=OrderType.LIMIT, qty=D(5), limit_price=D("199.95")
    )
    assert (sell.status, sell.avg_fill_price) == ("filled", D("199.95"))


async def test_stop_orders_rest_above_or_below_the_market(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    stop = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.STOP, qty=D(1), stop_price=D("205.00")
    )
    assert stop.status == "new" and stop.stop_price == D("205.00")
    stop_limit = await submit(
        db,
        broker,
        user,
        pf,
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.STOP_LIMIT,
        qty=D(1),
        stop_price=D("205.00"),
        limit_price=D("206.00"),
    )
    assert stop_limit.status == "new"
    with pytest.raises(DomainError, match="A buy stop must be above the current price") as info:
        await submit(
            db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.STOP, qty=D(1), stop_price=D("195.00")
        )
    assert info.value.code == "invalid_price"


async def test_immediate_or_cancel(db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]) -> None:
    user, pf = trader
    filled = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1), tif=TimeInForce.IOC
    )
    assert filled.status == "filled"
    missed = await submit(
        db,
        broker,
        user,
        pf,
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.LIMIT,
        qty=D(1),
        limit_price=D("150.00"),
        tif=TimeInForce.IOC,
    )
    assert missed.status == "canceled" and missed.canceled_at is not None
    with pytest.raises(DomainError, match="only for market and limit") as info:
        await submit(
            db,
            broker,
            user,
            pf,
            symbol="AAPL",
            side=Side.BUY,
            type=OrderType.STOP,
            qty=D(1),
            stop_price=D("210.00"),
            tif=TimeInForce.IOC,
        )
    assert info.value.code == "invalid_order"


async def test_day_orders_expire_at_the_session_close_gtc_never(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    day = await submit(
        db,
        broker,
        user,
        pf,
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.LIMIT,
        qty=D(1),
        limit_price=D("150.00"),
        tif=TimeInForce.DAY,
    )
    assert day.expires_at == datetime(2026, 11, 25, 21, 0, tzinfo=UTC)  # 16:00 in New York
    crypto = await submit(
        db,
        broker,
        user,
        pf,
        symbol="BTC-USD",
        side=Side.BUY,
        type=OrderType.LIMIT,
        qty=D("0.001"),
        limit_price=D("80000.00"),
        tif=TimeInForce.DAY,
    )
    assert crypto.expires_at == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # crypto never closes: end of the UTC day
    gtc = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("150.00")
    )
    assert gtc.expires_at is None
    async with db.system_scope("test.expire") as s:
        c = await raw_connection(s)
        early = await c.fetch("SELECT id FROM expire_orders($1)", datetime(2026, 11, 25, 20, 59, tzinfo=UTC))
        late = await c.fetch("SELECT id FROM expire_orders($1)", datetime(2026, 11, 26, 0, 0, tzinfo=UTC))
    assert early == [] and {r["id"] for r in late} == {day.id, crypto.id}
    async with db.user_scope(user) as s:
        statuses = {o.id: o.status for o in await broker.orders(s)}
    assert statuses == {day.id: "expired", crypto.id: "expired", gtc.id: "new"}
    assert (await books(db, user, pf)).audit.count("order.expired") == 2


async def test_outside_the_session_orders_wait_for_the_open_and_ioc_is_refused(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], clock: Clock, market: Any
) -> None:
    user, pf = trader
    clock.at = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # Saturday
    await market("AAPL", "200.00", age_s=3600 * 20)  # Friday's last price: stale, which is fine while closed
    waiting = await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1))
    assert waiting.status == "new" and waiting.filled_qty == 0
    with pytest.raises(DomainError, match="market is closed") as info:
        await submit(
            db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1), tif=TimeInForce.IOC
        )
    assert info.value.code == "market_closed"
    await market("BTC-USD", "90000.00")
    crypto = await submit(db, broker, user, pf, symbol="BTC-USD", side=Side.BUY, type=OrderType.MARKET, qty=D("0.001"))
    assert crypto.status == "filled"  # crypto trades on Saturdays


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"symbol": "ZZZZ"}, "unknown_symbol", "ZZZZ is not a symbol TradeDesk trades"),
        ({"qty": D(0)}, "invalid_quantity", "greater than zero"),
        ({"qty": D(-3)}, "invalid_quantity", "greater than zero"),
        ({"qty": D("1.5")}, "invalid_quantity", "AAPL trades in multiples of 1"),
        ({"symbol": "BTC-USD", "qty": D("0.000015")}, "invalid_quantity", "multiples of 0.00001"),
        ({"symbol": "BTC-USD", "qty": D("0.00001")}, "invalid_quantity", "smallest order TradeDesk takes is worth"),
        ({"type": OrderType.LIMIT, "limit_price": D("199.999")}, "invalid_price", "steps of 0.01"),
        ({"type": OrderType.LIMIT}, "invalid_order", "needs a limit price"),
        ({"limit_price": D("1.00")}, "invalid_order", "Only limit and stop-limit orders take a limit price"),
        ({"type": OrderType.STOP}, "invalid_order", "needs a stop price"),
        ({"qty": D(100)}, "insufficient_buying_power", "Not enough buying power"),
        ({"side": Side.SELL}, "insufficient_position", "You can sell at most 0 AAPL"),
    ],
)
async def test_each_invalid_order_is_refused_clearly_and_writes_nothing(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], kwargs: dict[str, Any], code: str, message: str
) -> None:
    user, pf = trader
    order = {"symbol": "AAPL", "side": Side.BUY, "type": OrderType.MARKET, "qty": D(1)} | kwargs
    before = await books(db, user, pf)
    with pytest.raises(DomainError, match=message) as info:
        await submit(db, broker, user, pf, **order)
    assert info.value.code == code
    assert await books(db, user, pf) == before


async def test_stale_or_missing_quotes_are_refused_while_the_market_is_open(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], market: Any
) -> None:
    user, pf = trader
    await market("AAPL", "200.00", age_s=31)
    with pytest.raises(DomainError, match="no recent price for AAPL") as info:
        await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1))
    assert info.value.code == "quote_unavailable"
    await market("AAPL", "200.00", age_s=29)
    assert (
        await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1))
    ).status == "filled"


async def test_buying_power_counts_open_buy_orders_and_sells_count_open_sells(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    # 10,000 cash: a resting buy of 45 x 190 (+fee) holds 8,558.55 of it.
    await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(45), limit_price=D("190.00")
    )
    with pytest.raises(DomainError, match=r"available") as info:
        await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(8))
    assert info.value.code == "insufficient_buying_power"
    await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(7))
    await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.SELL, type=OrderType.LIMIT, qty=D(5), limit_price=D("250.00")
    )
    with pytest.raises(DomainError, match=r"at most 2 AAPL \(7 held, 5 already in open sell orders\)"):
        await submit(db, broker, user, pf, symbol="AAPL", side=Side.SELL, type=OrderType.MARKET, qty=D(3))


async def test_a_retried_client_order_id_returns_the_first_order(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    first = await submit(
        db,
        broker,
        user,
        pf,
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.MARKET,
        qty=D(2),
        client_order_id="proposal-123",
    )
    again = await submit(
        db,
        broker,
        user,
        pf,
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.MARKET,
        qty=D(2),
        client_order_id="proposal-123",
    )
    assert again.id == first.id
    b = await books(db, user, pf)
    assert b.orders == 1 and len(b.fills) == 1


async def test_concurrent_submissions_of_one_client_order_id_make_one_order(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    orders = await asyncio.gather(
        *(
            submit(
                db,
                broker,
                user,
                pf,
                symbol="AAPL",
                side=Side.BUY,
                type=OrderType.MARKET,
                qty=D(1),
                client_order_id="double-click",
            )
            for _ in range(4)
        )
    )
    assert len({o.id for o in orders}) == 1
    b = await books(db, user, pf)
    assert b.orders == 1 and len(b.fills) == 1


async def test_cancel_own_open_orders_only(db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]) -> None:
    user, pf = trader
    bob, bob_pf = await new_trader(db, "bob")
    resting = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("150.00")
    )
    bobs = await submit(
        db, broker, bob, bob_pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("150.00")
    )
    filled = await submit(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1))
    async with db.user_scope(user) as s:
        with pytest.raises(DomainError, match="does not exist") as info:
            await broker.cancel(s, bobs.id)
        assert info.value.code == "not_found"
    async with db.user_scope(user) as s:
        with pytest.raises(DomainError, match="already filled") as info:
            await broker.cancel(s, filled.id)
        assert info.value.code == "order_not_open"
    async with db.user_scope(user) as s:
        canceled = await broker.cancel(s, resting.id)
    assert canceled.status == "canceled"
    async with db.user_scope(bob) as s:
        assert (await broker.get(s, bobs.id)).status == "new"  # type: ignore[union-attr]


async def test_a_fill_cannot_be_applied_twice(db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]) -> None:
    user, pf = trader
    resting = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(2), limit_price=D("190.00")
    )
    at = datetime(2026, 11, 25, 15, 1, tzinfo=UTC)
    async with db.system_scope("test.fill") as s:
        c = await raw_connection(s)
        first = await c.fetchrow("SELECT * FROM apply_fill($1, 189.50, $2, 10)", resting.id, at)
        second = await c.fetchrow("SELECT * FROM apply_fill($1, 189.50, $2, 10)", resting.id, at)
    assert first["id"] is not None and second["id"] is None
    assert len((await books(db, user, pf)).fills) == 1


async def test_cancel_and_fill_racing_on_one_order_exactly_one_wins(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, pf = trader
    outcomes = set()
    for _ in range(6):
        order = await submit(
            db,
            broker,
            user,
            pf,
            symbol="AAPL",
            side=Side.BUY,
            type=OrderType.LIMIT,
            qty=D(1),
            limit_price=D("190.00"),
            client_order_id=str(uuid4()),
        )

        async def fill(order_id: UUID = order.id) -> str:
            async with db.system_scope("test.fill") as s:
                row = await (await raw_connection(s)).fetchrow(
                    "SELECT * FROM apply_fill($1, 190.00, now(), 10)", order_id
                )
            return "filled" if row["id"] is not None else "lost"

        async def cancel(order_id: UUID = order.id) -> str:
            try:
                async with db.user_scope(user) as s:
                    await broker.cancel(s, order_id)
            except DomainError as exc:
                assert exc.code == "order_not_open"
                return "lost"
            return "canceled"

        results = await asyncio.gather(fill(), cancel())
        assert sorted(results) in (["filled", "lost"], ["canceled", "lost"]), results
        outcomes.add(tuple(results))
        async with db.user_scope(user) as s:
            final = await broker.get(s, order.id)
            n_fills = await (await raw_connection(s)).fetchval(
                "SELECT count(*) FROM fills WHERE order_id = $1", order.id
            )
        assert final is not None and final.status in results and n_fills == (final.status == "filled")
    b = await books(db, user, pf)
    assert b.cash == b.ledger_sum


async def test_another_users_portfolio_is_not_found(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID]
) -> None:
    user, _ = trader
    _, bob_pf = await new_trader(db, "bob")
    with pytest.raises(DomainError, match="portfolio does not exist") as info:
        await submit(db, broker, user, bob_pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1))
    assert info.value.code == "not_found"


async def test_expiring_day_orders_tells_live_pages_once_with_the_owners(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], clock: Clock, market: Any
) -> None:
    user, pf = trader
    day = await submit(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("150.00"),
        tif=TimeInForce.DAY,
    )  # fmt: skip
    async with heard(db, LIVE) as queue:
        async with db.system_scope("orders.expiry") as s:
            assert await expire_day_orders(s, datetime(2026, 11, 26, 0, 0, tzinfo=UTC)) == [day.id]
        payload = await asyncio.wait_for(queue.get(), 10)
    assert parse_live(payload) == {user: {"orders", "portfolio"}}
