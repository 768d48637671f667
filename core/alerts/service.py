"""Creating, listing and deleting a user's price alerts (the transport opens the user scope; nothing here commits).

Kinds: "above" and "below" take a price; "percent" takes a move from the current last price (+5 means 5% above it,
-5 means 5% below) and becomes an above/below threshold at creation, keeping the reference price and the percent.
Every bad input is refused with a DomainError before anything is written. Creating and deleting NOTIFY
'tradedesk_changes' with 'alerts:<id>' inside the transaction, so the worker's engine follows once it commits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from core.alerts.models import Alert
from core.billing.entitlements import entitlements
from core.db.database import Scope, scope_connection
from core.db.listen import CHANGES
from core.errors import EntitlementRequired, InvalidInput, NotFound, UnknownSymbol
from core.live import notify_live

KINDS = ("above", "below", "percent")
# Thresholds are held by the engine as int64 at SCALE decimal places: at most 8 decimals and 10^10.
PRICE_DECIMALS = 8
SCALE = 10**PRICE_DECIMALS
MAX_THRESHOLD = Decimal(10) ** 10
MIN_THRESHOLD = Decimal(1).scaleb(-PRICE_DECIMALS)
MAX_PERCENT = Decimal(10_000)
MAX_NOTE = 300
MAX_COOLDOWN_S = 30 * 24 * 3600
MIN_RECURRING_COOLDOWN_S = 60
DEFAULT_RECURRING_COOLDOWN_S = 3600


class AlreadyCrossed(InvalidInput):
    """An above alert at or below the current price (or a below alert at or above it) would fire at once."""

    code = "already_crossed"


_INSTRUMENT = (
    "SELECT i.symbol, i.active, i.tick_size, lp.price FROM instruments i LEFT JOIN last_prices lp USING (symbol) "
    "WHERE i.symbol = $1"
)
_INSERT = (
    "INSERT INTO alerts (user_id, symbol, direction, kind, threshold, reference_price, percent, recurring, "
    "cooldown_seconds, expires_at, note, checked_price) "
    "VALUES (nullif(current_setting('app.user_id', true), '')::uuid, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
    "RETURNING *"
)


def _decimal(value: Decimal | int | str, what: str) -> Decimal:
    if isinstance(value, float):
        raise InvalidInput(f"The {what} must be an exact decimal number, not a float.")
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise InvalidInput(f"The {what} {value!r} is not a number.") from None
    if not number.is_finite():
        raise InvalidInput(f"The {what} must be a finite number.")
    return number


def _fmt(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _check_threshold(threshold: Decimal) -> None:
    if threshold <= 0:
        raise InvalidInput("The alert price must be greater than zero.")
    if threshold > MAX_THRESHOLD:
        raise InvalidInput(f"The alert price {threshold:.4g} is too large: the most is {_fmt(MAX_THRESHOLD)}.")
    if threshold != threshold.quantize(MIN_THRESHOLD, rounding=ROUND_HALF_EVEN) or threshold < MIN_THRESHOLD:
        raise InvalidInput(f"The alert price can have at most {PRICE_DECIMALS} decimal places.")


def _cooldown_seconds(recurring: bool, cooldown: timedelta | int | None) -> int:
    if cooldown is None:
        return DEFAULT_RECURRING_COOLDOWN_S if recurring else 0
    seconds = cooldown.total_seconds() if isinstance(cooldown, timedelta) else cooldown
    if not recurring:
        if seconds:
            raise InvalidInput("A cooldown only applies to a recurring alert.")
        return 0
    if seconds != int(seconds) or not MIN_RECURRING_COOLDOWN_S <= seconds <= MAX_COOLDOWN_S:
        raise InvalidInput(
            f"The cooldown must be a whole number of seconds from {MIN_RECURRING_COOLDOWN_S} s to 30 days."
        )
    return int(seconds)


async def create_alert(
    scope: Scope,
    symbol: str,
    kind: str,
    value: Decimal | int | str,
    *,
    recurring: bool = False,
    cooldown: timedelta | int | None = None,
    expires_at: datetime | None = None,
    note: str | None = None,
    last_price: Decimal | None = None,
    now: datetime | None = None,
) -> Alert:
    """Create an alert for the scope's user. `value` is a price (above/below) or a percent move (percent).

    `last_price` is the current price from the caller's QuoteSource; by default the last price in last_prices.
    """
    now = now or datetime.now(UTC)
    if kind not in KINDS:
        raise InvalidInput(f"Unknown alert kind {kind!r}: use above, below or percent.")
    number = _decimal(value, "percent" if kind == "percent" else "alert price")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("The expiry needs a time zone.")
        if expires_at <= now:
            raise InvalidInput("The expiry is in the past: pick a time in the future.")
    if note is not None:
        note = note.strip() or None
        if note is not None and len(note) > MAX_NOTE:
            raise InvalidInput(f"The note is {len(note)} characters long; the most is {MAX_NOTE}.")
    cooldown_s = _cooldown_seconds(recurring, cooldown)
    if kind == "percent":
        if number == 0:
            raise InvalidInput("A percent move of 0 would fire at once: use a positive or negative percent.")
        if number <= -100:
            raise InvalidInput("A price can't fall 100% or more: use a percent above -100.")
        if number > MAX_PERCENT:
            raise InvalidInput(f"A percent move can be at most {_fmt(MAX_PERCENT)}%.")
        if number != number.quantize(Decimal("0.0001")):
            raise InvalidInput("A percent can have at most 4 decimal places.")
    else:
        _check_threshold(number)

    conn = await scope_connection(scope)
    clean = symbol.strip().upper() if isinstance(symbol, str) else ""
    instrument = await conn.fetchrow(_INSTRUMENT, clean) if clean else None
    if instrument is None or not instrument["active"]:
        raise UnknownSymbol(f"Unknown symbol {symbol!r}: alerts are available for the listed instruments only.")
    price = last_price if last_price is not None else instrument["price"]
    if price is None:
        raise InvalidInput(f"There is no price for {clean} yet, so an alert can't be checked against it; try later.")

    reference: Decimal | None = None
    percent: Decimal | None = None
    if kind == "percent":
        reference, percent = price, number
        direction = "above" if number > 0 else "below"
        # To the tick, away from the price: an above level rounds up, a below level down, so the rounded level is
        # never on the wrong side of the move asked for (never at or past the current price).
        step = max(instrument["tick_size"], MIN_THRESHOLD)
        raw = price * (1 + number / 100)
        rounding = ROUND_CEILING if direction == "above" else ROUND_FLOOR
        threshold = (raw / step).to_integral_value(rounding=rounding) * step
        threshold = threshold.quantize(MIN_THRESHOLD, rounding=rounding)
        _check_threshold(threshold)
        if threshold == price:
            raise AlreadyCrossed(
                f"A {_fmt(number)}% move from {clean}'s current price {_fmt(price)} rounds to {_fmt(threshold)} at "
                f"its tick size {_fmt(step)}, which is the current price itself: use a larger percent."
            )
    else:
        threshold, direction = number, kind
    if direction == "above" and price >= threshold:
        raise AlreadyCrossed(
            f"{clean} is already at {_fmt(price)}, at or above {_fmt(threshold)}: an above alert fires when the price "
            "rises to its level. Pick a higher price, or a below alert."
        )
    if direction == "below" and price <= threshold:
        raise AlreadyCrossed(
            f"{clean} is already at {_fmt(price)}, at or below {_fmt(threshold)}: a below alert fires when the price "
            "falls to its level. Pick a lower price, or an above alert."
        )

    # One create at a time per user, so two concurrent creates can't both squeeze under the quota.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('alerts.quota:' || current_setting('app.user_id', true), 0))"
    )
    plan = await entitlements(conn)
    active = await conn.fetchval("SELECT count(*) FROM alerts WHERE status = 'active'")
    if active >= plan.alert_quota:
        raise EntitlementRequired(
            f"Your {plan.plan} plan allows {plan.alert_quota} active alerts and you have {active}. "
            + ("Delete one to add another, or upgrade to pro." if plan.plan == "free" else "Delete one to add another.")
        )
    row = await conn.fetchrow(
        _INSERT, clean, direction, kind if kind == "percent" else "price", threshold, reference, percent, recurring,
        cooldown_s, expires_at, note, price,
    )  # fmt: skip
    await conn.execute("SELECT pg_notify($1, $2)", CHANGES, f"alerts:{row['id']}")
    return _alert(row)


def _alert(row: Any) -> Alert:
    return Alert(**dict(row))


async def list_alerts(scope: Scope, *, include_inactive: bool = False) -> list[Alert]:
    """The scope's user's alerts, newest first: active ones only unless `include_inactive`."""
    conn = await scope_connection(scope)
    rows = await conn.fetch(
        "SELECT * FROM alerts WHERE ($1 OR status = 'active') ORDER BY created_at DESC, id", include_inactive
    )
    return [_alert(r) for r in rows]


async def delete_alert(scope: Scope, alert_id: UUID) -> None:
    """Delete one of the scope's user's alerts; another user's (or no) alert is NotFound."""
    conn = await scope_connection(scope)
    deleted = await conn.fetchval("DELETE FROM alerts WHERE id = $1 RETURNING id", alert_id)
    if deleted is None:
        raise NotFound("No alert of yours has that id.")
    await conn.execute("SELECT pg_notify($1, $2)", CHANGES, f"alerts:{deleted}")


async def expire_alerts(scope: Scope, now: datetime) -> int:
    """Mark active alerts whose expiry has passed as expired (the scheduler's job, in system_scope)."""
    conn = await scope_connection(scope)
    # Whose alerts expire, for their live pages (one NOTIFY for all, delivered when this commits).
    users = await conn.fetch(
        "SELECT DISTINCT user_id FROM alerts WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= $1",
        now,
    )
    expired: int = await conn.fetchval("SELECT expire_alerts($1)", now)
    await notify_live(scope, dict.fromkeys((r["user_id"] for r in users), ("alerts",)))
    return expired
