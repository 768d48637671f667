"""What the dashboard's live hub listens to: per-user change events and last prices, over Postgres NOTIFY.

Two channels, both outside the hot write paths (place_order and the fill functions NOTIFY nothing new):

- `tradedesk_live`: "this user's <topic> changed". A payload is one or more lines `<user uuid> <topic> [<topic>...]`.
  Sent inside the transaction of a user action (Desk: confirm, cancel, alerts, the Stripe webhook's plan change,
  an outbox row), so it arrives exactly when the change commits; and by the worker once per batch of committed
  fills or alert fires, naming each affected user once.
- `tradedesk_prices`: the last prices the worker's PricePersister just wrote (one NOTIFY per chunk per flush, at
  most one flush a second), as JSON `{"AAPL": {"price": "190.12", "at": "<iso>"}}`, for web processes that don't
  run the worker and so have no tick bus.

Payloads stay below 7,000 bytes (Postgres refuses 8,000): longer ones are split into several NOTIFYs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from core.db.database import Scope, scope_connection
from core.market.ticks import Tick

log = logging.getLogger(__name__)

LIVE = "tradedesk_live"
PRICES = "tradedesk_prices"
TOPICS = frozenset({"portfolio", "orders", "alerts", "inbox", "plan"})
NOTIFY_LIMIT = 7_000  # bytes; Postgres refuses NOTIFY payloads of 8000 bytes or more


def _chunks(pieces: Iterable[str], sep: str, limit: int = NOTIFY_LIMIT) -> list[str]:
    """Join pieces with `sep` into payloads of fewer than `limit` bytes (every piece is far smaller)."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        n = len(piece.encode()) + len(sep)
        if current and size + n >= limit:
            out.append(sep.join(current))
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        out.append(sep.join(current))
    return out


def live_payloads(events: Mapping[UUID, Iterable[str]]) -> list[str]:
    """The `tradedesk_live` payloads saying that each user's topics changed."""
    lines = []
    for user, topics in events.items():
        names = sorted(set(topics))
        unknown = set(names) - TOPICS
        if unknown:
            raise ValueError(f"unknown live topic(s) {sorted(unknown)}; one of {sorted(TOPICS)}")
        if names:
            lines.append(f"{user} {' '.join(names)}")
    return _chunks(lines, "\n")


def parse_live(payload: str) -> dict[UUID, set[str]]:
    """The users and topics a `tradedesk_live` payload names; malformed lines and unknown topics are skipped."""
    events: dict[UUID, set[str]] = {}
    for line in payload.splitlines():
        user, _, rest = line.strip().partition(" ")
        try:
            key = UUID(user)
        except ValueError:
            log.warning("live: ignoring malformed event %r", line[:80])
            continue
        topics = set(rest.split()) & TOPICS
        if topics:
            events.setdefault(key, set()).update(topics)
    return events


async def notify_live(scope: Scope, events: Mapping[UUID, Iterable[str]]) -> None:
    """Tell live pages these users' topics changed, when (and only if) the scope's transaction commits."""
    payloads = live_payloads(events)
    if not payloads:
        return
    conn = await scope_connection(scope)
    await conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", LIVE, payloads)


def price_text(price: Decimal) -> str:
    """A price as the page shows it: plain digits, no exponent, no trailing zeros past the point."""
    text = format(price, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def price_entry(price: Decimal, at: datetime) -> dict[str, str]:
    return {"price": price_text(price), "at": at.isoformat()}


def price_payloads(ticks: Iterable[Tick]) -> list[str]:
    """The `tradedesk_prices` payloads for these last prices (one JSON object each, below the size limit)."""
    pieces = [json.dumps(t.symbol) + ":" + json.dumps(price_entry(t.price, t.ts), separators=(",", ":")) for t in ticks]
    return ["{" + chunk + "}" for chunk in _chunks(pieces, ",", NOTIFY_LIMIT - 2)]


def parse_prices(payload: str) -> dict[str, dict[str, str]]:
    """{symbol: {"price": ..., "at": ...}} from a `tradedesk_prices` payload; {} for a malformed one."""
    try:
        data = json.loads(payload)
    except ValueError:
        log.warning("live: ignoring a malformed prices payload")
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, dict[str, str]] = {}
    for symbol, entry in data.items():
        if isinstance(entry, dict) and isinstance(entry.get("price"), str) and isinstance(entry.get("at"), str):
            out[str(symbol)] = {"price": entry["price"], "at": entry["at"]}
    return out


async def notify_prices(scope: Scope, ticks: Iterable[Tick]) -> None:
    """Publish last prices to web processes without a tick bus, when the scope's transaction commits."""
    payloads = price_payloads(ticks)
    if payloads:
        conn = await scope_connection(scope)
        await conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", PRICES, payloads)
