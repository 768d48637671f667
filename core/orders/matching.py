"""The worker's matcher: fills resting orders as ticks cross them.

It owns an OrderBook rebuilt from the database at start and kept in step with orders placed or canceled by any
process (ChangeListener on tradedesk_changes). On a tick, the book hands back exactly the orders the price makes act;
each is filled (or, for a stop-limit, triggered) in its own system_scope transaction by the SQL functions, which
also settle races: an order canceled a moment earlier simply doesn't fill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from uuid import UUID

from core import metrics
from core.db.database import DATABASE_ERRORS, Database, raw_connection
from core.live import notify_live
from core.market.sessions import ALWAYS, MarketHours
from core.market.ticks import Tick
from core.orders.book import OrderBook, RestingOrder
from core.orders.broker import OPEN_STATUSES
from core.orders.paper import BrokerCosts

log = logging.getLogger(__name__)

_EVALUATED = metrics.TICKS_EVALUATED.labels("matching")

_OPEN_ORDERS = (
    "SELECT id, symbol, side, type, limit_price, stop_price, triggered_at IS NOT NULL AS triggered FROM orders "
    "WHERE status = ANY($1::text[])"
)


@dataclass(frozen=True)
class InstrumentRules:
    tick_size: Decimal
    trading_session: str


def round_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    return (price / tick).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * tick


def _resting(row: Any) -> RestingOrder:
    return RestingOrder(
        row["id"], row["symbol"], row["side"], row["type"], row["limit_price"], row["stop_price"], row["triggered"]
    )


class Matcher:
    def __init__(self, db: Database, hours: MarketHours, costs: BrokerCosts) -> None:
        self.db = db
        self.hours = hours
        self.costs = costs
        self.book = OrderBook()
        self.rules: dict[str, InstrumentRules] = {}
        self.fills = 0

    async def reload(self) -> None:
        """Rebuild the index from the database (at start, and after the change listener reconnects)."""
        async with self.db.system_scope("orders.matching") as s:
            conn = await raw_connection(s)
            instruments = await conn.fetch("SELECT symbol, tick_size, trading_session FROM instruments")
            rows = await conn.fetch(_OPEN_ORDERS, list(OPEN_STATUSES))
        self.rules = {r["symbol"]: InstrumentRules(r["tick_size"], r["trading_session"]) for r in instruments}
        book = OrderBook()
        for row in rows:
            book.add(_resting(row))
        self.book = book
        log.info("matching: %d resting orders loaded", len(book))

    async def on_change(self, payload: str) -> None:
        """Follow a committed change: "orders:<id>" or "portfolios:<id>" (a reset cancels its orders)."""
        table, _, key = payload.partition(":")
        if table not in ("orders", "portfolios"):
            return
        column = "id" if table == "orders" else "portfolio_id"
        try:
            key_id = UUID(key)
        except ValueError:
            log.warning("matching: ignoring malformed change %r", payload[:80])
            return
        async with self.db.system_scope("orders.matching") as s:
            rows = await (await raw_connection(s)).fetch(
                "SELECT id, symbol, side, type, limit_price, stop_price, triggered_at IS NOT NULL AS triggered, status "
                f"FROM orders WHERE {column} = $1",
                key_id,
            )
        for row in rows:
            if row["status"] in OPEN_STATUSES:
                self.book.add(_resting(row))
            else:
                self.book.remove(row["id"])

    async def on_tick(self, tick: Tick) -> None:
        _EVALUATED.inc()
        rules = self.rules.get(tick.symbol)
        if rules is None or not self.hours.is_open(rules.trading_session or ALWAYS, tick.ts):
            return
        taken = self.book.take_triggered(tick.symbol, tick.price)
        if not taken:
            return
        changed: set[UUID] = set()  # owners of orders this tick filled or triggered, told once after the batch
        for done, order in enumerate(taken):
            try:
                await self._act(order, tick, rules, changed)
            except DATABASE_ERRORS as exc:
                # The database is the truth: keep this order and the ones not reached yet indexed; a later tick
                # tries again (trigger_stop and apply_fill are safe to repeat).
                for pending in taken[done:]:
                    self.book.add(pending)
                log.warning(
                    "matching: database error on order %s (%s); %d order(s) kept for a later tick",
                    order.id,
                    type(exc).__name__,
                    len(taken) - done,
                )
                break
        await self._tell_live(changed)

    async def _tell_live(self, users: set[UUID]) -> None:
        """One NOTIFY for the whole batch (never one per fill): live dashboards re-render these users' orders."""
        if not users:
            return
        try:
            async with self.db.system_scope("orders.matching") as s:
                await notify_live(s, dict.fromkeys(users, ("orders", "portfolio")))
        except DATABASE_ERRORS as exc:
            log.warning("matching: could not tell live pages about %d user(s)' fills (%s)", len(users), exc)

    async def _act(self, order: RestingOrder, tick: Tick, rules: InstrumentRules, changed: set[UUID]) -> None:
        if order.type == "stop_limit" and not order.triggered:
            async with self.db.system_scope("orders.matching") as s:
                triggered = await (await raw_connection(s)).fetchrow(
                    "SELECT id, user_id FROM trigger_stop($1, $2)", order.id, tick.ts
                )
            if triggered is None or triggered["id"] is None:
                return  # canceled or filled elsewhere meanwhile
            changed.add(triggered["user_id"])
            order = replace(order, triggered=True)
            limit = order.limit_price
            assert limit is not None
            if (order.side == "buy" and tick.price > limit) or (order.side == "sell" and tick.price < limit):
                self.book.add(order)
                return
        await self._fill(order, self._fill_price(order, tick.price, rules), tick, changed)

    def _fill_price(self, order: RestingOrder, price: Decimal, rules: InstrumentRules) -> Decimal:
        if order.acts_as_limit:
            limit = order.limit_price
            assert limit is not None
            return min(limit, price) if order.side == "buy" else max(limit, price)
        slip = self.costs.slippage_bps / Decimal(10000)
        return round_to_tick(price * (1 + slip if order.side == "buy" else 1 - slip), rules.tick_size)

    async def _fill(self, order: RestingOrder, price: Decimal, tick: Tick, changed: set[UUID]) -> None:
        async with self.db.system_scope("orders.matching") as s:
            fill = await (await raw_connection(s)).fetchrow(
                "SELECT id, user_id FROM apply_fill($1, $2, $3, $4)", order.id, price, tick.ts, self.costs.fee_bps
            )
        if fill is not None and fill["id"] is not None:
            changed.add(fill["user_id"])
            self.fills += 1
            metrics.ORDER_FILLS.inc()
            log.info("matching: filled %s %s %s at %s", order.side, order.symbol, order.id, price)
