"""`tradedesk bench rls`: what row-level security costs a typical per-user query.

On 1M orders spread over 10k users (`--quick`: 100k over 1k) it times a user's 20 most recent orders inside an open
`user_scope` (RLS supplies the `user_id` filter) against the same query inside `system_scope` with an explicit
`WHERE user_id = :uid`, in the same run, through the app's own `Database` (SQLAlchemy over asyncpg, as the app
connects), and reports p50/p99 of each and `ratio = rls_p50 / baseline_p50` (goal: at most 1.05). It also reports what
opening a scope costs: an empty `user_scope` (BEGIN, the `set_config` round trip, COMMIT) against an empty plain
transaction on the same engine (BEGIN, COMMIT).

It always uses a throwaway embedded Postgres cluster in a temporary folder under TRADEDESK_DATA_DIR/bench, even when
DATABASE_URL is set, so that results are comparable between machines and runs and the user's database is never
touched. The cluster is stopped and its folder deleted when the bench ends, however it ends.

Method: the data is loaded with the superuser (generate_series on the server, two connections in parallel, foreign-key
triggers off since the rows are valid by construction), then VACUUM ANALYZE and CHECKPOINT. After a warm-up, each
batch picks a random user and opens one scope per variant, timing each of a few queries individually
(`perf_counter_ns`); the variant that goes first alternates from batch to batch so that drift and cache warming hit
both equally. For a sample of users both variants must return the same rows, or the bench fails.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import text

from bench import BenchResult
from bench.cluster import run_async, throwaway_cluster
from bench.stats import p50 as _p50
from bench.stats import p99 as _p99
from bench.stats import r as _r
from core.config import Settings
from core.db.database import Database, run_sql
from core.db.roles import SCHEMA

SEED = 20240917

# The typical per-user query: the user's 20 most recent orders. Identical text but for the explicit filter.
_COLUMNS = "id, symbol, side, qty, limit_price, status, created_at"
RLS_QUERY = text(f"SELECT {_COLUMNS} FROM orders ORDER BY created_at DESC LIMIT 20")
BASELINE_QUERY = text(f"SELECT {_COLUMNS} FROM orders WHERE user_id = :uid ORDER BY created_at DESC LIMIT 20")

_INSTRUMENTS = [
    # symbol, name, asset_class, quote_currency, tick_size, lot_size, trading_session, base price
    ("AAPL", "Apple Inc.", "equity", "USD", "0.01", "1", "us_equity", 190),
    ("MSFT", "Microsoft Corporation", "equity", "USD", "0.01", "1", "us_equity", 410),
    ("SPY", "SPDR S&P 500 ETF Trust", "etf", "USD", "0.01", "1", "us_equity", 520),
    ("BTC-USD", "Bitcoin", "crypto", "USD", "0.01", "0.00001", "always", 60000),
]

# One chunk of orders, rows $1 <= g < $2 of the whole series; order g belongs to user g % $3 (so every user gets
# rows/users orders, interleaved in the heap as if placed over time), is placed at a distinct time over the last
# year, and is new, filled or canceled with the columns each status requires (see the CHECKs in 0003_trading.sql).
_ORDERS_CHUNK = """
INSERT INTO orders (user_id, portfolio_id, client_order_id, symbol, side, type, tif, qty, limit_price, status,
                    filled_qty, avg_fill_price, created_at, updated_at, canceled_at, filled_at)
SELECT md5('u' || u)::uuid, md5('p' || u)::uuid, 'bench-' || g, sym, side, 'limit', 'gtc', qty, px, status,
       CASE status WHEN 'filled' THEN qty ELSE 0 END,
       CASE status WHEN 'filled' THEN px END,
       ts, ts,
       CASE status WHEN 'canceled' THEN ts + interval '1 hour' END,
       CASE status WHEN 'filled' THEN ts + interval '1 minute' END
FROM (
    SELECT g, g % $3 AS u,
           ($4::text[])[g % cardinality($4::text[]) + 1] AS sym,
           CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END AS side,
           (1 + g % 50)::numeric AS qty,
           round((($5::numeric[])[g % cardinality($4::text[]) + 1] * (0.9 + (g % 200) / 1000.0))::numeric, 2) AS px,
           (ARRAY['filled', 'filled', 'filled', 'canceled', 'new'])[g % 5 + 1] AS status,
           now() - interval '365 days' + (interval '365 days' / $6::bigint) * g AS ts
    FROM generate_series($1::bigint, $2::bigint - 1) AS g
) AS s
"""


async def _load(superuser_url: str, users: int, rows: int, progress: Callable[[str], None]) -> float:
    """Fill the bench database; return the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    try:
        await conn.executemany(
            "INSERT INTO instruments (symbol, name, asset_class, quote_currency, tick_size, lot_size,"
            " trading_session) VALUES ($1, $2, $3, $4, $5::numeric, $6::numeric, $7)"
            " ON CONFLICT (symbol) DO NOTHING",  # 0009_instruments.sql seeds most of them already
            [i[:7] for i in _INSTRUMENTS],
        )
        progress(f"loading {users:,} users and their portfolios")
        await conn.execute(
            "INSERT INTO users (id, console_handle, display_name)"
            " SELECT md5('u' || i)::uuid, 'bench' || i, 'Bench user ' || i FROM generate_series(0, $1 - 1) AS i",
            users,
        )
        await conn.execute(
            "INSERT INTO portfolios (id, user_id, name, is_default, cash)"
            " SELECT md5('p' || i)::uuid, md5('u' || i)::uuid, 'Main', true, 100000"
            " FROM generate_series(0, $1 - 1) AS i",
            users,
        )
    finally:
        await conn.close()

    chunk = max(10_000, rows // 20)
    chunks = [(lo, min(lo + chunk, rows)) for lo in range(0, rows, chunk)]
    pending = list(reversed(chunks))
    done = 0
    orders_started = time.perf_counter()
    symbols = [i[0] for i in _INSTRUMENTS]
    prices = [i[7] for i in _INSTRUMENTS]

    async def worker() -> None:
        nonlocal done
        # Superuser: RLS doesn't apply. The rows are valid by construction, so the foreign-key triggers (three
        # index lookups per row) are skipped for this session; CHECK constraints and unique indexes still apply.
        wconn = await asyncpg.connect(
            superuser_url, server_settings={"search_path": SCHEMA, "session_replication_role": "replica"}
        )
        try:
            while pending:
                lo, hi = pending.pop()
                await wconn.execute(_ORDERS_CHUNK, lo, hi, users, symbols, prices, rows)
                done += hi - lo
                rate = done / (time.perf_counter() - orders_started)
                progress(f"orders {done:>9,} / {rows:,} ({rate:,.0f} rows/s)")
        finally:
            await wconn.close()

    progress(f"loading {rows:,} orders ({rows // users} per user) on 2 connections")
    await asyncio.gather(worker(), worker())

    progress("VACUUM ANALYZE and CHECKPOINT")
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    try:
        await conn.execute("VACUUM (ANALYZE) users, portfolios, instruments, orders")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _query_rows(db: Database, user: UUID, *, rls: bool) -> list[tuple[Any, ...]]:
    if rls:
        async with db.user_scope(user) as session:
            return [tuple(r) for r in (await run_sql(session, RLS_QUERY)).all()]
    async with db.system_scope("bench.rls") as session:
        return [tuple(r) for r in (await run_sql(session, BASELINE_QUERY, {"uid": user})).all()]


async def _verify(db: Database, users: list[UUID], per_user: int, rng: random.Random) -> int:
    """Both variants return the same rows, and a user's scope sees exactly that user's orders. Return users checked."""
    sample = rng.sample(users, min(10, len(users)))
    for user in sample:
        with_rls = await _query_rows(db, user, rls=True)
        baseline = await _query_rows(db, user, rls=False)
        if with_rls != baseline or len(with_rls) != min(20, per_user):
            raise RuntimeError(
                f"bench rls: user {user}: RLS returned {len(with_rls)} rows, WHERE user_id returned {len(baseline)},"
                f" and they differ; the policy and the explicit filter disagree"
            )
        async with db.user_scope(user) as session:
            visible = (await run_sql(session, text("SELECT count(*), count(DISTINCT user_id) FROM orders"))).one()
        if tuple(visible) != (per_user, 1):
            raise RuntimeError(f"bench rls: user {user}'s scope sees {visible[0]} orders, expected {per_user}")
    return len(sample)


def _plan_summary(node: dict[str, Any]) -> str:
    label = node["Node Type"] + (f" using {node['Index Name']}" if "Index Name" in node else "")
    if node.get("Parent Relationship") in ("InitPlan", "SubPlan"):
        label = f"[{node['Parent Relationship']}: {label}]"
    return " > ".join([label, *(_plan_summary(child) for child in node.get("Plans", []))])


async def _plans(db: Database, user: UUID) -> tuple[str, str]:
    """The plan of each variant, as `Limit > Index Scan using ...`, so a regression shows its cause."""
    async with db.user_scope(user) as session:
        rls = (await run_sql(session, text(f"EXPLAIN (FORMAT JSON) {RLS_QUERY.text}"))).scalar_one()
    async with db.system_scope("bench.rls") as session:
        base = (
            await run_sql(session, text(f"EXPLAIN (FORMAT JSON) {BASELINE_QUERY.text}"), {"uid": user})
        ).scalar_one()
    return _plan_summary(rls[0]["Plan"]), _plan_summary(base[0]["Plan"])


async def _measure_queries(
    db: Database,
    users: list[UUID],
    batches: int,
    per_scope: int,
    rng: random.Random,
    progress: Callable[[str], None],
    *,
    record: bool = True,
) -> tuple[list[int], list[int]]:
    rls_ns: list[int] = []
    base_ns: list[int] = []

    async def run_rls(user: UUID) -> None:
        async with db.user_scope(user) as session:
            for _ in range(per_scope):
                t0 = time.perf_counter_ns()
                (await run_sql(session, RLS_QUERY)).all()
                rls_ns.append(time.perf_counter_ns() - t0)

    async def run_base(user: UUID) -> None:
        async with db.system_scope("bench.rls") as session:
            params = {"uid": user}
            for _ in range(per_scope):
                t0 = time.perf_counter_ns()
                (await run_sql(session, BASELINE_QUERY, params)).all()
                base_ns.append(time.perf_counter_ns() - t0)

    step = max(1, batches // 5)
    for b in range(batches):
        user = rng.choice(users)
        first, second = (run_rls, run_base) if b % 2 == 0 else (run_base, run_rls)
        await first(user)
        await second(user)
        if record and (b + 1) % step == 0 and b + 1 < batches:
            progress(f"queries: {b + 1:,} / {batches:,} batches")
    return rls_ns, base_ns


async def _measure_scopes(db: Database, users: list[UUID], n: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """An empty user_scope versus an empty plain transaction on the same engine, alternating."""
    scope_ns: list[int] = []
    plain_ns: list[int] = []

    async def open_scope() -> None:
        user = rng.choice(users)
        t0 = time.perf_counter_ns()
        async with db.user_scope(user):
            pass
        scope_ns.append(time.perf_counter_ns() - t0)

    async def plain_txn() -> None:
        # SQLAlchemy's asyncpg driver sends BEGIN lazily, with the first statement, so an empty
        # `engine.begin()` block would never reach the server. This is the same pooled connection checkout with
        # a real BEGIN and COMMIT on the wire: what a scope costs is then the set_config round trip plus the session.
        t0 = time.perf_counter_ns()
        async with db.engine.connect() as conn:
            driver: asyncpg.Connection | None = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            async with driver.transaction():
                pass
        plain_ns.append(time.perf_counter_ns() - t0)

    steps: list[Callable[[], Awaitable[None]]] = [open_scope, plain_txn]
    for i in range(n):
        first, second = steps if i % 2 == 0 else steps[::-1]
        await first()
        await second()
    return scope_ns, plain_ns


async def _run(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    users_n = 1_000 if quick else 10_000
    rows = 100_000 if quick else 1_000_000
    batches = 300 if quick else 2_000
    per_scope = 5
    scope_samples = 500 if quick else 3_000
    rng = random.Random(SEED)

    started = time.perf_counter()
    async with throwaway_cluster(settings, "rls", progress) as cluster:
        load_s = await _load(cluster.superuser_url, users_n, rows, progress)
        version = cluster.version

        db = Database(cluster.app_url, pool_size=2, max_overflow=0, application_name="tradedesk-bench")
        try:
            async with db.system_scope("bench.rls") as session:
                users = [r[0] for r in (await run_sql(session, text("SELECT id FROM users ORDER BY id"))).all()]
            checked = await _verify(db, users, rows // users_n, rng)
            rls_plan, baseline_plan = await _plans(db, rng.choice(users))

            progress("warming up")
            await _measure_queries(db, users, max(50, batches // 10), per_scope, rng, progress, record=False)
            await _measure_scopes(db, users, 200, rng)

            progress(f"timing {batches * per_scope:,} queries per variant ({per_scope} per scope, alternating)")
            rls_ns, base_ns = await _measure_queries(db, users, batches, per_scope, rng, progress)
            progress(f"timing {scope_samples:,} scope opens and plain transactions")
            scope_ns, plain_ns = await _measure_scopes(db, users, scope_samples, rng)
        finally:
            await db.dispose()

    rls_p50, base_p50 = _p50(rls_ns), _p50(base_ns)
    scope_p50, plain_p50 = _p50(scope_ns), _p50(plain_ns)
    results: dict[str, Any] = {
        "rls_p50_ms": _r(rls_p50),
        "baseline_p50_ms": _r(base_p50),
        "ratio": round(rls_p50 / base_p50, 3),
        "rls_p99_ms": _r(_p99(rls_ns)),
        "baseline_p99_ms": _r(_p99(base_ns)),
        "p99_ratio": round(_p99(rls_ns) / _p99(base_ns), 3),
        "scope_open_p50_ms": _r(scope_p50),
        "plain_txn_p50_ms": _r(plain_p50),
        "scope_overhead_ms": _r(scope_p50 - plain_p50),
    }
    params: dict[str, Any] = {
        "rows": rows,
        "users": users_n,
        "rows_per_user": rows // users_n,
        "queries": len(rls_ns),
        "queries_per_scope": per_scope,
        "scope_samples": len(scope_ns),
        "verified_users": checked,
        "quick": quick,
        "postgres": version,
        "rls_plan": rls_plan,
        "baseline_plan": baseline_plan,
        "load_s": round(load_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }
    table = [
        ("data", f"{rows:,} orders over {users_n:,} users, PostgreSQL {version} (embedded, throwaway)"),
        ("query", "the user's 20 most recent orders"),
        ("user_scope (RLS) p50", f"{results['rls_p50_ms']:.4f} ms  (p99 {results['rls_p99_ms']:.4f} ms)"),
        (
            "system_scope + WHERE p50",
            f"{results['baseline_p50_ms']:.4f} ms  (p99 {results['baseline_p99_ms']:.4f} ms)",
        ),
        ("ratio (goal <= 1.05)", f"{results['ratio']:.3f}x  (p99 {results['p99_ratio']:.3f}x)"),
        ("empty user_scope p50", f"{results['scope_open_p50_ms']:.4f} ms"),
        ("empty plain txn p50", f"{results['plain_txn_p50_ms']:.4f} ms"),
        ("scope overhead", f"{results['scope_overhead_ms']:.4f} ms (set_config round trip + session)"),
        ("plan with RLS", rls_plan),
        ("plan with WHERE", baseline_plan),
        ("samples", f"{len(rls_ns):,} queries per variant, {len(scope_ns):,} scope opens"),
        ("load / total", f"{params['load_s']} s / {params['total_s']} s"),
    ]
    return BenchResult("rls", results, params, table)


def bench_rls(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    return run_async(_run(settings, quick, progress))  # a SIGTERM still stops the cluster and deletes its folder
