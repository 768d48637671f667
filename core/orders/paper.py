"""The paper broker: orders against live (or simulated) prices, with real validation and exact books.

The write path lives in SQL (migrations/0008_paper_broker.sql): one call of place_order validates, inserts, fills a
marketable order and updates position, cash ledger and audit log in the caller's transaction. This class supplies
what SQL can't know (the trading calendar, the clock and the configured fee and slippage) and turns the function's
errors into DomainErrors. Resting orders are filled later by the worker's matcher (core/orders/matching.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from sqlmodel.ext.asyncio.session import AsyncSession

from core.db.database import Scope, raw_connection, scope_connection
from core.errors import domain_error
from core.live import notify_live
from core.market.sessions import ALWAYS, MarketHours
from core.orders.broker import OPEN_STATUSES, OrderRequest
from core.orders.models import OrderView

_PLACE = (
    "SELECT * FROM place_order($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::numeric, $8::numeric,"
    " $9::numeric, $10::uuid, $11::boolean, $12::timestamptz, $13::timestamptz, $14::interval, $15::numeric,"
    " $16::numeric)"
)


@dataclass(frozen=True)
class BrokerCosts:
    fee_bps: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(1)
    stale_after: timedelta = timedelta(seconds=30)


def order_from_row(row: asyncpg.Record | dict[str, Any]) -> OrderView:
    # A row of our own orders table, with asyncpg's exact types (Decimal, UUID, aware datetimes): no validation to do.
    return OrderView.model_construct(**dict(row))


async def call(conn: asyncpg.Connection, sql: str, *args: Any) -> asyncpg.Record | None:
    """Run one of the broker's SQL functions, turning its user-facing errors into DomainErrors."""
    try:
        row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
    except asyncpg.RaiseError as exc:
        raise domain_error(exc.hint or "error", exc.message) from None
    return row


class PaperBroker:
    def __init__(self, hours: MarketHours, costs: BrokerCosts) -> None:
        self.hours = hours
        self.costs = costs
        self._sessions: dict[str, str] = {}

    async def _session_of(self, conn: asyncpg.Connection, symbol: str) -> str:
        # Instruments are reference data that only migrations change: load once, reload on a miss.
        if symbol not in self._sessions:
            rows = await conn.fetch("SELECT symbol, trading_session FROM instruments")
            self._sessions = {r["symbol"]: r["trading_session"] for r in rows}
        return self._sessions.get(symbol, ALWAYS)  # an unknown symbol is refused by place_order itself

    async def submit(self, session: Scope, request: OrderRequest) -> OrderView:
        """Place an order for the scoped user; market and marketable limit orders fill at once when the market is
        open and the quote fresh. A retried client_order_id returns the first order."""
        conn = await scope_connection(session)
        symbol = request.symbol.strip().upper()
        now = self.hours.now()
        trading_session = await self._session_of(conn, symbol)
        row = await call(
            conn,
            _PLACE,
            request.portfolio_id,
            request.client_order_id or f"td-{uuid.uuid4().hex}",
            symbol,
            str(request.side),
            str(request.type),
            str(request.tif),
            request.qty,
            request.limit_price,
            request.stop_price,
            request.proposal_id,
            self.hours.is_open(trading_session, now),
            self.hours.day_order_expiry(trading_session, now),
            now,
            self.costs.stale_after,
            self.costs.fee_bps,
            self.costs.slippage_bps,
        )
        assert row is not None
        return order_from_row(row)

    async def cancel(self, session: Scope, order_id: UUID) -> OrderView:
        """Cancel one of the scoped user's open orders. Against a fill of the same order, exactly one wins."""
        conn = await scope_connection(session)
        row = await call(conn, "SELECT * FROM cancel_order($1::uuid, $2::timestamptz)", order_id, self.hours.now())
        assert row is not None
        return order_from_row(row)

    async def orders(self, session: Scope, *, open_only: bool = False, limit: int = 50) -> list[OrderView]:
        """The scoped user's orders, newest first (RLS shows only theirs)."""
        conn = await scope_connection(session)
        rows = await conn.fetch(
            "SELECT * FROM orders WHERE ($1::boolean IS FALSE OR status = ANY($2::text[])) "
            "ORDER BY created_at DESC LIMIT $3",
            open_only,
            list(OPEN_STATUSES),
            max(1, min(limit, 500)),
        )
        return [order_from_row(r) for r in rows]

    async def get(self, session: Scope, order_id: UUID) -> OrderView | None:
        conn = await scope_connection(session)
        row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", order_id)
        return order_from_row(row) if row else None


async def expire_day_orders(session: AsyncSession, now: datetime) -> list[UUID]:
    """Expire DAY orders whose session has closed (the scheduler's job, in system_scope). Returns their ids."""
    conn = await raw_connection(session)
    rows = await conn.fetch("SELECT id, user_id FROM expire_orders($1)", now)
    await notify_live(session, dict.fromkeys({r["user_id"] for r in rows}, ("orders", "portfolio")))  # one for all
    return [r["id"] for r in rows]
