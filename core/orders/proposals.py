"""Order proposals: what a user is shown and must confirm by button before anything trades.

A proposal is bound to the quote it was priced at. Creating one checks the order exactly as submitting it would (a
dry run of place_order in a savepoint that is rolled back), so a proposal the user sees can only fail at confirmation
for what changed in between: the price, their cash, the market's hours. Confirming:

- locks the proposal row, so two deliveries of the same click serialise; the second finds it confirmed and gets the
  same order back (and the order's client_order_id is bound to the proposal, unique per user, as a second guard);
- refuses an expired, canceled or unknown proposal (another user's is unknown: RLS hides it);
- for a market order, compares the current quote with the proposal's: beyond `max_drift_bps` the proposal is
  replaced by a new one at the new price, which the user must confirm again.

Proposals live at most 14 minutes: Discord lets an ephemeral message be edited for 15, and the buttons must still
be answerable. Nothing here commits; the transport's scope does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from core.billing.entitlements import entitlements
from core.db.database import Scope, scope_connection
from core.errors import Conflict, DomainError, EntitlementRequired, InvalidInput, NotFound, QuoteUnavailable
from core.market.quotes import read_quote
from core.market.ticks import Quote
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.models import OrderView
from core.orders.paper import PaperBroker, order_from_row

MAX_TTL = timedelta(minutes=14)
DEFAULT_TTL = timedelta(minutes=10)
DEFAULT_MAX_DRIFT_BPS = Decimal(100)
ORIGINS = ("command", "agent", "web")


class ProposalExpired(DomainError):
    code = "proposal_expired"


class _DryRunDone(Exception):
    """Raised inside the dry run's savepoint so that everything place_order wrote is rolled back."""

    def __init__(self, order: OrderView) -> None:
        self.order = order


@dataclass(frozen=True)
class Proposal:
    id: UUID
    action: str  # place | cancel
    portfolio_id: UUID
    status: str  # pending | confirmed | canceled | expired
    created_at: datetime
    expires_at: datetime
    symbol: str | None = None
    side: str | None = None
    type: str | None = None
    tif: str | None = None
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    quote_price: Decimal | None = None
    quote_ts: datetime | None = None
    simulated: bool = False
    target_order_id: UUID | None = None
    # From the dry run: what the order would do now ("filled" at `estimate_price`, or "new": it would rest).
    estimate_status: str | None = None
    estimate_price: Decimal | None = None

    @property
    def client_order_id(self) -> str:
        """The client_order_id the confirmed order carries: one proposal, one order, however often it is confirmed."""
        return f"proposal-{self.id.hex}"

    def request(self) -> OrderRequest:
        assert self.action == "place" and self.symbol and self.side and self.type and self.tif and self.qty
        return OrderRequest(
            portfolio_id=self.portfolio_id,
            symbol=self.symbol,
            side=Side(self.side),
            type=OrderType(self.type),
            tif=TimeInForce(self.tif),
            qty=self.qty,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            client_order_id=self.client_order_id,
            proposal_id=self.id,
        )


@dataclass(frozen=True)
class Confirmed:
    proposal: Proposal
    order: OrderView


@dataclass(frozen=True)
class Requoted:
    """The price moved beyond the bound: `old` is canceled, `new` is the same order at the new quote."""

    old: Proposal
    new: Proposal
    drift_bps: Decimal


_COLUMNS = (
    "id, action, portfolio_id, status, created_at, expires_at, symbol, side, type, tif, qty, limit_price, stop_price,"
    " quote_price, quote_ts, target_order_id"
)
_INSERT = (
    "INSERT INTO order_proposals (user_id, portfolio_id, action, target_order_id, symbol, side, type, tif, qty,"
    " limit_price, stop_price, quote_price, quote_ts, origin, created_at, expires_at)"
    " VALUES (nullif(current_setting('app.user_id', true), '')::uuid, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
    f" $12, $13, $14, $15) RETURNING {_COLUMNS}"
)
_DECIDE = f"UPDATE order_proposals SET status = $2, decided_at = $3 WHERE id = $1 RETURNING {_COLUMNS}"


def _proposal(row: asyncpg.Record, **extra: Any) -> Proposal:
    return Proposal(**dict(row), **extra)


def _ttl(ttl: timedelta) -> timedelta:
    if not timedelta(seconds=30) <= ttl <= MAX_TTL:
        raise ValueError(f"a proposal lives from 30 s to {MAX_TTL}, not {ttl}")
    return ttl


async def _dry_run(conn: asyncpg.Connection, broker: PaperBroker, request: OrderRequest) -> OrderView:
    """What place_order would do with `request` now, leaving no trace: every write is rolled back."""
    probe = replace(request, client_order_id=f"dry-run-{uuid.uuid4().hex}", proposal_id=None)
    try:
        async with conn.transaction():  # a savepoint inside the scope's transaction
            raise _DryRunDone(await broker.submit(conn, probe))
    except _DryRunDone as done:
        return done.order


async def propose_order(
    scope: Scope,
    broker: PaperBroker,
    request: OrderRequest,
    *,
    quote: Quote | None,
    origin: str,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
) -> Proposal:
    """Check `request` as if it were submitted now and store it as a pending proposal priced at `quote`.

    Raises the DomainError submission would raise (unknown symbol, bad quantity, buying power, ...), and
    QuoteUnavailable when there is no price to show; writes nothing then.
    """
    if origin not in ORIGINS:
        raise ValueError(f"unknown proposal origin {origin!r}")
    conn = await scope_connection(scope)
    estimate = await _dry_run(conn, broker, request)  # first: an unknown symbol or a bad quantity says so
    await _check_plan(conn, str(request.type))
    if quote is None or quote.symbol != estimate.symbol:
        raise QuoteUnavailable(f"There is no price for {estimate.symbol} yet; try again in a moment.")
    if request.type == OrderType.MARKET and quote.stale:
        raise QuoteUnavailable(f"There is no recent price for {quote.symbol} right now; try again in a moment.")
    row = await conn.fetchrow(
        _INSERT,
        request.portfolio_id,
        "place",
        None,
        estimate.symbol,
        str(request.side),
        str(request.type),
        str(request.tif),
        request.qty,
        request.limit_price,
        request.stop_price,
        quote.price,
        quote.ts,
        origin,
        now,
        now + _ttl(ttl),
    )
    assert row is not None
    return _proposal(
        row,
        simulated=quote.simulated,
        estimate_status=estimate.status,
        estimate_price=estimate.avg_fill_price,
    )


async def _check_plan(conn: asyncpg.Connection, order_type: str) -> None:
    plan = await entitlements(conn)
    if order_type not in plan.order_types:
        kind = order_type.replace("_", "-")
        allowed = " and ".join(sorted(t.replace("_", "-") for t in plan.order_types))
        raise EntitlementRequired(f"{kind.capitalize()} orders are a Pro feature; your {plan.plan} plan has {allowed} "
                                  "orders. /upgrade to get them.")  # fmt: skip


async def propose_cancel(
    scope: Scope, order_id: UUID, *, origin: str, now: datetime, ttl: timedelta = DEFAULT_TTL
) -> Proposal:
    """A proposal to cancel one of the user's open orders (the agent's way to cancel: confirmed by button)."""
    conn = await scope_connection(scope)
    order = await conn.fetchrow("SELECT portfolio_id, status FROM orders WHERE id = $1", order_id)
    if order is None:
        raise NotFound("You have no order with that id.")
    if order["status"] not in ("new", "partially_filled"):
        raise Conflict(f"That order is already {order['status'].replace('_', ' ')}.")
    row = await conn.fetchrow(
        _INSERT, order["portfolio_id"], "cancel", order_id, *([None] * 9), origin, now, now + _ttl(ttl)
    )
    assert row is not None
    return _proposal(row)


async def _locked(conn: asyncpg.Connection, proposal_id: UUID) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM order_proposals WHERE id = $1 FOR UPDATE", proposal_id)
    if row is None:
        raise NotFound("That proposal does not exist (or isn't yours).")
    return row


async def get_proposal(scope: Scope, proposal_id: UUID) -> Proposal:
    conn = await scope_connection(scope)
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM order_proposals WHERE id = $1", proposal_id)
    if row is None:
        raise NotFound("That proposal does not exist (or isn't yours).")
    return _proposal(row)


def drift_bps(old: Decimal, new: Decimal) -> Decimal:
    return (abs(new - old) / old * 10_000).quantize(Decimal("0.01"))


async def confirm_proposal(
    scope: Scope,
    broker: PaperBroker,
    proposal_id: UUID,
    *,
    stale_after: timedelta,
    now: datetime,
    max_drift_bps: Decimal = DEFAULT_MAX_DRIFT_BPS,
    ttl: timedelta = DEFAULT_TTL,
) -> Confirmed | Requoted:
    """Carry out a pending proposal; a repeated confirmation returns the order the first one placed.

    The current quote is read from last_prices after the proposal is locked, for the drift check.
    """
    conn = await scope_connection(scope)
    row = await _locked(conn, proposal_id)
    proposal = _proposal(row)
    if proposal.status == "confirmed":
        return Confirmed(proposal, await _order_of(conn, proposal))
    if proposal.status == "canceled":
        raise Conflict("That proposal was canceled; nothing was placed.")
    if proposal.status == "expired" or proposal.expires_at <= now:
        # Not marked here: raising rolls the scope back. The scheduler's expire_proposals marks it.
        raise ProposalExpired("That proposal has expired; nothing was placed. Ask again for a fresh quote.")
    if proposal.action == "cancel":
        assert proposal.target_order_id is not None
        order = await broker.cancel(conn, proposal.target_order_id)
        decided = await conn.fetchrow(_DECIDE, proposal_id, "confirmed", now)
        return Confirmed(_proposal(decided), order)
    assert proposal.symbol is not None
    # Read now, after the lock, on this transaction's own connection: holding the lock while waiting for a second
    # pooled connection could starve the pool under many concurrent confirms.
    quote = await read_quote(conn, proposal.symbol, now=now, stale_after=stale_after)
    if proposal.type == OrderType.MARKET:
        assert proposal.quote_price is not None
        if quote is None or quote.stale:
            raise QuoteUnavailable(f"There is no recent price for {proposal.symbol} right now; try again in a moment.")
        drift = drift_bps(proposal.quote_price, quote.price)
        if drift > max_drift_bps:
            old = _proposal(await conn.fetchrow(_DECIDE, proposal_id, "canceled", now))
            new = await propose_order(conn, broker, old.request(), quote=quote, origin="command", now=now, ttl=ttl)
            return Requoted(old, new, drift)
    await _check_plan(conn, str(proposal.type))  # the plan may have changed since the proposal
    order = await broker.submit(conn, proposal.request())
    decided = await conn.fetchrow(_DECIDE, proposal_id, "confirmed", now)
    return Confirmed(_proposal(decided, simulated=quote.simulated if quote else False), order)


async def _order_of(conn: asyncpg.Connection, proposal: Proposal) -> OrderView:
    if proposal.action == "cancel":
        row = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", proposal.target_order_id)
    else:
        row = await conn.fetchrow("SELECT * FROM orders WHERE proposal_id = $1", proposal.id)
    if row is None:  # confirmed proposals always have their order; a missing one is a bug, not user error
        raise RuntimeError(f"confirmed proposal {proposal.id} has no order")
    return order_from_row(row)


async def cancel_proposal(scope: Scope, proposal_id: UUID, *, now: datetime) -> Proposal:
    """The user pressed Cancel: a pending proposal is canceled; a decided one is left as it is and returned."""
    conn = await scope_connection(scope)
    proposal = _proposal(await _locked(conn, proposal_id))
    if proposal.status != "pending":
        return proposal
    return _proposal(await conn.fetchrow(_DECIDE, proposal_id, "canceled", now))


def check_symbol(text: str) -> str:
    """A symbol as typed by a user, in canonical form, or InvalidInput for anything that can't be one."""
    symbol = text.strip().upper()
    if not symbol or len(symbol) > 20 or not all(c.isascii() and (c.isalnum() or c in "-./") for c in symbol):
        raise InvalidInput(f"{text.strip()[:30]!r} is not a symbol: use a ticker like AAPL or a pair like BTC-USD.")
    return symbol


async def expire_proposals(scope: Scope, now: datetime) -> int:
    """Mark every pending proposal past its expiry as expired (the scheduler's job, in system_scope)."""
    conn = await scope_connection(scope)
    status = await conn.execute(
        "UPDATE order_proposals SET status = 'expired', decided_at = $1 WHERE status = 'pending' AND expires_at <= $1",
        now,
    )
    return int(status.rsplit(" ", 1)[-1])
