"""The tools the model (or the offline planner) may call: one per capability, each a call into the Desk.

Each tool is an arguments model — its docstring and field descriptions are exactly what the model reads — and a
handler `(ctx, args) -> dict` returning compact JSON: money as strings with a currency, quantities and prices as
exact decimal strings, and an `as_of` time wherever a price is involved. The user is `ctx.user_id`, set by the
transport from the Discord interaction or console handle; no tool takes a user id, so nothing the model writes can
point a tool at another user's data (and RLS would refuse it anyway).

Orders are proposals: `propose_order` and `cancel_order` store a proposal the user confirms with a button (or
`confirm ID` on the console). No tool places or cancels an order by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.alerts.models import Alert
from core.errors import InvalidInput, NotFound
from core.money import cents, parse_decimal, parse_positive
from core.orders.broker import OrderType, Side, TimeInForce
from core.orders.models import OrderView
from core.orders.proposals import Proposal
from core.portfolio.service import COST_BASIS_METHOD, PortfolioView, PositionView
from tools.context import ToolContext
from tools.desk import OrderDraft

JsonDict = dict[str, Any]


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# -- rendering helpers: exact strings, never floats -----------------------------------------------------------------


def dec(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(value: Decimal | None) -> str | None:
    return None if value is None else format(cents(value), "f")


def ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def position_json(p: PositionView) -> JsonDict:
    return {
        "symbol": p.symbol,
        "qty": dec(p.qty),
        "avg_cost": dec(p.avg_cost),
        "cost_basis": money(p.cost_basis),
        "last_price": dec(p.price),
        "price_as_of": ts(p.price_as_of),
        "price_stale": p.stale,
        "market_value": money(p.market_value),
        "unrealized_pnl": money(p.unrealized_pnl),
        "realized_pnl": money(p.realized_pnl),
    }


def portfolio_json(v: PortfolioView, *, positions: bool = True) -> JsonDict:
    data: JsonDict = {
        "portfolio": v.name,
        "currency": v.currency,
        "cash": money(v.cash),
        "market_value": money(v.market_value),
        "equity": money(v.equity),
        "day_change": money(v.day_change),
        "unrealized_pnl": money(v.unrealized_pnl),
        "realized_pnl": money(v.realized_pnl),
        "net_deposits": money(v.net_deposits),
        "cost_basis_method": COST_BASIS_METHOD,
        "as_of": ts(v.as_of),
        "simulated_prices": v.simulated,
        "complete": v.complete,
    }
    if positions:
        data["positions"] = [position_json(p) for p in v.positions if p.qty != 0]
    return data


def order_json(o: OrderView) -> JsonDict:
    return {
        "order_id": str(o.id),
        "symbol": o.symbol,
        "side": o.side,
        "type": o.type,
        "tif": o.tif,
        "qty": dec(o.qty),
        "limit_price": dec(o.limit_price),
        "stop_price": dec(o.stop_price),
        "status": o.status,
        "filled_qty": dec(o.filled_qty),
        "avg_fill_price": dec(o.avg_fill_price),
        "created_at": ts(o.created_at),
    }


def proposal_json(p: Proposal) -> JsonDict:
    data: JsonDict = {
        "proposal_id": str(p.id),
        "action": p.action,
        "status": p.status,
        "expires_at": ts(p.expires_at),
        "needs_confirmation": True,
        "note": "Nothing is placed until the user presses Confirm (or types confirm ID on the console).",
    }
    if p.action == "place":
        data |= {
            "symbol": p.symbol,
            "side": p.side,
            "type": p.type,
            "tif": p.tif,
            "qty": dec(p.qty),
            "limit_price": dec(p.limit_price),
            "stop_price": dec(p.stop_price),
            "quote_price": dec(p.quote_price),
            "quote_as_of": ts(p.quote_ts),
            "simulated_prices": p.simulated,
            "estimated_fill_price": dec(p.estimate_price) if p.estimate_status == "filled" else None,
        }
    else:
        data["order_id"] = str(p.target_order_id)
    return data


def alert_json(a: Alert) -> JsonDict:
    return {
        "alert_id": str(a.id),
        "symbol": a.symbol,
        "direction": a.direction,
        "threshold": dec(a.threshold),
        "percent": dec(a.percent),
        "reference_price": dec(a.reference_price),
        "recurring": a.recurring,
        "cooldown_seconds": a.cooldown_seconds,
        "note": a.note,
        "status": a.status,
        "created_at": ts(a.created_at),
    }


# -- the tools ------------------------------------------------------------------------------------------------------

Portfolio = Field(default=None, description="Portfolio name; omit for the user's main portfolio.", max_length=40)


class GetPortfolio(ToolArgs):
    """The user's paper portfolio: cash, equity, day change, realized and unrealized P&L, and every open position,
    valued at the last prices (with their "as of" time)."""

    model_config = ConfigDict(title="get_portfolio")
    portfolio: str | None = Portfolio


class GetPosition(ToolArgs):
    """The user's position in one symbol: quantity, average cost (fees included), last price, market value and P&L.
    Returns held=false when the user has no position in it."""

    model_config = ConfigDict(title="get_position")
    symbol: str = Field(description="Ticker like AAPL or crypto pair like BTC-USD.", min_length=1, max_length=20)
    portfolio: str | None = Portfolio


class GetQuote(ToolArgs):
    """The last traded price of one symbol, with its time and whether it is simulated or stale."""

    model_config = ConfigDict(title="get_quote")
    symbol: str = Field(description="Ticker like AAPL or crypto pair like BTC-USD.", min_length=1, max_length=20)


class GetPnl(ToolArgs):
    """Profit and loss of the user's portfolio over a period, deposits and withdrawals not counted. "day" starts at
    midnight in the user's time zone; week, month and year are the last 7, 30 and 365 days."""

    model_config = ConfigDict(title="get_pnl")
    period: Literal["day", "week", "month", "year", "all"] = Field(default="day", description="The period.")
    portfolio: str | None = Portfolio


class ListOrders(ToolArgs):
    """The user's paper orders, newest first."""

    model_config = ConfigDict(title="list_orders")
    status: Literal["open", "filled", "canceled", "all"] = Field(default="open", description="Which orders.")


class ProposeOrder(ToolArgs):
    """Prepare a paper buy or sell order for the user to confirm with a button. It does NOT place the order: the
    result is a proposal priced at the current quote; tell the user to confirm it."""

    model_config = ConfigDict(title="propose_order")
    symbol: str = Field(description="Ticker like AAPL or crypto pair like BTC-USD.", min_length=1, max_length=20)
    side: Literal["buy", "sell"] = Field(description="buy or sell.")
    qty: str = Field(description='Quantity as a decimal string, e.g. "10" or "0.015".', min_length=1, max_length=40)
    type: Literal["market", "limit", "stop", "stop_limit"] = Field(default="market", description="Order type.")
    limit_price: str | None = Field(default=None, description="Limit price (limit and stop_limit only).")
    stop_price: str | None = Field(default=None, description="Stop price (stop and stop_limit only).")
    tif: Literal["day", "gtc", "ioc"] = Field(default="day", description="Time in force.")
    portfolio: str | None = Portfolio

    @field_validator("qty")
    @classmethod
    def _qty(cls, value: str) -> str:
        parse_positive(value, "quantity")
        return value

    @field_validator("limit_price", "stop_price")
    @classmethod
    def _price(cls, value: str | None) -> str | None:
        if value is not None:
            parse_positive(value, "price")
        return value


class CancelOrder(ToolArgs):
    """Prepare the cancellation of one of the user's open orders, for the user to confirm with a button. It does NOT
    cancel by itself. Get the order_id from list_orders."""

    model_config = ConfigDict(title="cancel_order")
    order_id: str = Field(description="The order_id from list_orders.", min_length=1, max_length=40)


class ListAlerts(ToolArgs):
    """The user's active price alerts."""

    model_config = ConfigDict(title="list_alerts")


class CreateAlert(ToolArgs):
    """Create a price alert that DMs the user when it fires: when the price rises above or falls below a level, or
    moves by a percent from the current price (value "-5" for a 5% drop, "5" for a 5% rise)."""

    model_config = ConfigDict(title="create_alert")
    symbol: str = Field(description="Ticker like AAPL or crypto pair like BTC-USD.", min_length=1, max_length=20)
    condition: Literal["above", "below", "move"] = Field(description="above/below a price, or move by a percent.")
    value: str = Field(description='The price level, or the percent for "move", as a decimal string.', max_length=40)
    recurring: bool = Field(default=False, description="Fire again on every later crossing (default: once).")
    cooldown_minutes: int | None = Field(default=None, ge=1, le=43_200, description="Minutes between two firings.")
    note: str | None = Field(default=None, max_length=300, description="A note to include in the DM.")


class DeleteAlert(ToolArgs):
    """Delete one of the user's price alerts. Get the alert_id from list_alerts."""

    model_config = ConfigDict(title="delete_alert")
    alert_id: str = Field(description="The alert_id from list_alerts.", min_length=1, max_length=40)


class GetChart(ToolArgs):
    """A chart image of a symbol's price or of the user's portfolio equity; the image is attached to the reply."""

    model_config = ConfigDict(title="get_chart")
    target: str = Field(description='A symbol like AAPL, or "portfolio".', min_length=1, max_length=20)
    period: Literal["1d", "1w", "1m", "3m", "1y"] = Field(default="1d", description="How far back.")


class GetPlan(ToolArgs):
    """The user's plan (free or pro) and what it includes: alert quota, AI questions per day, order types."""

    model_config = ConfigDict(title="get_plan")


def _uuid(text: str, what: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise NotFound(f"There is no {what} with id {text[:40]!r}.") from None


async def get_portfolio(ctx: ToolContext, args: GetPortfolio) -> JsonDict:
    return portfolio_json(await ctx.desk.portfolio(ctx.user_id, args.portfolio))


async def get_position(ctx: ToolContext, args: GetPosition) -> JsonDict:
    view = await ctx.desk.portfolio(ctx.user_id, args.portfolio)
    symbol = args.symbol.strip().upper()
    held = next((p for p in view.positions if p.symbol == symbol and p.qty != 0), None)
    if held is None:
        instrument, quote = await ctx.desk.quote(symbol)
        return {
            "symbol": instrument.symbol,
            "held": False,
            "portfolio": view.name,
            "last_price": dec(quote.price),
            "price_as_of": ts(quote.ts),
            "simulated_prices": quote.simulated,
        }
    return {
        "held": True,
        "portfolio": view.name,
        "cost_basis_method": COST_BASIS_METHOD,
        "simulated_prices": held.price_source == "sim",
    } | position_json(held)


async def get_quote(ctx: ToolContext, args: GetQuote) -> JsonDict:
    instrument, quote = await ctx.desk.quote(args.symbol)
    return {
        "symbol": instrument.symbol,
        "name": instrument.name,
        "price": dec(quote.price),
        "currency": instrument.quote_currency,
        "as_of": ts(quote.ts),
        "stale": quote.stale,
        "simulated_prices": quote.simulated,
    }


async def get_pnl(ctx: ToolContext, args: GetPnl) -> JsonDict:
    result = await ctx.desk.pnl(ctx.user_id, args.period, args.portfolio)
    return {
        "period": result.period,
        "since": ts(result.since) if result.since else "portfolio opened",
        "pnl": money(result.change),
        "history_available": result.change is not None,
    } | portfolio_json(result.portfolio, positions=False)


async def list_orders(ctx: ToolContext, args: ListOrders) -> JsonDict:
    orders = await ctx.desk.orders(ctx.user_id, args.status)
    return {"status_filter": args.status, "orders": [order_json(o) for o in orders]}


async def propose_order(ctx: ToolContext, args: ProposeOrder) -> JsonDict:
    draft = OrderDraft(
        symbol=args.symbol,
        side=Side(args.side),
        qty=parse_positive(args.qty, "quantity"),
        type=OrderType(args.type),
        tif=TimeInForce(args.tif),
        limit_price=parse_positive(args.limit_price, "limit price") if args.limit_price else None,
        stop_price=parse_positive(args.stop_price, "stop price") if args.stop_price else None,
        portfolio=args.portfolio,
    )
    proposal = await ctx.desk.propose(ctx.user_id, draft, origin=ctx.origin)
    ctx.proposals.append(proposal)
    return proposal_json(proposal)


async def cancel_order(ctx: ToolContext, args: CancelOrder) -> JsonDict:
    proposal = await ctx.desk.propose_cancel(ctx.user_id, _uuid(args.order_id, "order"), origin=ctx.origin)
    ctx.proposals.append(proposal)
    return proposal_json(proposal)


async def list_alerts(ctx: ToolContext, args: ListAlerts) -> JsonDict:
    return {"alerts": [alert_json(a) for a in await ctx.desk.alerts(ctx.user_id)]}


async def create_alert(ctx: ToolContext, args: CreateAlert) -> JsonDict:
    try:
        value = parse_decimal(args.value.replace("%", ""), "value")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    alert = await ctx.desk.add_alert(
        ctx.user_id,
        args.symbol,
        args.condition,
        value,
        recurring=args.recurring,
        cooldown=timedelta(minutes=args.cooldown_minutes) if args.cooldown_minutes else None,
        note=args.note,
    )
    return {"created": True} | alert_json(alert)


async def delete_alert(ctx: ToolContext, args: DeleteAlert) -> JsonDict:
    alert_id = _uuid(args.alert_id, "alert")
    await ctx.desk.remove_alert(ctx.user_id, alert_id)
    return {"deleted": True, "alert_id": str(alert_id)}


async def get_chart(ctx: ToolContext, args: GetChart) -> JsonDict:
    if args.target.strip().lower() == "portfolio":
        png = await ctx.desk.chart_portfolio(ctx.user_id, args.period)
        name = "equity.png"
    else:
        png = await ctx.desk.chart_symbol(args.target, args.period)
        name = f"{args.target.strip().upper()}.png"
    ctx.attachments.append((name, png))
    return {"chart": name, "period": args.period, "attached": True}


async def get_plan(ctx: ToolContext, args: GetPlan) -> JsonDict:
    plan = (await ctx.desk.plan(ctx.user_id)).limits
    return {
        "plan": plan.plan,
        "alert_quota": plan.alert_quota,
        "ai_questions_per_day": plan.ai_questions_per_day,
        "order_types": sorted(plan.order_types),
    }


@dataclass(frozen=True)
class Tool:
    name: str
    args: type[ToolArgs]
    handler: Callable[[ToolContext, Any], Awaitable[JsonDict]]
    about_money: bool  # its result concerns the user's money: the reply is checked by the grounding guard


TOOLS: tuple[Tool, ...] = (
    Tool("get_portfolio", GetPortfolio, get_portfolio, True),
    Tool("get_position", GetPosition, get_position, True),
    Tool("get_quote", GetQuote, get_quote, True),
    Tool("get_pnl", GetPnl, get_pnl, True),
    Tool("list_orders", ListOrders, list_orders, True),
    Tool("propose_order", ProposeOrder, propose_order, True),
    Tool("cancel_order", CancelOrder, cancel_order, True),
    Tool("list_alerts", ListAlerts, list_alerts, True),
    Tool("create_alert", CreateAlert, create_alert, True),
    Tool("delete_alert", DeleteAlert, delete_alert, False),
    Tool("get_chart", GetChart, get_chart, False),
    Tool("get_plan", GetPlan, get_plan, False),
)
BY_NAME = {t.name: t for t in TOOLS}
