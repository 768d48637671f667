"""`tradedesk bench alerts`: the alert engine's index on non-triggering ticks against a naive scan, its memory per
alert, and the latency from a triggering tick to its committed outbox row.

Index part, in process, no database: 1,000,000 active alerts over 5,000 symbols (quick: 100,000 over 500) in
`core.alerts.index.AlertIndex`, each "above" or "below" 2% to 30% away from its symbol's starting price, then a seeded
stream of ticks that wander within 1% of those prices: none crosses an alert, so every tick is the index's common
case (rejected by two integer comparisons). Both implementations must fire nothing on the ticks they both run.

The baseline, in the same run, is what a polling bot's query does: scan every active alert on each tick (symbol, then
the crossing rule against the previous price). Too slow for the whole stream, it runs on a prefix of it.
`ratio = ticks_per_s / baseline_ticks_per_s`. `bytes_per_alert` is the index's memory (sys.getsizeof of its arrays,
per-symbol objects and symbol table) over the number of alerts.

Trigger part, on a throwaway embedded cluster (bench/cluster.py): alerts created through the real service (users on
the free plan, so several users), a real AlertEngine loaded from the database, then ticks that each cross exactly one
alert; the latency of each `on_tick` plus the `flush` that commits its fire (run inline here; a task in the worker)
spans the fire_alert transaction and its COMMIT (synchronous_commit on): tick to committed outbox row. Afterwards
there must be exactly one notification per alert.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench import BenchResult
from bench.cluster import run_async, throwaway_cluster
from bench.stats import p50, p99, r
from core.alerts.engine import AlertEngine
from core.alerts.index import SCALE, AlertIndex, Entry
from core.alerts.service import create_alert
from core.config import Settings
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.market.ticks import Tick

SEED = 20261125
GOAL_TICKS_PER_S = 1_000_000
GOAL_RATIO = 1_000
GOAL_BYTES_PER_ALERT = 64
GOAL_TRIGGER_P99_MS = 10.0
MIN_AWAY_BPS, MAX_AWAY_BPS = 200, 3_000  # alerts sit 2% to 30% from the starting price
WANDER_BPS = 100  # ticks stay within 1% of it
ALERTS_PER_USER = 10  # the free plan's quota
TRIGGER_SYMBOL = "AAPL"

BenchTick = tuple[str, int]  # symbol, scaled price


class World:
    """The seeded universe: symbols, starting prices (scaled), alerts and a non-crossing tick stream."""

    def __init__(self, alerts: int, symbols: int, ticks: int, seed: int = SEED) -> None:
        rng = random.Random(seed)
        self.symbols = [f"S{i:04d}" for i in range(symbols)]
        # Log-uniform starting prices between $5 and $2,000, in cents, scaled.
        self.start = {s: round(100 * 5 * 400 ** rng.random()) * (SCALE // 100) for s in self.symbols}
        self.alerts: list[Entry] = []
        for i in range(alerts):
            symbol = self.symbols[i % symbols]
            price = self.start[symbol]
            away = price * rng.randint(MIN_AWAY_BPS, MAX_AWAY_BPS) // 10_000
            above = rng.random() < 0.5
            self.alerts.append(
                Entry(symbol, "above" if above else "below", price + away if above else price - away,
                      i.to_bytes(16, "big"), 0, -1, 0)
            )  # fmt: skip
        self.ticks: list[BenchTick] = []
        for _ in range(ticks):
            symbol = self.symbols[rng.randrange(symbols)]
            price = self.start[symbol]
            self.ticks.append((symbol, price + price * rng.randint(-WANDER_BPS, WANDER_BPS) // 10_000))


def build_index(world: World) -> AlertIndex:
    index = AlertIndex()
    index.load(world.alerts)
    for symbol, price in world.start.items():
        index.set_price(symbol, price, price)
    return index


def run_index(index: AlertIndex, ticks: Sequence[BenchTick], record: list[int] | None = None) -> int:
    """Every tick through the index. Returns how many alerts fired."""
    crossed = index.crossed
    fired = 0
    for symbol, price in ticks:
        hits = crossed(symbol, price, price)
        if hits:
            fired += len(hits)
        if record is not None:
            record.append(len(hits))
    return fired


def run_naive(world: World, ticks: Sequence[BenchTick], record: list[int]) -> int:
    """Every tick against every active alert, as a polling query over all of them would."""
    alerts = [(e.symbol, e.direction == "above", e.threshold) for e in world.alerts]
    prev = dict(world.start)
    fired = 0
    for symbol, price in ticks:
        p = prev[symbol]
        hits = 0
        for s, above, t in alerts:
            if s == symbol and ((p < t <= price) if above else (price <= t < p)):
                hits += 1
        prev[symbol] = price
        fired += hits
        record.append(hits)
    return fired


async def _trigger_latency(settings: Settings, n: int, progress: Callable[[str], None]) -> dict[str, Any]:
    async with throwaway_cluster(settings, "alerts", progress) as cluster:
        db = Database(cluster.app_url, pool_size=4, max_overflow=0, application_name="tradedesk-bench")
        try:
            now = datetime.now(UTC)
            base = Decimal(100)
            async with db.system_scope("bench.alerts.seed") as s:
                await (await raw_connection(s)).execute(
                    "INSERT INTO last_prices (symbol, price, ts, source) VALUES ($1, $2, $3, 'sim') "
                    "ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, ts = EXCLUDED.ts",
                    TRIGGER_SYMBOL,
                    base,
                    now,
                )
            progress(f"creating {n} alerts through the service ({ALERTS_PER_USER} per free-plan user)")
            created = 0
            user = None
            for k in range(n):
                if k % ALERTS_PER_USER == 0:
                    user = await resolve_identity(db, console_handle=f"bench-alerts-{k // ALERTS_PER_USER}")
                assert user is not None
                async with db.user_scope(user) as s:
                    await create_alert(s, TRIGGER_SYMBOL, "above", base + Decimal(k + 1) / 100, now=now)
                created += 1
            engine = AlertEngine(db, retry_after_s=0, autostart=False)
            await engine.reload(now)
            warm = Tick(TRIGGER_SYMBOL, base + Decimal("0.001"), Decimal(1), now, "sim")
            await engine.on_tick(warm)  # no crossing: warms the pool and the code path
            await engine.flush()
            progress(f"timing {n} triggering ticks, one alert each, tick to committed outbox row")
            samples: list[int] = []
            for k in range(n):
                tick = Tick(TRIGGER_SYMBOL, base + Decimal(k + 1) / 100, Decimal(1), now + timedelta(seconds=k), "sim")
                t0 = time.perf_counter_ns()
                await engine.on_tick(tick)
                await engine.flush()  # the committing side, run inline: tick to committed outbox row
                samples.append(time.perf_counter_ns() - t0)
            async with db.system_scope("bench.alerts.check") as s:
                conn = await raw_connection(s)
                notifications = await conn.fetchval("SELECT count(*) FROM notifications WHERE kind = 'alert'")
                distinct = await conn.fetchval("SELECT count(DISTINCT alert_id) FROM notifications")
                triggered = await conn.fetchval("SELECT count(*) FROM alerts WHERE status = 'triggered'")
        finally:
            await db.dispose()
    if not notifications == distinct == triggered == created == engine.fired == n:
        raise RuntimeError(
            f"bench alerts: {n} triggering ticks gave {notifications} notifications for {distinct} alerts,"
            f" {triggered} alerts triggered, {engine.fired} fired"
        )
    return {"samples": samples, "notifications": notifications, "postgres": cluster.version}


def bench_alerts(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    n_alerts, n_symbols = (100_000, 500) if quick else (1_000_000, 5_000)
    n_ticks = 200_000 if quick else 2_000_000
    n_baseline = 50 if quick else 10
    n_trigger = 100 if quick else 300
    started = time.perf_counter()

    progress(f"generating {n_alerts:,} alerts over {n_symbols:,} symbols and {n_ticks:,} ticks (seed {SEED})")
    world = World(n_alerts, n_symbols, n_ticks)
    progress(f"building the index of {n_alerts:,} alerts")
    t0 = time.perf_counter()
    index = build_index(world)
    build_s = time.perf_counter() - t0
    nbytes = index.nbytes()
    prefix = world.ticks[:n_baseline]

    progress(f"running the naive scan on the first {n_baseline:,} ticks")
    naive: list[int] = []
    t0 = time.perf_counter()
    naive_fired = run_naive(world, prefix, naive)
    baseline_s = time.perf_counter() - t0
    indexed: list[int] = []
    run_index(build_index(world), prefix, indexed)
    mismatched = sum(1 for a, b in zip(indexed, naive, strict=True) if a != b)
    if mismatched or naive_fired:
        raise RuntimeError(f"bench alerts: on the prefix the scan fired {naive_fired}, {mismatched} ticks differ")

    progress(f"timing {n_ticks:,} ticks through the index")
    t0 = time.perf_counter()
    fired = run_index(index, world.ticks)
    index_s = time.perf_counter() - t0
    if fired or len(index) != n_alerts:
        raise RuntimeError(f"bench alerts: {fired} alerts fired on non-crossing ticks; {len(index)} indexed")

    trigger = run_async(_trigger_latency(settings, n_trigger, progress))
    samples: list[int] = trigger["samples"]

    ticks_per_s = n_ticks / index_s
    baseline_ticks_per_s = n_baseline / baseline_s
    results: dict[str, Any] = {
        "ticks_per_s": round(ticks_per_s, 1),
        "baseline_ticks_per_s": round(baseline_ticks_per_s, 3),
        "ratio": round(ticks_per_s / baseline_ticks_per_s, 1),
        "bytes_per_alert": round(nbytes / n_alerts, 2),
        "trigger_p99_ms": r(p99(samples)),
        "trigger_p50_ms": r(p50(samples)),
        "ns_per_tick": round(1e9 * index_s / n_ticks, 1),
    }
    params: dict[str, Any] = {
        "alerts": n_alerts,
        "symbols": n_symbols,
        "ticks": n_ticks,
        "baseline_ticks": n_baseline,
        "verified_ticks": len(naive),
        "mismatched_ticks": mismatched,
        "fired": fired,
        "index_bytes": nbytes,
        "build_s": round(build_s, 3),
        "trigger_ticks": len(samples),
        "trigger_notifications": trigger["notifications"],
        "postgres": trigger["postgres"],
        "seed": SEED,
        "quick": quick,
        "goal_ticks_per_s": GOAL_TICKS_PER_S,
        "goal_ratio": GOAL_RATIO,
        "goal_bytes_per_alert": GOAL_BYTES_PER_ALERT,
        "goal_trigger_p99_ms": GOAL_TRIGGER_P99_MS,
        "total_s": round(time.perf_counter() - started, 1),
    }

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    table = [
        ("index", f"{n_alerts:,} active alerts over {n_symbols:,} symbols, built in {build_s:.2f} s"),
        ("index ticks/s", f"{ticks_per_s:,.0f}  ({results['ns_per_tick']:.0f} ns/tick, none triggering;"
                          f" goal >= {GOAL_TICKS_PER_S:,}: {met(ticks_per_s >= GOAL_TICKS_PER_S)})"),
        ("naive scan ticks/s", f"{baseline_ticks_per_s:,.2f}  (every alert per tick, on the first {n_baseline:,})"),
        ("ratio", f"{results['ratio']:,.0f}x  (goal >= {GOAL_RATIO:,}x: {met(results['ratio'] >= GOAL_RATIO)})"),
        ("bytes per alert", f"{results['bytes_per_alert']:.1f}  (goal <= {GOAL_BYTES_PER_ALERT}:"
                            f" {met(results['bytes_per_alert'] <= GOAL_BYTES_PER_ALERT)})"),
        ("trigger p50 / p99", f"{results['trigger_p50_ms']:.2f} / {results['trigger_p99_ms']:.2f} ms tick to committed"
                              f" outbox row, {len(samples)} ticks (goal p99 <= {GOAL_TRIGGER_P99_MS:g} ms:"
                              f" {met(results['trigger_p99_ms'] <= GOAL_TRIGGER_P99_MS)})"),
        ("total", f"{params['total_s']} s"),
    ]  # fmt: skip
    return BenchResult("alerts", results, params, table)
