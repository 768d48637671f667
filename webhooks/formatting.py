"""How the dashboard writes money, quantities and times: Jinja filters over exact Decimals (never floats)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from markupsafe import Markup

from core.money import cents


def money(amount: Decimal | None, currency: str = "USD") -> str:
    if amount is None:
        return "—"
    value = cents(amount)
    sign = "-" if value < 0 else ""
    if currency == "USD":
        return f"{sign}${abs(value):,.2f}"
    return f"{sign}{abs(value):,.2f} {currency}"


def signed_money(amount: Decimal | None, currency: str = "USD") -> str:
    if amount is None:
        return "—"
    return ("+" if cents(amount) > 0 else "") + money(amount, currency)


def number(value: Decimal | None) -> str:
    """A quantity or price exactly as stored, without trailing zeros (0.50000000 -> 0.5)."""
    if value is None:
        return "—"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def direction(amount: Decimal | None) -> str:
    """A CSS class for a signed amount: up, down or flat (colour is never the only cue: the sign is written too)."""
    if amount is None or cents(amount) == 0:
        return "flat"
    return "up" if amount > 0 else "down"


def timestamp(at: datetime | None) -> Markup:
    """A <time> element: machine-readable ISO 8601 UTC, shown as date and time with the zone."""
    if at is None:
        return Markup("—")
    iso = at.isoformat(timespec="seconds")
    return Markup('<time datetime="{}">{}</time>').format(iso, at.strftime("%Y-%m-%d %H:%M:%S %Z"))


def short_id(value: object) -> str:
    return str(value).replace("-", "")[:8]


FILTERS = {
    "money": money,
    "signed_money": signed_money,
    "number": number,
    "direction": direction,
    "timestamp": timestamp,
    "short_id": short_id,
}
