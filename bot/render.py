"""Discord renderings of core's values: embeds a trader reads at a glance, exact to the cent.

Money is shown rounded to the cent (half even, as the books round) with its currency; quantities and prices with
their own digits, never through float. Every reply built on prices says when they are simulated and "as of" when.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import discord

from core.alerts.models import Alert
from core.market.instruments import InstrumentInfo
from core.market.ticks import Quote
from core.money import cents
from core.orders.models import OrderView
from core.orders.proposals import Proposal
from core.portfolio.service import PeriodPnl, PortfolioView

GREEN = discord.Colour(0x2E7D32)
RED = discord.Colour(0xC62828)
NEUTRAL = discord.Colour(0x455A64)
SIMULATED = "Prices are simulated (local sim feed), not real market data."
MAX_ROWS = 20


def money(amount: Decimal, currency: str = "USD") -> str:
    value = cents(amount)
    sign = "-" if value < 0 else ""
    symbol = "$" if currency == "USD" else ""
    suffix = "" if symbol else f" {currency}"
    return f"{sign}{symbol}{abs(value):,.2f}{suffix}"


def signed_money(amount: Decimal, currency: str = "USD") -> str:
    return ("+" if cents(amount) > 0 else "") + money(amount, currency)


def number(value: Decimal) -> str:
    """A quantity or price with its significant digits only (10, 0.015, 190.5)."""
    text = format(value, "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    integer, _, fraction = text.partition(".")
    grouped = f"{int(integer):,}" if integer.lstrip("-").isdigit() else integer
    if integer.startswith("-") and not grouped.startswith("-"):
        grouped = "-" + grouped
    return f"{grouped}.{fraction}" if fraction else grouped


def price(value: Decimal) -> str:
    """A price: its significant digits, but at least cents (200.00, 0.0123, 61,234.5 -> 61,234.50)."""
    text = number(value)
    integer, _, fraction = text.partition(".")
    return f"{integer}.{fraction.ljust(2, '0')}"


def when(at: datetime) -> str:
    """A Discord timestamp: every reader sees it in their own time zone."""
    return f"<t:{int(at.timestamp())}:T>"


def _colour(amount: Decimal | None) -> discord.Colour:
    if amount is None or cents(amount) == 0:
        return NEUTRAL
    return GREEN if amount > 0 else RED


def _footer(embed: discord.Embed, *, simulated: bool, as_of: datetime | None, extra: str | None = None) -> None:
    parts = [p for p in (extra, SIMULATED if simulated else None) if p]
    if parts:
        embed.set_footer(text=" ".join(parts))
    if as_of is not None:
        embed.timestamp = as_of


def portfolio_embed(view: PortfolioView) -> discord.Embed:
    c = view.currency
    embed = discord.Embed(title=f"Portfolio — {view.name}", colour=_colour(view.day_change))
    embed.add_field(name="Equity", value=money(view.equity, c))
    embed.add_field(name="Cash", value=money(view.cash, c))
    embed.add_field(name="Positions value", value=money(view.market_value, c))
    embed.add_field(name="Day change", value=signed_money(view.day_change, c) if view.day_change is not None else "—")
    embed.add_field(name="Unrealized P&L", value=signed_money(view.unrealized_pnl, c))
    embed.add_field(name="Realized P&L", value=signed_money(view.realized_pnl, c))
    held = [p for p in view.positions if p.qty != 0]
    embed.description = f"{len(held)} open position(s), prices as of {when(view.as_of)}." + (
        "" if view.complete else " Some positions have no price yet and are left out of the totals."
    )
    _footer(embed, simulated=view.simulated, as_of=view.as_of, extra=f"Cost basis: {view.cost_basis_method}.")
    return embed


def positions_embed(view: PortfolioView) -> discord.Embed:
    c = view.currency
    held = [p for p in view.positions if p.qty != 0]
    embed = discord.Embed(title=f"Positions — {view.name}", colour=_colour(view.unrealized_pnl))
    if not held:
        embed.description = "No open positions. Try `/buy` to place a paper order."
    lines = []
    for p in held[:MAX_ROWS]:
        value = money(p.market_value, c) if p.market_value is not None else "no price"
        pnl = signed_money(p.unrealized_pnl, c) if p.unrealized_pnl is not None else "—"
        last = price(p.price) if p.price is not None else "—"
        stale = " (stale)" if p.stale else ""
        lines.append(f"**{p.symbol}** {number(p.qty)} @ avg {price(p.avg_cost)} · last {last}{stale} · {value} · {pnl}")
    if len(held) > MAX_ROWS:
        lines.append(f"… and {len(held) - MAX_ROWS} more; the dashboard shows them all.")
    if lines:
        embed.description = "\n".join(lines)
    _footer(embed, simulated=view.simulated, as_of=view.as_of, extra=f"Cost basis: {view.cost_basis_method}.")
    return embed


def pnl_embed(result: PeriodPnl) -> discord.Embed:
    view = result.portfolio
    c = view.currency
    title = (
        "all time"
        if result.period == "all"
        else f"this {result.period}"
        if result.period == "day"
        else (f"last {result.period}")
    )
    embed = discord.Embed(title=f"P&L {title} — {view.name}", colour=_colour(result.change))
    if result.change is None:
        embed.description = "Not enough history yet for that period: equity is recorded every few minutes."
    else:
        since = "since the portfolio opened" if result.since is None else f"since {when(result.since)}"
        embed.description = f"**{signed_money(result.change, c)}** {since} (deposits and withdrawals not counted)."
    embed.add_field(name="Equity", value=money(view.equity, c))
    embed.add_field(name="Unrealized P&L", value=signed_money(view.unrealized_pnl, c))
    embed.add_field(name="Realized P&L", value=signed_money(view.realized_pnl, c))
    _footer(embed, simulated=view.simulated, as_of=view.as_of, extra=f"Cost basis: {view.cost_basis_method}.")
    return embed


def quote_embed(instrument: InstrumentInfo, quote: Quote) -> discord.Embed:
    embed = discord.Embed(title=f"{instrument.symbol} — {instrument.name}", colour=NEUTRAL)
    embed.description = f"**{price(quote.price)} {instrument.quote_currency}** as of {when(quote.ts)}" + (
        " — stale: no recent tick" if quote.stale else ""
    )
    _footer(embed, simulated=quote.simulated, as_of=quote.ts)
    return embed


def describe_order(kind: str | None, side: str | None, qty: Decimal | None, symbol: str | None,
                   limit: Decimal | None, stop: Decimal | None, tif: str | None) -> str:  # fmt: skip
    text = f"{(side or '').upper()} {number(qty) if qty is not None else '?'} {symbol} {(kind or '').replace('_', '-')}"
    if stop is not None:
        text += f" stop {price(stop)}"
    if limit is not None:
        text += f" limit {price(limit)}"
    return f"{text} ({(tif or '').upper()})"


def proposal_embed(p: Proposal, *, note: str | None = None) -> discord.Embed:
    embed = discord.Embed(title="Confirm this paper order?", colour=NEUTRAL)
    lines = [f"**{describe_order(p.type, p.side, p.qty, p.symbol, p.limit_price, p.stop_price, p.tif)}**"]
    if p.quote_price is not None and p.quote_ts is not None:
        lines.append(f"Priced at {price(p.quote_price)} as of {when(p.quote_ts)}.")
    if p.estimate_status == "filled" and p.estimate_price is not None and p.qty is not None:
        lines.append(f"Would fill now at about {price(p.estimate_price)} (≈ {money(p.estimate_price * p.qty)}).")
    elif p.estimate_status == "new":
        lines.append("Would rest on the book until its price is reached.")
    lines.append(f"Expires {discord.utils.format_dt(p.expires_at, 'R')}. Nothing is placed until you confirm.")
    if note:
        lines.insert(0, note)
    embed.description = "\n".join(lines)
    _footer(embed, simulated=p.simulated, as_of=p.quote_ts)
    return embed


def order_line(o: OrderView) -> str:
    text = describe_order(o.type, o.side, o.qty, o.symbol, o.limit_price, o.stop_price, o.tif)
    status = o.status.replace("_", " ")
    if o.filled_qty and o.avg_fill_price is not None:
        status += f" {number(o.filled_qty)} @ {price(o.avg_fill_price)}"
    return f"`{str(o.id)[:8]}` {text} — {status}"


def order_result_embed(o: OrderView, *, simulated: bool) -> discord.Embed:
    filled = o.status == "filled"
    embed = discord.Embed(title="Order filled" if filled else f"Order {o.status.replace('_', ' ')}",
                          colour=GREEN if filled else NEUTRAL)  # fmt: skip
    embed.description = order_line(o)
    if o.reject_reason:
        embed.description += f"\n{o.reject_reason}"
    _footer(embed, simulated=simulated, as_of=o.updated_at, extra="Paper trading: no real money moved.")
    return embed


def orders_embed(orders: Sequence[OrderView], status: str) -> discord.Embed:
    embed = discord.Embed(title=f"Orders — {status}", colour=NEUTRAL)
    if not orders:
        embed.description = "No orders." if status != "open" else "No open orders."
    else:
        embed.description = "\n".join(order_line(o) for o in orders[:MAX_ROWS])
    return embed


def alert_line(a: Alert) -> str:
    if a.kind == "percent" and a.percent is not None and a.reference_price is not None:
        what = f"moves {number(a.percent)}% from {price(a.reference_price)} (to {price(a.threshold)})"
    else:
        what = f"{a.direction} {price(a.threshold)}"
    extra = " · recurring" if a.recurring else ""
    note = f" — {a.note}" if a.note else ""
    return f"`{str(a.id)[:8]}` **{a.symbol}** {what}{extra}{note}"


def alerts_embed(alerts: Sequence[Alert]) -> discord.Embed:
    embed = discord.Embed(title="Your alerts", colour=NEUTRAL)
    embed.description = "\n".join(alert_line(a) for a in alerts[:MAX_ROWS]) if alerts else "No active alerts."
    if len(alerts) > MAX_ROWS:
        embed.description += f"\n… and {len(alerts) - MAX_ROWS} more."
    return embed
