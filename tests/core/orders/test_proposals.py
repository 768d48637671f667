"""Order proposals on the real database, as the user: checked like a submission, confirmed once, bound to a quote."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from core.db.database import Database, raw_connection
from core.errors import Conflict, DomainError, InsufficientBuyingPower, NotFound, QuoteUnavailable
from core.market.ticks import Quote
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.paper import PaperBroker
from core.orders.proposals import (
    Confirmed,
    ProposalExpired,
    Requoted,
    cancel_proposal,
    check_symbol,
    confirm_proposal,
    expire_proposals,
    propose_cancel,
    propose_order,
)
from tests.core.orders.conftest import Clock, new_trader

D = Decimal


def quote(clock: Clock, symbol: str, price: str, *, stale: bool = False) -> Quote:
    return Quote(symbol, D(price), clock(), "sim", stale=stale)


def buy(portfolio: UUID, qty: str = "2", **kw: Any) -> OrderRequest:
    kw.setdefault("symbol", "AAPL")
    kw.setdefault("type", OrderType.MARKET)
    return OrderRequest(portfolio_id=portfolio, side=Side.BUY, qty=D(qty), tif=TimeInForce.DAY, **kw)


async def counts(db: Database, user: UUID) -> tuple[int, int, int]:
    async with db.user_scope(user) as s:
        c = await raw_connection(s)
        orders = await c.fetchval("SELECT count(*) FROM orders")
        fills = await c.fetchval("SELECT count(*) FROM fills")
        proposals = await c.fetchval("SELECT count(*) FROM order_proposals")
    return orders, fills, proposals


async def propose(db: Database, broker: PaperBroker, clock: Clock, user: UUID, request: OrderRequest, price: str):
    async with db.user_scope(user) as s:
        return await propose_order(
            s, broker, request, quote=quote(clock, request.symbol, price), origin="command", now=clock()
        )


async def confirm(db: Database, broker: PaperBroker, clock: Clock, user: UUID, pid: UUID):
    async with db.user_scope(user) as s:  # the quote comes from the real last_prices, read under the lock
        return await confirm_proposal(s, broker, pid, stale_after=timedelta(seconds=30), now=clock())


async def test_a_proposal_is_checked_like_a_submission_and_places_nothing(
    db: Database, broker: PaperBroker, clock: Clock, trader: tuple[UUID, UUID]
) -> None:
    user, portfolio = trader
    p = await propose(db, broker, clock, user, buy(portfolio), "200.00")
    assert (p.status, p.symbol, p.qty, p.quote_price, p.simulated) == ("pending", "AAPL", D(2), D("200.00"), True)
    assert p.estimate_status == "filled" and p.estimate_price == D("200.10")  # 5 bps slippage, as submission would
    assert p.expires_at - p.created_at == timedelta(minutes=10)
    assert await counts(db, user) == (0, 0, 1)

    with pytest.raises(InsufficientBuyingPower):
        await propose(db, broker, clock, user, buy(portfolio, "1000"), "200.00")
    with pytest.raises(DomainError, match="limit price"):
        await propose(db, broker, clock, user, buy(portfolio, limit_price=D(190)), "200.00")
    with pytest.raises(DomainError, match="not a symbol TradeDesk trades"):
        await propose(db, broker, clock, user, buy(portfolio, symbol="ZZZZ"), "1.00")
    async with db.user_scope(user) as s:
        with pytest.raises(QuoteUnavailable):
            await propose_order(
                s, broker, buy(portfolio), quote=quote(clock, "AAPL", "200", stale=True), origin="command", now=clock()
            )
    assert await counts(db, user) == (0, 0, 1)


async def test_confirming_twice_even_at_once_places_exactly_one_order(
    db: Database, broker: PaperBroker, clock: Clock, trader: tuple[UUID, UUID]
) -> None:
    user, portfolio = trader
    p = await propose(db, broker, clock, user, buy(portfolio), "200.00")
    first, second = await asyncio.gather(*(confirm(db, broker, clock, user, p.id) for _ in range(2)))
    third = await confirm(db, broker, clock, user, p.id)
    assert isinstance(first, Confirmed) and isinstance(second, Confirmed) and isinstance(third, Confirmed)
    assert first.order.id == second.order.id == third.order.id
    assert first.order.status == "filled" and first.order.client_order_id == p.client_order_id
    assert first.order.proposal_id == p.id
    assert await counts(db, user) == (1, 1, 1)


async def test_expired_canceled_and_other_users_proposals_are_refused(
    db: Database, broker: PaperBroker, clock: Clock, trader: tuple[UUID, UUID]
) -> None:
    user, portfolio = trader
    expiring = await propose(db, broker, clock, user, buy(portfolio), "200.00")
    canceled = await propose(db, broker, clock, user, buy(portfolio), "200.00")
    async with db.user_scope(user) as s:
        assert (await cancel_proposal(s, canceled.id, now=clock())).status == "canceled"
    mallory, _ = await new_trader(db, "mallory")
    with pytest.raises(NotFound):
        await confirm(db, broker, clock, mallory, expiring.id)
    with pytest.raises(Conflict, match="canceled"):
        await confirm(db, broker, clock, user, canceled.id)
    clock.advance(minutes=10)
    with pytest.raises(ProposalExpired):
        await confirm(db, broker, clock, user, expiring.id)
    async with db.system_scope("test.expire_proposals") as s:
        assert await expire_proposals(s, clock()) == 1  # the scheduler's sweep marks it; the canceled one stays
    async with db.user_scope(user) as s:
        status = await (await raw_connection(s)).fetchval(
            "SELECT status FROM order_proposals WHERE id = $1", expiring.id
        )
    assert status == "expired"
    with pytest.raises(ProposalExpired):
        await confirm(db, broker, clock, user, expiring.id)
    assert (await counts(db, user))[:2] == (0, 0)
    with pytest.raises(NotFound):
        await confirm(db, broker, clock, user, uuid4())


async def test_price_drift_beyond_the_bound_asks_again_at_the_new_price(
    db: Database, broker: PaperBroker, clock: Clock, market: Any, trader: tuple[UUID, UUID]
) -> None:
    user, portfolio = trader
    p = await propose(db, broker, clock, user, buy(portfolio), "200.00")
    await market("AAPL", "203.00")  # 150 bps: beyond the default bound of 100
    result = await confirm(db, broker, clock, user, p.id)
    assert isinstance(result, Requoted)
    assert result.old.status == "canceled" and result.drift_bps == D("150.00")
    assert result.new.status == "pending" and result.new.quote_price == D("203.00") and result.new.qty == D(2)
    assert (await counts(db, user))[:2] == (0, 0)
    await market("AAPL", "203.50")  # 25 bps from the new proposal's price: within the bound
    done = await confirm(db, broker, clock, user, result.new.id)
    assert isinstance(done, Confirmed) and done.order.status == "filled"


async def test_a_cancel_proposal_cancels_the_order_on_confirmation(
    db: Database, broker: PaperBroker, clock: Clock, trader: tuple[UUID, UUID]
) -> None:
    user, portfolio = trader
    resting = await propose(db, broker, clock, user, buy(portfolio, type=OrderType.LIMIT, limit_price=D(150)), "200")
    placed = await confirm(db, broker, clock, user, resting.id)
    assert isinstance(placed, Confirmed) and placed.order.status == "new"
    async with db.user_scope(user) as s:
        p = await propose_cancel(s, placed.order.id, origin="agent", now=clock())
    assert p.action == "cancel" and p.target_order_id == placed.order.id
    done = await confirm(db, broker, clock, user, p.id)
    assert isinstance(done, Confirmed) and done.order.status == "canceled"
    async with db.user_scope(user) as s:
        with pytest.raises(Conflict):
            await propose_cancel(s, placed.order.id, origin="agent", now=clock())


@pytest.mark.parametrize("text", ["AAPL ", " btc-usd"])
def test_symbols_are_canonicalised(text: str) -> None:
    assert check_symbol(text) == text.strip().upper()


@pytest.mark.parametrize("text", ["", "AA PL", "📈", "A" * 21, "AAPL;DROP"])
def test_what_cannot_be_a_symbol_is_refused(text: str) -> None:
    with pytest.raises(DomainError, match="not a symbol"):
        check_symbol(text)
