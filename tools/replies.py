"""Plain, short replies rendered from tool results (the offline planner's voice).

Every number is copied from the JSON as the tool wrote it — exact decimal strings, never parsed into floats — with
only thousands separators and a $ added for USD amounts. Prices carry "as of <time> UTC" and "(simulated prices)"
when the tool says so; positions, portfolios and P&L name the cost-basis method. An error result renders its message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from tools.catalog import JsonDict
from tools.registry import ToolResult

_NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?$")


def group(number: str) -> str:
    """Thousands separators on an exact decimal string: "1234567.5" -> "1,234,567.5" (no float involved)."""
    if not _NUMBER.match(number):
        return number
    sign = number[0] if number[0] in "+-" else ""
    digits = number[len(sign) :]
    whole, dot, frac = digits.partition(".")
    parts: list[str] = []
    while len(whole) > 3:
        parts.insert(0, whole[-3:])
        whole = whole[:-3]
    parts.insert(0, whole)
    return sign + ",".join(parts) + dot + frac


def usd(value: object, currency: str = "USD", *, signed: bool = False) -> str:
    """An amount as "$1,234.50" / "-$12.30" (or "+$12.30" when `signed`); another currency as "1,234.5 USDT"."""
    if value is None:
        return "n/a"
    text = str(value)
    if not _NUMBER.match(text):
        return text
    negative = text.startswith("-")
    body = group(text.lstrip("+-"))
    if currency != "USD":
        return f"{'-' if negative else ''}{body} {currency}"
    sign = "-" if negative else ("+" if signed and body.strip("0.,") else "")
    return f"{sign}${body}"


def currency_of(symbol: object) -> str:
    text = str(symbol or "")
    return text.rsplit("-", 1)[1] if "-" in text else "USD"


def as_of(value: object) -> str:
    """ "as of 2026-11-25 19:30 UTC" from an ISO time (any offset)."""
    if not value:
        return "time unknown"
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return f"as of {value}"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"as of {moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC"


def _sim(data: JsonDict) -> str:
    return " (simulated prices)" if data.get("simulated_prices") else ""


def _qty(symbol: str, qty: object) -> str:
    return f"{group(str(qty))} {symbol}"


def describe_alert(a: JsonDict) -> str:
    symbol = str(a.get("symbol"))
    cur = currency_of(symbol)
    verb = "rises above" if a.get("direction") == "above" else "falls below"
    text = f"{symbol} {verb} {usd(a.get('threshold'), cur)}"
    if a.get("percent") is not None:
        text += f" ({a['percent']}% from {usd(a.get('reference_price'), cur)})"
    text += ", every time" if a.get("recurring") else ", once"
    return text


def _how(o: JsonDict, cur: str) -> str:
    """ "at market", "limit $240", "stop $180", "stop $180 limit $179"."""
    parts = []
    if o.get("stop_price"):
        parts.append(f"stop {usd(o['stop_price'], cur)}")
    if o.get("limit_price"):
        parts.append(f"limit {usd(o['limit_price'], cur)}")
    return " ".join(parts) or "at market"


def describe_order(o: JsonDict) -> str:
    symbol = str(o.get("symbol"))
    cur = currency_of(symbol)
    text = f"{o.get('side')} {_qty(symbol, o.get('qty'))} {_how(o, cur)} ({str(o.get('tif', '')).upper()}, "
    filled = o.get("filled_qty") not in (None, "0")
    if o.get("status") == "filled" or filled:
        state = "filled" if o.get("status") == "filled" else f"{o.get('status')}, filled"
        text += f"{state} {group(str(o['filled_qty']))}"
        if o.get("avg_fill_price"):
            text += f" at {usd(o['avg_fill_price'], cur)}"
    else:
        text += str(o.get("status"))
    return text + ")"


def _quote(d: JsonDict) -> str:
    symbol = str(d.get("symbol"))
    name = f" ({d['name']})" if d.get("name") else ""
    stale = " — this price is stale, the feed may be behind" if d.get("stale") else ""
    return (
        f"{symbol}{name}: {usd(d.get('price'), str(d.get('currency', 'USD')))} {as_of(d.get('as_of'))}{_sim(d)}{stale}."
    )


def _position(d: JsonDict) -> str:
    symbol = str(d.get("symbol"))
    cur = currency_of(symbol)
    if not d.get("held"):
        return (
            f"You have no {symbol} position. {symbol} last traded at {usd(d.get('last_price'), cur)} "
            f"{as_of(d.get('price_as_of'))}{_sim(d)}."
        )
    stale = " (stale)" if d.get("price_stale") else ""
    pnl = f"unrealized P&L {usd(d.get('unrealized_pnl'), signed=True)}"
    pnl += f", realized {usd(d.get('realized_pnl'), signed=True)}"
    method = d.get("cost_basis_method", "average cost")
    return (
        f"You hold {_qty(symbol, d.get('qty'))} at an average cost of {usd(d.get('avg_cost'), cur)} "
        f"(cost basis {usd(d.get('cost_basis'))}). Last {usd(d.get('last_price'), cur)}{stale} "
        f"{as_of(d.get('price_as_of'))}{_sim(d)}; market value {usd(d.get('market_value'))}, {pnl}. "
        f"Cost basis method: {method}."
    )


def _portfolio_head(d: JsonDict) -> str:
    pnl = f"unrealized P&L {usd(d.get('unrealized_pnl'), signed=True)}"
    pnl += f", realized {usd(d.get('realized_pnl'), signed=True)}"
    return (
        f"Equity {usd(d.get('equity'))} (cash {usd(d.get('cash'))}, positions {usd(d.get('market_value'))}); "
        f"day change {usd(d.get('day_change'), signed=True)}, {pnl}."
    )


def _portfolio_tail(d: JsonDict) -> str:
    incomplete = " Some positions have no price yet, so totals leave them out." if d.get("complete") is False else ""
    return f"Cost basis: {d.get('cost_basis_method')}. Prices {as_of(d.get('as_of'))}{_sim(d)}.{incomplete}"


def _portfolio(d: JsonDict) -> str:
    lines = [f"Portfolio {d.get('portfolio')}: " + _portfolio_head(d)]
    positions: list[JsonDict] = list(d.get("positions") or [])
    if positions:
        for p in positions:
            symbol = str(p.get("symbol"))
            lines.append(
                f"- {_qty(symbol, p.get('qty'))} at avg {usd(p.get('avg_cost'), currency_of(symbol))}: "
                f"value {usd(p.get('market_value'))}, unrealized {usd(p.get('unrealized_pnl'), signed=True)}"
            )
    else:
        lines.append("No open positions.")
    lines.append(_portfolio_tail(d))
    return "\n".join(lines)


_PERIOD_NAMES = {"day": "today", "week": "the past 7 days", "month": "the past 30 days", "year": "the past 365 days",
                 "all": "all time"}  # fmt: skip


def _pnl(d: JsonDict) -> str:
    period = _PERIOD_NAMES.get(str(d.get("period")), str(d.get("period")))
    since = d.get("since")
    start = "since the portfolio opened" if since == "portfolio opened" else f"since {as_of(since)[6:]}"
    if not d.get("history_available"):
        head = f"P&L for {period}: no equity history reaches back that far yet."
    else:
        head = f"P&L for {period} ({start}): {usd(d.get('pnl'), signed=True)}, deposits and withdrawals not counted."
    return f"{head}\n{_portfolio_head(d)}\n{_portfolio_tail(d)}"


def _orders(d: JsonDict) -> str:
    orders: list[JsonDict] = list(d.get("orders") or [])
    which = {"open": "open orders", "filled": "filled orders", "canceled": "canceled orders", "all": "orders"}.get(
        str(d.get("status_filter")), "orders"
    )
    if not orders:
        return f"You have no {which}."
    lines = [f"Your {which} ({len(orders)}{', newest first' if len(orders) > 1 else ''}):"]
    lines += [f"- {str(o.get('order_id'))[:8]}: {describe_order(o)}" for o in orders]
    return "\n".join(lines)


def _proposal(d: JsonDict) -> str:
    if d.get("action") != "place":
        return f"I've prepared the cancellation of order {str(d.get('order_id'))[:8]} — press Confirm to cancel it."
    symbol = str(d.get("symbol"))
    cur = currency_of(symbol)
    tif = {"day": "a day order", "gtc": "good till canceled", "ioc": "immediate or cancel"}.get(str(d.get("tif")), "")
    estimate = f", estimated fill {usd(d['estimated_fill_price'], cur)}" if d.get("estimated_fill_price") else ""
    return (
        f"I've prepared a {d.get('side')} of {_qty(symbol, d.get('qty'))} {_how(d, cur)}, {tif} — press Confirm to "
        f"place it. Quote {usd(d.get('quote_price'), cur)} {as_of(d.get('quote_as_of'))}{_sim(d)}{estimate}. "
        f"Nothing is placed until you confirm; the proposal expires {as_of(d.get('expires_at'))[6:]}."
    )


def _alerts(d: JsonDict) -> str:
    alerts: list[JsonDict] = list(d.get("alerts") or [])
    if not alerts:
        return "You have no active alerts."
    lines = [f"Your alerts ({len(alerts)}):"]
    lines += [f"- {str(a.get('alert_id'))[:8]}: {describe_alert(a)}" for a in alerts]
    return "\n".join(lines)


def _created_alert(d: JsonDict) -> str:
    return f"Alert set: I'll DM you when {describe_alert(d)}."


def _deleted_alert(d: JsonDict, lookups: Iterable[ToolResult]) -> str:
    alert_id = str(d.get("alert_id"))
    for res in lookups:
        for a in res.result.get("alerts", []) if res.name == "list_alerts" else []:
            if a.get("alert_id") == alert_id:
                return f"Deleted your alert: {describe_alert(a)}."
    return f"Deleted alert {alert_id[:8]}."


def _chart(d: JsonDict, args: JsonDict) -> str:
    target = str(args.get("target", "")).upper()
    what = "your portfolio's equity" if target == "PORTFOLIO" else target
    return f"Here's the chart of {what} over {d.get('period')} (attached)."


def _plan(d: JsonDict) -> str:
    types = ", ".join(str(t).replace("_", "-") for t in d.get("order_types", []))
    return (
        f"You're on the {d.get('plan')} plan: up to {d.get('alert_quota')} active alerts, "
        f"{d.get('ai_questions_per_day')} AI questions a day, order types: {types}."
    )


def render_one(res: ToolResult, lookups: Sequence[ToolResult] = ()) -> str:
    d = res.result
    if not d.get("ok", False):
        return str(d.get("message") or "That didn't work.")
    match res.name:
        case "get_quote":
            return _quote(d)
        case "get_position":
            return _position(d)
        case "get_portfolio":
            return _portfolio(d)
        case "get_pnl":
            return _pnl(d)
        case "list_orders":
            return _orders(d)
        case "propose_order" | "cancel_order":
            return _proposal(d)
        case "list_alerts":
            return _alerts(d)
        case "create_alert":
            return _created_alert(d)
        case "delete_alert":
            return _deleted_alert(d, lookups)
        case "get_chart":
            return _chart(d, res.args)
        case "get_plan":
            return _plan(d)
    return "Done."


def render_reply(results: Sequence[ToolResult], *, lookups: Sequence[ToolResult] = ()) -> str:
    """One short reply for the results of a turn; `lookups` are results consulted (for names) but not shown."""
    return "\n".join(render_one(r, lookups) for r in results)
