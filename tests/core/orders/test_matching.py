"""The worker's matcher on the real database: resting orders filled by ticks, changes followed across processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from core.db.database import Database, raw_connection
from core.db.listen import ChangeListener
from core.live import LIVE, parse_live
from core.market.ticks import Tick
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.matching import Matcher
from core.orders.models import OrderView as Order
from core.orders.paper import PaperBroker
from tests.conftest import PgCluster
from tests.core.orders.conftest import Clock, new_trader
from tests.core.test_live import heard
from tests.helpers import listening

D = Decimal


def tick(symbol: str, price: str, clock: Clock) -> Tick:
    return Tick(symbol, D(price), D(1), clock(), "sim")


async def place(db: Database, broker: PaperBroker, user: UUID, pf: UUID, **kw: Any) -> Order:
    kw.setdefault("tif", TimeInForce.GTC)
    async with db.user_scope(user) as s:
        return await broker.submit(s, OrderRequest(portfolio_id=pf, **kw))


async def status(db: Database, user: UUID, order_id: UUID) -> tuple[str, Decimal | None]:
    async with db.user_scope(user) as s:
        row = await (await raw_connection(s)).fetchrow(
            "SELECT status, avg_fill_price FROM orders WHERE id = $1", order_id
        )
    return row["status"], row["avg_fill_price"]


@pytest.fixture
async def matcher(db: Database, broker: PaperBroker, market: Any) -> Matcher:
    m = Matcher(db, broker.hours, broker.costs)
    await m.reload()
    return m


@pytest.fixture
async def following(matcher: Matcher, db: Database) -> AsyncIterator[ChangeListener]:
    async with listening(db, "test-matching", matcher.on_change, matcher.reload) as listener:
        yield listener


async def eventually(predicate: Any, within_s: float = 5.0) -> None:
    """Wait for state that another task (the listener) changes; fail after `within_s`."""
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110 -- the state has no event to wait on
            await asyncio.sleep(0.02)


async def test_resting_orders_loaded_at_start_fill_when_a_tick_crosses_them(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], clock: Clock
) -> None:
    user, pf = trader
    buy = await place(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(2), limit_price=D("195.00")
    )
    matcher = Matcher(db, broker.hours, broker.costs)
    await matcher.reload()
    assert buy.id in matcher.book
    await matcher.on_tick(tick("AAPL", "195.01", clock))
    assert await status(db, user, buy.id) == ("new", None)
    await matcher.on_tick(tick("AAPL", "194.50", clock))  # through the limit: filled at the better price
    assert await status(db, user, buy.id) == ("filled", D("194.50"))
    assert buy.id not in matcher.book and matcher.fills == 1


async def test_stops_become_market_orders_with_slippage(
    db: Database,
    broker: PaperBroker,
    trader: tuple[UUID, UUID],
    matcher: Matcher,
    following: ChangeListener,
    clock: Clock,
) -> None:
    user, pf = trader
    await place(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(5))
    stop = await place(
        db, broker, user, pf, symbol="AAPL", side=Side.SELL, type=OrderType.STOP, qty=D(5), stop_price=D("190.00")
    )
    await eventually(lambda: stop.id in matcher.book)
    await matcher.on_tick(tick("AAPL", "189.00", clock))
    assert await status(db, user, stop.id) == ("filled", D("188.91"))  # 189.00 - 5 bps = 188.9055 -> 188.91


async def test_a_stop_limit_triggers_then_rests_as_a_limit(
    db: Database,
    broker: PaperBroker,
    trader: tuple[UUID, UUID],
    matcher: Matcher,
    following: ChangeListener,
    clock: Clock,
) -> None:
    user, pf = trader
    order = await place(
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
    await eventually(lambda: order.id in matcher.book)
    await matcher.on_tick(tick("AAPL", "207.00", clock))  # stop hit, but above the limit: now a resting limit
    assert await status(db, user, order.id) == ("new", None)
    resting = matcher.book.get(order.id)
    assert resting is not None and resting.triggered
    await matcher.on_tick(tick("AAPL", "205.50", clock))
    assert await status(db, user, order.id) == ("filled", D("205.50"))


async def test_the_matcher_follows_orders_placed_and_canceled_by_any_process(
    db: Database,
    broker: PaperBroker,
    trader: tuple[UUID, UUID],
    matcher: Matcher,
    following: ChangeListener,
    clock: Clock,
) -> None:
    user, pf = trader
    order = await place(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("150.00")
    )
    await eventually(lambda: order.id in matcher.book)
    async with db.user_scope(user) as s:
        await broker.cancel(s, order.id)
    await eventually(lambda: order.id not in matcher.book)
    await matcher.on_tick(tick("AAPL", "149.00", clock))
    assert await status(db, user, order.id) == ("canceled", None)


async def test_an_order_canceled_before_the_index_heard_of_it_does_not_fill(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], matcher: Matcher, clock: Clock
) -> None:
    user, pf = trader
    order = await place(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("150.00")
    )
    await matcher.reload()
    async with db.user_scope(user) as s:
        await broker.cancel(s, order.id)  # no listener: the index still holds it
    await matcher.on_tick(tick("AAPL", "149.00", clock))
    assert await status(db, user, order.id) == ("canceled", None) and matcher.fills == 0


async def test_equities_do_not_fill_outside_regular_hours(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], matcher: Matcher, clock: Clock
) -> None:
    user, pf = trader
    order = await place(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("195.00")
    )
    await matcher.reload()
    clock.at = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)  # 18:00 in New York
    await matcher.on_tick(tick("AAPL", "190.00", clock))
    assert await status(db, user, order.id) == ("new", None) and order.id in matcher.book


async def test_market_orders_placed_while_closed_fill_on_the_first_tick_of_the_open(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], matcher: Matcher, clock: Clock, market: Any
) -> None:
    user, pf = trader
    clock.at = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)  # 08:00 in New York, before the open
    await market("AAPL", "200.00", age_s=3600)
    order = await place(db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.MARKET, qty=D(1))
    await matcher.reload()
    await matcher.on_tick(tick("AAPL", "201.00", clock))
    assert await status(db, user, order.id) == ("new", None)
    clock.at = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)  # 09:30: the open
    await matcher.on_tick(tick("AAPL", "202.00", clock))
    assert await status(db, user, order.id) == ("filled", D("202.10"))


async def test_after_losing_its_connection_the_listener_reloads_what_it_missed(
    db: Database,
    broker: PaperBroker,
    trader: tuple[UUID, UUID],
    matcher: Matcher,
    following: ChangeListener,
    pg: PgCluster,
    db_name: str,
) -> None:
    user, pf = trader
    admin = await asyncpg.connect(pg.superuser_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
            db_name,
        )
        assert killed >= 1
    finally:
        await admin.close()
    # Placed while the listener may be away: after the reconnect's reload it must be in the index either way.
    order = await place(
        db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("150.00")
    )
    await eventually(lambda: following.connections >= 2, within_s=15)
    await eventually(lambda: order.id in matcher.book)


async def test_a_database_that_went_away_loses_no_order_from_the_index(
    db: Database,
    broker: PaperBroker,
    trader: tuple[UUID, UUID],
    matcher: Matcher,
    clock: Clock,
    pg: PgCluster,
    db_name: str,
) -> None:
    user, pf = trader
    orders = [
        await place(
            db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D(price)
        )
        for price in ("195.00", "196.00")
    ]
    stop_limit = await place(
        db,
        broker,
        user,
        pf,
        symbol="AAPL",
        side=Side.BUY,
        type=OrderType.STOP_LIMIT,
        qty=D(1),
        stop_price=D("201.00"),
        limit_price=D("201.50"),
    )
    await matcher.reload()
    await matcher.on_tick(tick("AAPL", "202.00", clock))  # stop hit, above its limit: now a triggered resting limit
    admin = await asyncpg.connect(pg.superuser_url)
    try:  # every pooled connection of the app dies, as in a database restart
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            db_name,
        )
    finally:
        await admin.close()
    await matcher.on_tick(tick("AAPL", "194.00", clock))  # fails on the dead connection: must not raise or forget
    assert all(o.id in matcher.book for o in [*orders, stop_limit])
    await matcher.on_tick(tick("AAPL", "194.00", clock))  # the pool reconnects: all three fill
    for order in [*orders, stop_limit]:
        assert (await status(db, user, order.id))[0] == "filled"


async def test_a_tick_that_fills_several_orders_tells_live_pages_once_with_the_distinct_users(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], clock: Clock, matcher: Matcher
) -> None:
    alice, alice_pf = trader
    bob, bob_pf = await new_trader(db, "bob")
    for user, pf in ((alice, alice_pf), (alice, alice_pf), (bob, bob_pf)):
        await place(
            db, broker, user, pf, symbol="AAPL", side=Side.BUY, type=OrderType.LIMIT, qty=D(1), limit_price=D("190")
        )
    await matcher.reload()
    async with heard(db, LIVE) as queue:
        await matcher.on_tick(tick("AAPL", "189", clock))  # no NOTIFY per fill: one for the batch
        payload = await asyncio.wait_for(queue.get(), 10)
        await matcher.on_tick(tick("AAPL", "185", clock))  # nothing left to fill: nothing said
        await asyncio.sleep(0.05)
        assert queue.empty()
    assert parse_live(payload) == {alice: {"orders", "portfolio"}, bob: {"orders", "portfolio"}}
    assert matcher.fills == 3
