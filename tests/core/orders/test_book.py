"""The resting-order index: exactly the orders a price makes act, against a brute-force scan of the same orders."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from core.orders.book import OrderBook, RestingOrder

D = Decimal


def acts_at(order: RestingOrder, price: Decimal) -> bool:
    """The rule, written the naive way."""
    if order.type == "market":
        return True
    if order.acts_as_limit:
        assert order.limit_price is not None
        return price <= order.limit_price if order.side == "buy" else price >= order.limit_price
    assert order.stop_price is not None
    return price >= order.stop_price if order.side == "buy" else price <= order.stop_price


def order(
    side: str, type_: str, limit: str | None = None, stop: str | None = None, symbol: str = "AAPL"
) -> RestingOrder:
    return RestingOrder(uuid4(), symbol, side, type_, D(limit) if limit else None, D(stop) if stop else None)


def test_each_kind_acts_on_its_side_of_the_price() -> None:
    book = OrderBook()
    buy_limit, sell_limit = order("buy", "limit", "99"), order("sell", "limit", "101")
    buy_stop, sell_stop = order("buy", "stop", stop="105"), order("sell", "stop", stop="95")
    other_symbol = order("buy", "limit", "1000", symbol="MSFT")
    for o in (buy_limit, sell_limit, buy_stop, sell_stop, other_symbol):
        book.add(o)
    assert book.take_triggered("AAPL", D(100)) == []
    assert book.take_triggered("AAPL", D(99)) == [buy_limit]
    assert book.take_triggered("AAPL", D(106)) == [sell_limit, buy_stop]
    assert book.take_triggered("AAPL", D(95)) == [sell_stop]
    assert len(book) == 1 and other_symbol.id in book


def test_equal_levels_keep_arrival_order_and_market_orders_go_first() -> None:
    book = OrderBook()
    first, second = order("sell", "limit", "101"), order("sell", "limit", "101")
    waiting = order("buy", "market")
    book.add(first)
    book.add(second)
    book.add(waiting)
    assert book.take_triggered("AAPL", D(101)) == [waiting, first, second]


def test_a_triggered_stop_limit_rests_as_a_limit_and_remove_forgets() -> None:
    book = OrderBook()
    stop_limit = order("buy", "stop_limit", limit="106", stop="105")
    book.add(stop_limit)
    assert book.take_triggered("AAPL", D(105)) == [stop_limit]
    as_limit = RestingOrder(stop_limit.id, "AAPL", "buy", "stop_limit", D(106), D(105), triggered=True)
    book.add(as_limit)
    assert book.take_triggered("AAPL", D(107)) == []
    assert book.remove(as_limit.id) == as_limit and book.remove(as_limit.id) is None
    assert book.take_triggered("AAPL", D(100)) == []


kinds = st.sampled_from([("buy", "limit"), ("sell", "limit"), ("buy", "stop"), ("sell", "stop"), ("buy", "market")])
levels = st.integers(min_value=90, max_value=110).map(D)


@settings(max_examples=200)
@given(
    orders=st.lists(st.tuples(kinds, levels), max_size=40),
    removals=st.lists(st.integers(min_value=0, max_value=39), max_size=10),
    prices=st.lists(levels, min_size=1, max_size=10),
)
def test_matches_a_brute_force_scan(
    orders: list[tuple[tuple[str, str], Decimal]], removals: list[int], prices: list[Decimal]
) -> None:
    book = OrderBook()
    live: dict[UUID, RestingOrder] = {}
    made = []
    for (side, type_), level in orders:
        o = RestingOrder(
            uuid4(), "X", side, type_, level if type_ == "limit" else None, level if type_ == "stop" else None
        )
        made.append(o)
        book.add(o)
        live[o.id] = o
    for i in removals:
        if i < len(made):
            book.remove(made[i].id)
            live.pop(made[i].id, None)
    for price in prices:
        expected = {o.id for o in live.values() if acts_at(o, price)}
        taken = book.take_triggered("X", price)
        assert {o.id for o in taken} == expected and len(taken) == len(expected)
        for o in taken:
            del live[o.id]
        assert len(book) == len(live)
