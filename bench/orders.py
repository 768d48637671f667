"""`tradedesk bench orders`: market orders end to end, from 8 concurrent users, against an empty scope's floor.

Each order goes through the real `PaperBroker.submit` inside `Database.user_connection` (user_scope on the bare
asyncpg connection, the hot path a transport uses to place an order), exactly as a transport would
place it: the scope's transaction, then one `place_order` call that validates, inserts the order, fills it at the last
price, and updates the position, the cash ledger and the audit log; then COMMIT, with synchronous_commit on (the
default, checked on the app's own connection). Eight asyncio tasks, each a user with a portfolio funded through
`open_portfolio`, submit one order after another on a pool of 8 connections. Each user alternates a buy and a sell of
the same quantity, so positions come back to flat and cash never runs out.

The baseline, in the same run: the floor, the same 8 users each doing an empty `user_connection` scope with one
trivial statement (`SELECT 1`): what the scope and the round trips cost without the order's work.
`ratio = orders_per_s / floor_per_s`. The two alternate in rounds (orders then floor, then floor then orders, ...)
so that drift, checkpoints and autovacuum hit both. A latency is measured from before `user_scope` opens to after
its COMMIT returns; orders/s is orders over the wall time of the order rounds.

Prices: the instruments get a last price at the start, and a background task re-stamps `last_prices.ts` every 5 s
on a dedicated superuser connection outside the pool, as the feed's persister does in production. So the broker keeps
its real 30 s staleness rule (and its real check), rather than a stale_after so large it could never fire.

Afterwards the books must add up: as many orders and fills as were submitted, all filled, each portfolio's cash
equal to the sum of its cash ledger, each position equal to the signed sum of its fills, one audit row per order
(`order.placed`, naming the fill it got at once).
Otherwise the bench fails. Runs on a throwaway embedded cluster (bench/cluster.py), like every database bench.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from bench import BenchResult
from bench.cluster import PRICE_REFRESH_S, refresh_prices, run_async, throwaway_cluster
from bench.stats import p50, p99, r
from core.config import Settings
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.db.roles import SCHEMA
from core.market.sessions import MarketHours
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.paper import BrokerCosts, PaperBroker

USERS = 8
STARTING_CASH = Decimal(1_000_000)
ROUNDS = 4
GOAL_ORDERS_PER_S = 2_000
GOAL_P99_MS = 10.0
# Fixed costs, not the user's settings, so runs compare; a non-zero fee exercises the fee and rounding path.
COSTS = BrokerCosts(fee_bps=Decimal(10), slippage_bps=Decimal(5), stale_after=timedelta(seconds=30))

_INSTRUMENTS = [
    # symbol, name, asset_class, quote_currency, tick_size, lot_size, trading_session, price, qty per order
    ("AAPL", "Apple Inc.", "equity", "USD", Decimal("0.01"), Decimal(1), "us_equity", Decimal("190.00"), Decimal(10)),
    ("MSFT", "Microsoft Corporation", "equity", "USD", Decimal("0.01"), Decimal(1), "us_equity", Decimal("410.00"),
     Decimal(5)),
    ("SPY", "SPDR S&P 500 ETF Trust", "etf", "USD", Decimal("0.01"), Decimal(1), "us_equity", Decimal("520.00"),
     Decimal(4)),
    ("BTC-USD", "Bitcoin", "crypto", "USD", Decimal("0.01"), Decimal("0.00001"), "always", Decimal("60000.00"),
     Decimal("0.035")),
]  # fmt: skip


class Trader:
    """One bench user: a portfolio, and the position in its alternating buy/sell sequence."""

    def __init__(self, index: int, user: UUID, portfolio: UUID) -> None:
        self.index, self.user, self.portfolio = index, user, portfolio
        self.placed = 0

    def next_request(self) -> OrderRequest:
        k = self.placed
        instrument = _INSTRUMENTS[(k // 2 + self.index) % len(_INSTRUMENTS)]  # a buy, then a sell of the same
        side = Side.BUY if k % 2 == 0 else Side.SELL
        self.placed += 1
        return OrderRequest(self.portfolio, instrument[0], side, OrderType.MARKET, instrument[8], tif=TimeInForce.DAY)


async def _seed(superuser_url: str) -> None:
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    try:
        await conn.executemany(
            "INSERT INTO instruments (symbol, name, asset_class, quote_currency, tick_size, lot_size, trading_session)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (symbol) DO NOTHING",  # 0009 seeds most of them
            [i[:7] for i in _INSTRUMENTS],
        )
        await conn.executemany(
            "INSERT INTO last_prices (symbol, price, ts, source) VALUES ($1, $2, now(), 'sim')"
            " ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, ts = EXCLUDED.ts",
            [(i[0], i[7]) for i in _INSTRUMENTS],
        )
    finally:
        await conn.close()


async def _traders(db: Database) -> list[Trader]:
    traders = []
    for i in range(USERS):
        user = await resolve_identity(db, console_handle=f"bench-orders-{i}")
        async with db.user_scope(user) as session:
            conn = await raw_connection(session)
            portfolio = await conn.fetchval("SELECT id FROM open_portfolio('Main', $1::numeric, false)", STARTING_CASH)
        traders.append(Trader(i, user, portfolio))
    return traders


async def _concurrently(
    traders: list[Trader], per_user: int, step: Callable[[Trader], Awaitable[None]], samples: list[int] | None
) -> float:
    """Each trader runs `step` per_user times, all traders at once; return the wall time in seconds."""

    async def run(trader: Trader) -> None:
        for _ in range(per_user):
            t0 = time.perf_counter_ns()
            await step(trader)
            if samples is not None:
                samples.append(time.perf_counter_ns() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(run(t) for t in traders))
    return time.perf_counter() - started


class _Steps:
    def __init__(self, db: Database, broker: PaperBroker) -> None:
        self.db, self.broker = db, broker
        self.not_filled: list[str] = []

    async def order(self, trader: Trader) -> None:
        request = trader.next_request()
        async with self.db.user_connection(trader.user) as conn:
            order = await self.broker.submit(conn, request)
        if order.status != "filled":
            self.not_filled.append(f"{order.side} {order.symbol}: {order.status} {order.reject_reason or ''}")

    async def floor(self, trader: Trader) -> None:
        async with self.db.user_connection(trader.user) as conn:
            await conn.fetchval("SELECT 1")


async def _server_settings(db: Database, user: UUID) -> dict[str, str]:
    """The settings that decide what a COMMIT costs, as the app's own connection sees them."""
    async with db.user_scope(user) as session:
        conn = await raw_connection(session)
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            ["synchronous_commit", "fsync", "wal_sync_method", "commit_delay", "shared_buffers", "max_wal_size"],
        )
    return {r["name"]: r["setting"] for r in rows}


async def _verify(superuser_url: str, traders: list[Trader]) -> dict[str, int]:
    users = [t.user for t in traders]
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    try:
        row = await conn.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM orders WHERE user_id = ANY($1)) AS orders,
              (SELECT count(*) FROM orders WHERE user_id = ANY($1) AND status = 'filled') AS filled,
              (SELECT count(*) FROM fills WHERE user_id = ANY($1)) AS fills,
              (SELECT count(*) FROM audit_log WHERE user_id = ANY($1)
                  AND action IN ('order.placed', 'order.filled')) AS audit_rows,
              (SELECT count(*) FROM audit_log a JOIN fills f ON f.id = (a.detail->'filled'->>'fill_id')::uuid
                WHERE a.user_id = ANY($1) AND a.action = 'order.placed'
                  AND f.order_id = (a.detail->>'order_id')::uuid) AS audited_fills,
              (SELECT count(*) FROM portfolios p WHERE p.user_id = ANY($1)) AS portfolios,
              (SELECT count(*) FROM portfolios p WHERE p.user_id = ANY($1) AND p.cash <>
                  (SELECT coalesce(sum(l.amount), 0) FROM cash_ledger l WHERE l.portfolio_id = p.id))
                  AS cash_mismatches,
              (SELECT count(*) FROM positions s WHERE s.user_id = ANY($1) AND s.qty <>
                  (SELECT coalesce(sum(CASE f.side WHEN 'buy' THEN f.qty ELSE -f.qty END), 0) FROM fills f
                    WHERE f.portfolio_id = s.portfolio_id AND f.symbol = s.symbol)) AS position_mismatches,
              (SELECT count(*) FROM positions s WHERE s.user_id = ANY($1) AND s.qty <> 0) AS open_positions
            """,
            users,
        )
    finally:
        await conn.close()
    return {k: int(v) for k, v in dict(row).items()}


async def _run(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    total = 2_000 if quick else 20_000
    warmup = 400 if quick else 2_000
    per_round = total // USERS // ROUNDS
    per_round -= per_round % 2  # whole buy/sell pairs: every position ends flat
    warm_per_user = warmup // USERS - (warmup // USERS) % 2
    started = time.perf_counter()

    async with throwaway_cluster(settings, "orders", progress) as cluster:
        await _seed(cluster.superuser_url)
        stop = asyncio.Event()
        refresher = asyncio.create_task(refresh_prices(cluster.superuser_url, [i[0] for i in _INSTRUMENTS], stop))
        db = Database(cluster.app_url, pool_size=USERS, max_overflow=0, application_name="tradedesk-bench")
        try:
            traders = await _traders(db)
            server = await _server_settings(db, traders[0].user)
            if server.get("synchronous_commit") != "on":
                raise RuntimeError(f"bench orders: synchronous_commit is {server.get('synchronous_commit')}, not on")
            progress(
                f"PostgreSQL {cluster.version}: synchronous_commit={server['synchronous_commit']},"
                f" fsync={server['fsync']}, wal_sync_method={server['wal_sync_method']}"
            )
            broker = PaperBroker(MarketHours(always_open=True), COSTS)
            steps = _Steps(db, broker)

            progress(f"warming up: {warm_per_user * USERS:,} orders and as many empty scopes")
            await _concurrently(traders, warm_per_user, steps.order, None)
            await _concurrently(traders, warm_per_user, steps.floor, None)

            order_ns: list[int] = []
            floor_ns: list[int] = []
            order_s = floor_s = 0.0
            n = per_round * USERS
            for rnd in range(ROUNDS):
                phases = [("orders", steps.order, order_ns), ("floor", steps.floor, floor_ns)]
                for name, step, samples in phases if rnd % 2 == 0 else phases[::-1]:
                    wall = await _concurrently(traders, per_round, step, samples)
                    if name == "orders":
                        order_s += wall
                    else:
                        floor_s += wall
                    progress(f"round {rnd + 1}/{ROUNDS}: {n:,} {name} from {USERS} users, {n / wall:,.0f}/s")
        finally:
            stop.set()
            await db.dispose()
            stamped = await refresher

        progress("checking the books")
        submitted = sum(t.placed for t in traders)
        books = await _verify(cluster.superuser_url, traders)
        problems = []
        if steps.not_filled:
            problems.append(f"{len(steps.not_filled)} orders not filled, e.g. {steps.not_filled[0]}")
        if not books["orders"] == books["filled"] == books["fills"] == submitted:
            problems.append(
                f"{submitted} submitted but {books['orders']} orders, {books['filled']} filled, {books['fills']} fills"
            )
        if not books["audit_rows"] == books["audited_fills"] == submitted:
            problems.append(
                f"{books['audit_rows']} order audit rows, {books['audited_fills']} naming their fill, for {submitted}"
                " orders (expected 1 each)"
            )
        for key in ("cash_mismatches", "position_mismatches", "open_positions"):
            if books[key]:
                problems.append(f"{books[key]} {key.replace('_', ' ')}")
        if books["portfolios"] != USERS:
            problems.append(f"{books['portfolios']} portfolios, expected {USERS}")
        if problems:
            raise RuntimeError("bench orders: the books don't add up: " + "; ".join(problems))

    measured = len(order_ns)
    orders_per_s = measured / order_s
    floor_per_s = len(floor_ns) / floor_s
    results: dict[str, Any] = {
        "orders_per_s": round(orders_per_s, 1),
        "p50_ms": r(p50(order_ns)),
        "p99_ms": r(p99(order_ns)),
        "floor_per_s": round(floor_per_s, 1),
        "floor_p50_ms": r(p50(floor_ns)),
        "floor_p99_ms": r(p99(floor_ns)),
        "ratio": round(orders_per_s / floor_per_s, 4),
        "max_ms": r(max(order_ns) / 1e6),
    }
    params: dict[str, Any] = {
        "users": USERS,
        "pool_size": USERS,
        "orders": measured,
        "floor_txns": len(floor_ns),
        "rounds": ROUNDS,
        "warmup_orders": warm_per_user * USERS,
        "symbols": [i[0] for i in _INSTRUMENTS],
        "fee_bps": str(COSTS.fee_bps),
        "slippage_bps": str(COSTS.slippage_bps),
        "stale_after_s": COSTS.stale_after.total_seconds(),
        "price_refresh_s": PRICE_REFRESH_S,
        "price_refreshes": stamped,
        "quick": quick,
        "postgres": cluster.version,
        "synchronous_commit": server["synchronous_commit"],
        "fsync": server["fsync"],
        "wal_sync_method": server["wal_sync_method"],
        "orders_submitted": submitted,
        "orders_in_db": books["orders"],
        "orders_filled": books["filled"],
        "fills_in_db": books["fills"],
        "audit_rows": books["audit_rows"],
        "audited_fills": books["audited_fills"],
        "portfolios_checked": books["portfolios"],
        "cash_mismatches": books["cash_mismatches"],
        "position_mismatches": books["position_mismatches"],
        "goal_orders_per_s": GOAL_ORDERS_PER_S,
        "goal_p99_ms": GOAL_P99_MS,
        "total_s": round(time.perf_counter() - started, 1),
    }
    met = "met" if orders_per_s >= GOAL_ORDERS_PER_S else "NOT met"
    met99 = "met" if results["p99_ms"] <= GOAL_P99_MS else "NOT met"
    table = [
        ("setup", f"{USERS} users, pool of {USERS}, PostgreSQL {cluster.version} (embedded, throwaway)"),
        ("commit", f"synchronous_commit={server['synchronous_commit']}, fsync={server['fsync']}"),
        ("order", "market, PaperBroker.submit in user_scope (one place_order call), buy/sell alternating"),
        ("prices", f"last_prices.ts re-stamped every {PRICE_REFRESH_S:g} s ({stamped}x), stale after"
                   f" {COSTS.stale_after.total_seconds():g} s"),
        ("orders/s", f"{orders_per_s:,.0f}  (goal >= {GOAL_ORDERS_PER_S:,}: {met})"),
        ("order latency", f"p50 {results['p50_ms']:.3f} ms, p99 {results['p99_ms']:.3f} ms"
                          f"  (goal p99 <= {GOAL_P99_MS:g} ms: {met99}), max {results['max_ms']:.1f} ms"),
        ("floor txns/s", f"{floor_per_s:,.0f}  (empty user_scope + SELECT 1)"),
        ("floor latency", f"p50 {results['floor_p50_ms']:.3f} ms, p99 {results['floor_p99_ms']:.3f} ms"),
        ("ratio", f"{results['ratio']:.3f}  (orders/s / floor txns/s)"),
        ("books", f"{books['orders']:,} orders, {books['fills']:,} fills, {books['portfolios']} portfolios:"
                  f" cash = ledger, positions = fills"),
        ("samples", f"{measured:,} orders and {len(floor_ns):,} floor txns in {ROUNDS} alternating rounds"),
        ("total", f"{params['total_s']} s"),
    ]  # fmt: skip
    return BenchResult("orders", results, params, table)


def bench_orders(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    return run_async(_run(settings, quick, progress))
