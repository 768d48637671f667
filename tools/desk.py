"""The desk: one facade over core for every front — Discord commands, the agent's tools, the console, the web chat.

Each method is what one user action needs: it opens that user's scope (the transaction, committed when the method
returns, rolled back on any error), calls one core service and returns plain values for the front to render. Fronts
never open scopes or build SQL themselves, so a rule lives in one place. A user id here always comes from
`identify` (Discord id or console handle), never from what a user or a model typed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from core.alerts.models import Alert
from core.alerts.service import create_alert, delete_alert, list_alerts
from core.auth.service import create_session, end_session, issue_login_token, redeem_login_token, session_user
from core.billing.entitlements import Entitlements, entitlements
from core.billing.gateway import BillingGateway, CheckoutLink, CheckoutRequest
from core.billing.service import customer_of, ever_subscribed
from core.charts import equity_series, period_window, price_series, render_chart
from core.db.database import Database, scope_connection
from core.db.identity import identify
from core.errors import InvalidInput, NotFound
from core.live import notify_live
from core.market.instruments import InstrumentInfo, load_instruments
from core.market.quotes import QuoteSource
from core.market.sessions import Clock, utc_clock
from core.market.ticks import Quote
from core.notifications.dispatcher import Missed, mark_dm_open
from core.notifications.inbox import Inbox, mark_all_read, read_inbox
from core.orders.broker import OPEN_STATUSES, OrderRequest, OrderType, Side, TimeInForce
from core.orders.models import OrderView
from core.orders.paper import PaperBroker, order_from_row
from core.orders.proposals import (
    DEFAULT_MAX_DRIFT_BPS,
    DEFAULT_TTL,
    Confirmed,
    Proposal,
    Requoted,
    cancel_proposal,
    check_symbol,
    confirm_proposal,
    propose_cancel,
    propose_order,
)
from core.portfolio.service import PeriodPnl, PortfolioView, find_portfolio, period_pnl, value_portfolio

log = logging.getLogger(__name__)

ORDER_FILTERS = ("open", "filled", "canceled", "all")
ALERT_KINDS = {"above": "above", "below": "below", "move": "percent"}


@dataclass(frozen=True)
class DeskConfig:
    starting_cash: Decimal
    stale_after: timedelta
    proposal_ttl: timedelta = DEFAULT_TTL
    max_drift_bps: Decimal = DEFAULT_MAX_DRIFT_BPS
    public_url: str = "http://127.0.0.1:8080"  # where Checkout and the portal send the user back
    trial_days: int = 7  # for first-time subscribers


@dataclass(frozen=True)
class PlanView:
    plan: str
    limits: Entitlements
    status: str | None  # the latest subscription's status, None without one
    current_period_end: datetime | None
    cancel_at_period_end: bool
    has_customer: bool
    billing_mode: str  # stripe | simulator


@dataclass(frozen=True)
class Who:
    """The user behind an interaction, and what was held back while their DMs were closed (told once, now)."""

    user_id: UUID
    missed: list[Missed] = field(default_factory=list)


@dataclass(frozen=True)
class OrderDraft:
    """An order as a user asked for it, already parsed to exact values; `portfolio` None is the default one."""

    symbol: str
    side: Side
    qty: Decimal
    type: OrderType = OrderType.MARKET
    tif: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    portfolio: str | None = None


class Desk:
    def __init__(
        self,
        database: Database,
        quotes: QuoteSource,
        broker: PaperBroker,
        config: DeskConfig,
        clock: Clock = utc_clock,
        billing: BillingGateway | None = None,
    ) -> None:
        self.billing = billing
        self.db = database
        self.quotes = quotes
        self.broker = broker
        self.config = config
        self.clock = clock
        self._instruments: dict[str, InstrumentInfo] = {}

    # -- who is asking ------------------------------------------------------------------------------------------

    async def identify_discord(self, discord_id: int, display_name: str | None = None, *, reopen: bool = True) -> Who:
        """The user for a Discord account (created on first contact); reopens their DMs if we had marked them closed
        (not for `reopen=False`: an autocomplete request, whose answer can't carry the notice of what waited)."""
        identity = await identify(self.db, discord_id=discord_id, display_name=display_name)
        return await self._reopen(identity.user_id, identity.dms_closed and reopen)

    async def identify_console(self, handle: str) -> Who:
        identity = await identify(self.db, console_handle=handle)
        return await self._reopen(identity.user_id, identity.dms_closed)

    async def _reopen(self, user_id: UUID, dms_closed: bool) -> Who:
        if not dms_closed:
            return Who(user_id)
        # Users can't change their own dm_status: this one named system_scope does it, for this user only.
        async with self.db.system_scope("notifications.reopen_dms") as s:
            missed = await mark_dm_open(s, user_id, self.clock())
        log.info("notifications: DMs of user %s reopened at their interaction, %d held back", user_id, len(missed))
        return Who(user_id, missed)

    # -- reference data -----------------------------------------------------------------------------------------

    async def instruments(self) -> dict[str, InstrumentInfo]:
        # Instruments change only through migrations: load once per process.
        if not self._instruments:
            self._instruments = await load_instruments(self.db)
        return self._instruments

    async def symbol_choices(self, typed: str, limit: int = 25) -> list[InstrumentInfo]:
        """Instruments whose symbol or name matches what the user has typed so far, symbol prefixes first."""
        needle = typed.strip().upper()
        instruments = list((await self.instruments()).values())
        starts = [i for i in instruments if i.symbol.startswith(needle)]
        contains = [i for i in instruments if i not in starts and (needle in i.symbol or needle in i.name.upper())]
        return (starts + contains)[:limit]

    async def quote(self, symbol: str) -> tuple[InstrumentInfo, Quote]:
        """The last price of a listed symbol; NotFound for an unlisted one, or one never priced yet."""
        canonical = check_symbol(symbol)
        instrument = (await self.instruments()).get(canonical)
        if instrument is None:
            raise NotFound(f"{canonical} is not a symbol TradeDesk lists. Try /quote with a suggestion from the list.")
        quote = await self.quotes.quote(canonical)
        if quote is None:
            raise NotFound(f"There is no price for {canonical} yet; the feed may still be starting.")
        return instrument, quote

    # -- portfolio ----------------------------------------------------------------------------------------------

    async def portfolio(self, user: UUID, name: str | None = None) -> PortfolioView:
        # The bare connection: every dashboard page load and live refresh comes here, and the work is plain SQL.
        async with self.db.user_connection(user) as conn:
            pf = await find_portfolio(conn, name, self.config.starting_cash)
            return await value_portfolio(conn, pf.id, now=self.clock(), stale_after=self.config.stale_after)

    async def held_symbols(self, user: UUID) -> set[str]:
        """The symbols of the user's open positions, in any portfolio (what their live page shows prices of)."""
        async with self.db.user_connection(user) as conn:
            rows = await conn.fetch("SELECT DISTINCT symbol FROM positions WHERE qty <> 0")
        return {r["symbol"] for r in rows}

    async def pnl(self, user: UUID, period: str, name: str | None = None) -> PeriodPnl:
        async with self.db.user_connection(user) as s:
            pf = await find_portfolio(s, name, self.config.starting_cash)
            return await period_pnl(s, pf.id, period, now=self.clock(), stale_after=self.config.stale_after)

    async def chart_symbol(self, symbol: str, period: str) -> bytes:
        """A PNG of a symbol's price over `period` (1d, 1w, 1m, 3m, 1y), from the 1-minute bars."""
        canonical = check_symbol(symbol)
        since, until = period_window(period, self.clock())
        async with self.db.engine.connect() as conn:  # reference data: no user scope needed
            raw = await conn.get_raw_connection()
            series = await price_series(raw.driver_connection, canonical, since=since, until=until)
        return await render_chart(series)  # outside the transaction: rendering takes tens of milliseconds

    async def chart_portfolio(self, user: UUID, period: str, name: str | None = None) -> bytes:
        """A PNG of a portfolio's equity over `period`, from its equity snapshots."""
        since, until = period_window(period, self.clock())
        async with self.db.user_scope(user) as s:
            pf = await find_portfolio(s, name, self.config.starting_cash)
            series = await equity_series(s, pf.id, since=since, until=until)
        return await render_chart(series)

    # -- billing ----------------------------------------------------------------------------------------------

    def _gateway(self) -> BillingGateway:
        if self.billing is None:
            raise InvalidInput("Billing is not available in this process.")
        return self.billing

    async def plan(self, user: UUID) -> PlanView:
        async with self.db.user_scope(user) as s:
            conn = await scope_connection(s)
            plan = await entitlements(conn)
            sub = await conn.fetchrow(
                "SELECT status, current_period_end, cancel_at_period_end FROM subscriptions ORDER BY created_at DESC"
                " LIMIT 1"
            )
            customer = await customer_of(s, user)
        return PlanView(
            plan=plan.plan,
            limits=plan,
            status=sub["status"] if sub else None,
            current_period_end=sub["current_period_end"] if sub else None,
            cancel_at_period_end=bool(sub and sub["cancel_at_period_end"]),
            has_customer=customer is not None,
            billing_mode=self.billing.mode if self.billing else "none",
        )

    async def upgrade_link(self, user: UUID) -> CheckoutLink | None:
        """A Checkout link for Pro (a trial for first-time subscribers), or None when the user is on Pro already."""
        gateway = self._gateway()
        async with self.db.user_scope(user) as s:
            if (await entitlements(s)).plan == "pro":
                return None
            customer = await customer_of(s, user)
            first_time = not await ever_subscribed(s, user)
        base = self.config.public_url.rstrip("/")
        return await gateway.create_checkout(  # a network call: after the transaction, never inside it
            CheckoutRequest(
                user_id=user,
                success_url=f"{base}/billing/success",
                cancel_url=f"{base}/billing/cancel",
                customer_id=customer,
                trial_days=self.config.trial_days if first_time and self.config.trial_days else None,
            )
        )

    async def billing_link(self, user: UUID) -> str:
        """A Billing Portal link to manage the subscription; NotFound before the first subscription."""
        gateway = self._gateway()
        async with self.db.user_scope(user) as s:
            customer = await customer_of(s, user)
        if customer is None:
            raise NotFound("You have no subscription to manage yet: /upgrade starts one.")
        return await gateway.create_portal(customer, f"{self.config.public_url.rstrip('/')}/billing/return")

    # -- dashboard sign-in ------------------------------------------------------------------------------------

    async def dashboard_link(self, user: UUID) -> str:
        """A one-time sign-in link to the web dashboard (valid ~10 minutes); give it privately, never by the outbox."""
        async with self.db.user_scope(user) as s:
            token = await issue_login_token(s, user, self.clock())
        return f"{self.config.public_url.rstrip('/')}/login/{token}"

    async def sign_in(self, login_token: str, user_agent: str | None = None) -> str:
        """Redeem a login link (once) and open a web session; returns the session cookie's secret.

        InvalidLogin for an expired, used or unknown link (nothing is written then).
        """
        user = await redeem_login_token(self.db, login_token, self.clock())
        return await create_session(self.db, user, self.clock(), user_agent=user_agent)

    async def web_user(self, session_token: str) -> UUID | None:
        """The user behind a session cookie, None when it is unknown, expired or logged out."""
        return await session_user(self.db, session_token, self.clock())

    async def sign_out(self, user: UUID, session_token: str) -> None:
        async with self.db.user_scope(user) as s:
            await end_session(s, session_token)

    # -- orders -------------------------------------------------------------------------------------------------

    async def propose(self, user: UUID, draft: OrderDraft, *, origin: str = "command") -> Proposal:
        """Price and check an order and store it as a proposal the user must confirm; nothing trades yet."""
        symbol = check_symbol(draft.symbol)
        quote = await self.quotes.quote(symbol)
        async with self.db.user_scope(user) as s:
            pf = await find_portfolio(s, draft.portfolio, self.config.starting_cash)
            request = OrderRequest(
                portfolio_id=pf.id,
                symbol=symbol,
                side=draft.side,
                type=draft.type,
                qty=draft.qty,
                tif=draft.tif,
                limit_price=draft.limit_price,
                stop_price=draft.stop_price,
            )
            return await propose_order(
                s, self.broker, request, quote=quote, origin=origin, now=self.clock(), ttl=self.config.proposal_ttl
            )

    async def propose_cancel(self, user: UUID, order_id: UUID, *, origin: str = "agent") -> Proposal:
        async with self.db.user_scope(user) as s:
            return await propose_cancel(s, order_id, origin=origin, now=self.clock(), ttl=self.config.proposal_ttl)

    async def confirm(self, user: UUID, proposal_id: UUID) -> Confirmed | Requoted:
        """Carry out a proposal the user confirmed by button (the only way an order placed from a proposal trades)."""
        async with self.db.user_scope(user) as s:
            result = await confirm_proposal(
                s,
                self.broker,
                proposal_id,
                stale_after=self.config.stale_after,
                now=self.clock(),
                max_drift_bps=self.config.max_drift_bps,
                ttl=self.config.proposal_ttl,
            )
            if isinstance(result, Confirmed):
                await notify_live(s, {user: ("orders", "portfolio")})
            return result

    async def cancel_proposal(self, user: UUID, proposal_id: UUID) -> Proposal:
        async with self.db.user_scope(user) as s:
            return await cancel_proposal(s, proposal_id, now=self.clock())

    async def orders(self, user: UUID, status: str = "open", limit: int = 25) -> list[OrderView]:
        if status not in ORDER_FILTERS:
            raise InvalidInput(f"Unknown order status {status!r}: use {', '.join(ORDER_FILTERS)}.")
        statuses = {
            "open": list(OPEN_STATUSES),
            "filled": ["filled"],
            "canceled": ["canceled", "expired", "rejected"],
            "all": None,
        }[status]
        async with self.db.user_scope(user) as s:
            conn = await scope_connection(s)
            rows = await conn.fetch(
                "SELECT * FROM orders WHERE ($1::text[] IS NULL OR status = ANY($1)) ORDER BY created_at DESC LIMIT $2",
                statuses,
                limit,
            )
        return [order_from_row(r) for r in rows]

    async def cancel_order(self, user: UUID, order_id: UUID) -> OrderView:
        async with self.db.user_scope(user) as s:
            order = await self.broker.cancel(s, order_id)
            await notify_live(s, {user: ("orders", "portfolio")})
            return order

    async def open_order_choices(self, user: UUID, typed: str, limit: int = 25) -> list[OrderView]:
        """The user's open orders matching what they typed (symbol or id prefix), newest first, for autocomplete."""
        needle = typed.strip().lower()
        orders = await self.orders(user, "open", limit=100)
        return [o for o in orders if needle in o.symbol.lower() or str(o.id).startswith(needle)][:limit]

    # -- alerts -------------------------------------------------------------------------------------------------

    async def alerts(self, user: UUID) -> list[Alert]:
        async with self.db.user_scope(user) as s:
            return await list_alerts(s)

    async def add_alert(
        self,
        user: UUID,
        symbol: str,
        kind: str,
        value: Decimal,
        *,
        recurring: bool = False,
        cooldown: timedelta | None = None,
        note: str | None = None,
    ) -> Alert:
        """An alert on a price level (above/below) or a percent move from the current price (move)."""
        if kind not in ALERT_KINDS:
            raise InvalidInput(f"Unknown alert kind {kind!r}: use above, below or move.")
        canonical = check_symbol(symbol)
        quote = await self.quotes.quote(canonical)
        async with self.db.user_scope(user) as s:
            alert = await create_alert(
                s,
                canonical,
                ALERT_KINDS[kind],
                value,
                recurring=recurring,
                cooldown=cooldown,
                note=note,
                last_price=quote.price if quote else None,
                now=self.clock(),
            )
            await notify_live(s, {user: ("alerts",)})
            return alert

    async def remove_alert(self, user: UUID, alert_id: UUID) -> None:
        async with self.db.user_scope(user) as s:
            await delete_alert(s, alert_id)
            await notify_live(s, {user: ("alerts",)})

    async def alert_choices(self, user: UUID, typed: str, limit: int = 25) -> list[Alert]:
        needle = typed.strip().lower()
        alerts = await self.alerts(user)
        return [a for a in alerts if needle in a.symbol.lower() or str(a.id).startswith(needle)][:limit]

    # -- notifications ------------------------------------------------------------------------------------------

    async def inbox(self, user: UUID) -> Inbox:
        """The user's latest notifications (what the bot DMed them, or holds back), newest first."""
        async with self.db.user_scope(user) as s:
            return await read_inbox(s)

    async def mark_inbox_read(self, user: UUID) -> int:
        async with self.db.user_scope(user) as s:
            return await mark_all_read(s, self.clock())
