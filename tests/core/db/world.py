"""A user's world: one valid row in every tenant table, built through system_scope as the app would.

`row(table, user, n)` gives the column values of the n-th row of `table` for `user`; the contract tests use it both
to seed rows and to attempt inserts. A tenant table added later needs a builder here, or the contract tests fail
and say so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from sqlmodel.ext.asyncio.session import AsyncSession

from core.db.database import Database
from core.db.identity import resolve_identity

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
SYMBOLS = ["AAPL", "MSFT", "BTC-USD"]


async def raw(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a scope's session, in the scope's transaction."""
    conn = await session.connection()
    dbapi = await conn.get_raw_connection()
    return dbapi.driver_connection  # type: ignore[return-value]


@dataclass
class World:
    user_id: UUID
    tag: str
    pk: dict[str, dict[str, Any]] = field(default_factory=dict)

    def id(self, table: str) -> Any:
        return next(iter(self.pk[table].values()))


def _h(*parts: object) -> bytes:
    return hashlib.sha256(":".join(map(str, parts)).encode()).digest()


Builder = Callable[[World, int], dict[str, Any]]

BUILDERS: dict[str, Builder] = {
    "portfolios": lambda w, n: {"user_id": w.user_id, "name": f"paper {n}", "is_default": False},
    "orders": lambda w, n: {
        "user_id": w.user_id,
        "portfolio_id": w.id("portfolios"),
        "client_order_id": f"{w.tag}-{n}",
        "symbol": "AAPL",
        "side": "buy",
        "type": "limit",
        "tif": "gtc",
        "qty": Decimal("1.5"),
        "limit_price": Decimal("180.25"),
    },
    "order_proposals": lambda w, n: {
        "user_id": w.user_id,
        "portfolio_id": w.id("portfolios"),
        "action": "place",
        "symbol": "AAPL",
        "side": "buy",
        "type": "market",
        "tif": "day",
        "qty": Decimal(n),
        "quote_price": Decimal("181.10"),
        "quote_ts": NOW,
        "origin": "command",
        "expires_at": datetime.now(UTC) + timedelta(minutes=14),
    },
    "fills": lambda w, n: {
        "user_id": w.user_id,
        "order_id": w.id("orders"),
        "portfolio_id": w.id("portfolios"),
        "seq": n,
        "symbol": "AAPL",
        "side": "buy",
        "qty": Decimal("0.5"),
        "price": Decimal("180.25"),
        "gross": Decimal("90.13"),
    },
    "cash_ledger": lambda w, n: {
        "user_id": w.user_id,
        "portfolio_id": w.id("portfolios"),
        "amount": Decimal("1000.00"),
        "kind": "deposit",
    },
    "positions": lambda w, n: {
        "user_id": w.user_id,
        "portfolio_id": w.id("portfolios"),
        "symbol": SYMBOLS[n],
        "qty": Decimal("0.5"),
        "avg_cost": Decimal("180.25"),
    },
    "equity_snapshots": lambda w, n: {
        "user_id": w.user_id,
        "portfolio_id": w.id("portfolios"),
        "ts": NOW + timedelta(minutes=n),
        "equity": Decimal("1090.13"),
        "cash": Decimal("1000.00"),
        "positions_value": Decimal("90.13"),
        "realized_pnl": Decimal(0),
        "unrealized_pnl": Decimal(0),
    },
    "alerts": lambda w, n: {
        "user_id": w.user_id,
        "symbol": "BTC-USD",
        "direction": "above",
        "kind": "price",
        "threshold": Decimal(90000 + n),
    },
    "notifications": lambda w, n: {
        "user_id": w.user_id,
        "kind": "alert",
        "dedupe_key": f"alert:{w.tag}:{n}",
        "title": "BTC-USD above 90,000",
        "body": "BTC-USD crossed 90,000.",
    },
    "conversations": lambda w, n: {"user_id": w.user_id, "channel": "console"},
    "messages": lambda w, n: {
        "user_id": w.user_id,
        "conversation_id": w.id("conversations"),
        "role": "user",
        "content": "how is my AAPL position?",
    },
    "usage_events": lambda w, n: {"user_id": w.user_id, "kind": "ai_question"},
    "billing_customers": lambda w, n: {"user_id": w.user_id, "stripe_customer_id": f"cus_{w.tag}{n}"},
    "subscriptions": lambda w, n: {
        "id": f"sub_{w.tag}{n}",
        "user_id": w.user_id,
        "stripe_customer_id": f"cus_{w.tag}1",
        "plan": "pro",
        "status": "active",
    },
    "audit_log": lambda w, n: {"user_id": w.user_id, "actor": "system", "action": "test.seed"},
    "login_tokens": lambda w, n: {
        "token_hash": _h(w.tag, "login", n),
        "user_id": w.user_id,
        "expires_at": datetime.now(UTC) + timedelta(minutes=10),
    },
    "web_sessions": lambda w, n: {
        "session_hash": _h(w.tag, "session", n),
        "user_id": w.user_id,
        "expires_at": datetime.now(UTC) + timedelta(days=7),
    },
}


def insert_sql(table: str, values: dict[str, Any], returning: list[str]) -> tuple[str, list[Any]]:
    cols = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders}) RETURNING {', '.join(returning)}"
    return sql, [values[c] for c in cols]


async def seed_reference(db: Database) -> None:
    async with db.system_scope("test.seed_reference") as s:
        conn = await raw(s)
        await conn.executemany(
            "INSERT INTO instruments (symbol, name, asset_class, quote_currency, tick_size, lot_size, "
            "trading_session) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                ("AAPL", "Apple Inc.", "equity", "USD", Decimal("0.01"), Decimal(1), "us_equity"),
                ("MSFT", "Microsoft Corp.", "equity", "USD", Decimal("0.01"), Decimal(1), "us_equity"),
                ("BTC-USD", "Bitcoin", "crypto", "USD", Decimal("0.01"), Decimal("0.00001"), "always"),
            ],
        )


async def build_world(db: Database, tag: str, primary_keys: dict[str, list[str]]) -> World:
    """Create a user and one row in every table of BUILDERS, in dependency order."""
    user_id = await resolve_identity(db, console_handle=f"user-{tag}")
    world = World(user_id, tag)
    world.pk["users"] = {"id": user_id}
    async with db.system_scope("test.build_world") as s:
        conn = await raw(s)
        for table, build in BUILDERS.items():
            sql, args = insert_sql(table, build(world, 1), primary_keys[table])
            row = await conn.fetchrow(sql, *args)
            world.pk[table] = dict(row)
    return world
