"""Portfolios: several per user, paper cash in and out, and a valuation a trader can trust to the cent.

Cost basis is average cost, fees included: a position's basis is what its open quantity cost; selling part of it
takes the same fraction of the basis. So for every portfolio, exactly:
    equity = cash + market value
    realized P&L + unrealized P&L = equity - net deposits
Values are kept exact here and rounded to the cent only when shown. Prices come from last_prices in the same
transaction as the positions, so a valuation is one consistent snapshot; each carries its "as of" time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from core.db.database import Scope, scope_connection
from core.errors import Conflict, InvalidInput, NotFound
from core.orders.paper import BrokerCosts, call
from core.portfolio.models import Portfolio

COST_BASIS_METHOD = "average cost (fees included)"
DEFAULT_NAME = "Main"
_MAX_NAME = 40


@dataclass(frozen=True)
class PositionView:
    symbol: str
    qty: Decimal
    avg_cost: Decimal
    cost_basis: Decimal
    realized_pnl: Decimal
    price: Decimal | None
    price_as_of: datetime | None
    price_source: str | None
    stale: bool
    market_value: Decimal | None
    unrealized_pnl: Decimal | None


@dataclass(frozen=True)
class PortfolioView:
    id: UUID
    name: str
    currency: str
    cash: Decimal
    positions: list[PositionView]
    market_value: Decimal
    equity: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    net_deposits: Decimal
    day_change: Decimal | None
    as_of: datetime
    simulated: bool
    complete: bool  # False when a held symbol has no price at all (its value is left out)
    cost_basis_method: str = COST_BASIS_METHOD


def _name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= _MAX_NAME:
        raise InvalidInput(f"A portfolio name is 1 to {_MAX_NAME} characters.")
    return cleaned


def _portfolio(row: asyncpg.Record) -> Portfolio:
    return Portfolio.model_validate(dict(row))


async def open_portfolio(session: Scope, name: str, starting_cash: Decimal, *, allow_short: bool = False) -> Portfolio:
    conn = await scope_connection(session)
    row = await call(conn, "SELECT * FROM open_portfolio($1, $2, $3)", _name(name), starting_cash, allow_short)
    assert row is not None
    return _portfolio(row)


async def list_portfolios(session: Scope) -> list[Portfolio]:
    conn = await scope_connection(session)
    rows = await conn.fetch("SELECT * FROM portfolios WHERE archived_at IS NULL ORDER BY is_default DESC, created_at")
    return [_portfolio(r) for r in rows]


async def default_portfolio(session: Scope, starting_cash: Decimal, *, allow_short: bool = False) -> Portfolio:
    """The user's default portfolio, opened with the starting cash on first use."""
    conn = await scope_connection(session)
    row = await conn.fetchrow("SELECT * FROM portfolios WHERE is_default AND archived_at IS NULL")
    if row is not None:
        return _portfolio(row)
    try:
        return await open_portfolio(session, DEFAULT_NAME, starting_cash, allow_short=allow_short)
    except Conflict:
        raise Conflict("Your default portfolio is being set up; try again.") from None


async def find_portfolio(session: Scope, name: str | None, starting_cash: Decimal) -> Portfolio:
    """The portfolio called `name` (case-insensitive), or the default one when no name is given."""
    if name is None or not name.strip():
        return await default_portfolio(session, starting_cash)
    conn = await scope_connection(session)
    row = await conn.fetchrow(
        "SELECT * FROM portfolios WHERE lower(name) = lower($1) AND archived_at IS NULL", " ".join(name.split())
    )
    if row is None:
        raise NotFound(f"You have no portfolio named {name.strip()[:_MAX_NAME]}.")
    return _portfolio(row)


async def rename_portfolio(session: Scope, portfolio_id: UUID, name: str) -> Portfolio:
    conn = await scope_connection(session)
    try:
        row = await conn.fetchrow(
            "UPDATE portfolios SET name = $2 WHERE id = $1 AND archived_at IS NULL RETURNING *",
            portfolio_id,
            _name(name),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"You already have a portfolio named {_name(name)}.") from None
    if row is None:
        raise NotFound("That portfolio does not exist.")
    await conn.execute(
        "SELECT record_audit('portfolio.renamed', jsonb_build_object('portfolio_id', $1::uuid, 'name', $2::text))",
        portfolio_id,
        row["name"],
    )
    return _portfolio(row)


async def deposit(session: Scope, portfolio_id: UUID, amount: Decimal) -> Portfolio:
    if amount <= 0:
        raise InvalidInput("A deposit must be a positive amount.")
    return await _move_cash(session, portfolio_id, amount, "deposit", BrokerCosts())


async def withdraw(session: Scope, portfolio_id: UUID, amount: Decimal, costs: BrokerCosts | None = None) -> Portfolio:
    """Withdraw paper cash, never the cash held for open buy orders (priced with the broker's fee and slippage)."""
    if amount <= 0:
        raise InvalidInput("A withdrawal must be a positive amount.")
    return await _move_cash(session, portfolio_id, -amount, "withdrawal", costs or BrokerCosts())


async def _move_cash(session: Scope, portfolio_id: UUID, amount: Decimal, note: str, costs: BrokerCosts) -> Portfolio:
    conn = await scope_connection(session)
    row = await call(
        conn,
        "SELECT * FROM move_cash($1, $2, $3, $4, $5)",
        portfolio_id,
        amount,
        note,
        costs.fee_bps,
        costs.slippage_bps,
    )
    assert row is not None
    return _portfolio(row)


async def reset_portfolio(session: Scope, portfolio_id: UUID, cash: Decimal, now: datetime) -> Portfolio:
    conn = await scope_connection(session)
    row = await call(conn, "SELECT * FROM reset_portfolio($1, $2, $3)", portfolio_id, cash, now)
    assert row is not None
    return _portfolio(row)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


async def value_portfolio(
    session: Scope, portfolio_id: UUID, *, now: datetime, stale_after: timedelta
) -> PortfolioView:
    """Value one of the scoped user's portfolios at the last known prices."""
    conn = await scope_connection(session)
    pf = await conn.fetchrow(_HEADER, portfolio_id)
    if pf is None:
        raise NotFound("That portfolio does not exist.")
    rows = await conn.fetch(
        "SELECT p.symbol, p.qty, p.avg_cost, p.cost_basis, p.realized_pnl, lp.price, lp.ts, lp.source "
        "FROM positions p LEFT JOIN last_prices lp ON lp.symbol = p.symbol WHERE p.portfolio_id = $1 "
        "ORDER BY p.symbol",
        portfolio_id,
    )
    positions: list[PositionView] = []
    for r in rows:
        priced = r["price"] is not None and r["qty"] != 0
        value = r["qty"] * r["price"] if priced else (Decimal(0) if r["qty"] == 0 else None)
        positions.append(
            PositionView(
                symbol=r["symbol"],
                qty=r["qty"],
                avg_cost=r["avg_cost"],
                cost_basis=r["cost_basis"],
                realized_pnl=r["realized_pnl"],
                price=r["price"],
                price_as_of=r["ts"],
                price_source=r["source"],
                stale=r["ts"] is None or now - r["ts"] > stale_after,
                market_value=value,
                unrealized_pnl=None if value is None else value - r["cost_basis"],
            )
        )
    held = [p for p in positions if p.qty != 0]
    market_value = sum((p.market_value for p in held if p.market_value is not None), Decimal(0))
    equity = pf["cash"] + market_value
    zone = _zone(pf["timezone"] or "UTC")
    day_start = datetime.combine(now.astimezone(zone).date(), time(0), zone)
    net_deposits, day_change = await _deposits_and_change(conn, portfolio_id, day_start, equity)
    price_times = [p.price_as_of for p in held if p.price_as_of is not None]
    return PortfolioView(
        id=pf["id"],
        name=pf["name"],
        currency=pf["currency"],
        cash=pf["cash"],
        positions=positions,
        market_value=market_value,
        equity=equity,
        realized_pnl=sum((p.realized_pnl for p in positions), Decimal(0)),
        unrealized_pnl=sum((p.unrealized_pnl for p in held if p.unrealized_pnl is not None), Decimal(0)),
        net_deposits=net_deposits,
        day_change=day_change,
        as_of=min(price_times) if price_times else now,
        simulated=any(p.price_source == "sim" for p in held),
        complete=all(p.market_value is not None for p in held),
    )


async def _deposits_and_change(
    conn: asyncpg.Connection, portfolio_id: UUID, since: datetime, equity: Decimal
) -> tuple[Decimal, Decimal | None]:
    """Net deposits now, and the equity gained since the last snapshot at or before `since` (None without one),
    money moved in or out since that snapshot not counted: one round trip."""
    rows = await conn.fetch(_DEPOSITS_AND_OPENING, portfolio_id, since)
    now_row = next(r for r in rows if r["at"] is None)
    opening = next((r for r in rows if r["at"] is not None), None)
    net_deposits: Decimal = now_row["net_deposits"]
    if opening is None:
        return net_deposits, None
    change: Decimal = equity - opening["opening_equity"] - (net_deposits - opening["net_deposits"])
    return net_deposits, change


PERIODS: dict[str, timedelta | None] = {
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
    "year": timedelta(days=365),
    "all": None,
}


@dataclass(frozen=True)
class PeriodPnl:
    period: str
    since: datetime | None  # None: since the portfolio opened (or was last reset)
    change: Decimal | None  # None: no equity snapshot reaches back that far yet
    portfolio: PortfolioView


async def period_pnl(
    session: Scope, portfolio_id: UUID, period: str, *, now: datetime, stale_after: timedelta
) -> PeriodPnl:
    """Profit and loss over `period` (day, week, month, year, all): equity gained, deposits and withdrawals not counted.

    "day" starts at midnight in the user's time zone; the others are rolling windows ending now. A portfolio younger
    than the window counts from its start.
    """
    if period not in PERIODS:
        raise InvalidInput(f"Unknown period {period!r}: use {', '.join(PERIODS)}.")
    view = await value_portfolio(session, portfolio_id, now=now, stale_after=stale_after)
    window = PERIODS[period]
    all_time = view.equity - view.net_deposits
    if window is None:
        return PeriodPnl(period, None, all_time, view)
    conn = await scope_connection(session)
    since = now - window
    if period == "day":
        zone = _zone(await conn.fetchval("SELECT timezone FROM users") or "UTC")
        since = datetime.combine(now.astimezone(zone).date(), time(0), zone)
    started = await conn.fetchval(
        "SELECT coalesce(max(created_at), (SELECT created_at FROM portfolios WHERE id = $1)) FROM cash_ledger"
        " WHERE portfolio_id = $1 AND kind = 'reset'",
        portfolio_id,
    )
    if started >= since:
        return PeriodPnl(period, None, all_time, view)
    _, change = await _deposits_and_change(conn, portfolio_id, since, view.equity)
    return PeriodPnl(period, since, change, view)


_HEADER = (
    "SELECT pf.*, (SELECT timezone FROM users) AS timezone FROM portfolios pf"
    " WHERE pf.id = $1 AND pf.archived_at IS NULL"
)

# Net deposits as of a cutoff `c.at` (NULL: now): deposits and withdrawals, where the latest reset counts as a deposit
# of the whole cash it set (the ledger's running sum at the reset row, since cash always equals that sum).
_NET_DEPOSITS_AT = """
    WITH l AS (SELECT id, amount, kind FROM cash_ledger
                WHERE portfolio_id = $1 AND (c.at IS NULL OR created_at <= c.at)),
         r AS (SELECT max(id) AS id FROM l WHERE kind = 'reset')
    SELECT coalesce(sum(l.amount) FILTER (WHERE l.id <= r.id), 0)
         + coalesce(sum(l.amount) FILTER (WHERE l.kind <> 'trade' AND (r.id IS NULL OR l.id > r.id)), 0) AS value
      FROM l CROSS JOIN r
"""

# Net deposits now (the row whose `at` is NULL) and, with the opening snapshot at or before $2 if there is one,
# net deposits as of that snapshot (the other row).
_DEPOSITS_AND_OPENING = f"""
WITH opening AS (
    SELECT ts, equity FROM equity_snapshots WHERE portfolio_id = $1 AND ts <= $2 ORDER BY ts DESC LIMIT 1
), cutoffs AS (
    SELECT NULL::timestamptz AS at, NULL::numeric AS opening_equity
    UNION ALL SELECT ts, equity FROM opening
)
SELECT c.at, c.opening_equity, d.value AS net_deposits
  FROM cutoffs c CROSS JOIN LATERAL ({_NET_DEPOSITS_AT}) d
"""

_SNAPSHOT = """
INSERT INTO equity_snapshots (user_id, portfolio_id, ts, equity, cash, positions_value, realized_pnl, unrealized_pnl)
SELECT pf.user_id, pf.id, $1, pf.cash + v.value, pf.cash, v.value, v.realized, v.value - v.basis
  FROM portfolios pf
  CROSS JOIN LATERAL (
      SELECT td_round_to(coalesce(sum(p.qty * lp.price), 0), 0.0001) AS value,
             coalesce(sum(p.realized_pnl), 0) AS realized, coalesce(sum(p.cost_basis), 0) AS basis
        FROM positions p LEFT JOIN last_prices lp ON lp.symbol = p.symbol
       WHERE p.portfolio_id = pf.id
  ) v
 WHERE pf.archived_at IS NULL
ON CONFLICT DO NOTHING
"""


async def snapshot_equity(session: Scope, at: datetime) -> int:
    """Record every portfolio's equity at `at` (the scheduler's job, in system_scope). Returns how many."""
    conn = await scope_connection(session)
    status = await conn.execute(_SNAPSHOT, at)
    return int(status.rsplit(" ", 1)[-1])
