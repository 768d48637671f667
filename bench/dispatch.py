"""`tradedesk bench dispatch`: notifications per second through the outbox dispatcher into a Discord-like limit.

A burst of N pending notifications (2,000; quick: 300), one each for N users whose DM channel ids are cached (so a
notification is one request), is dispatched by the real `Dispatcher` (claim with SKIP LOCKED, deliver outside the
transaction, record) into `RateLimitedNotifier`: a fake of Discord's global limit of 50 requests in any rolling
second, answering a 429 with retry_after when exceeded, deduping by nonce, with a small latency per request. The
dispatcher paces every request with the shared token bucket (45/s, burst 2). Goal: >= 45 notifications/s with zero
429s.

The baseline, in the same run: the same dispatcher and a fresh burst, but unpaced (no limiter), as a naive bot sends,
retrying each 429 after its retry_after. Its 429 count is what pacing avoids (Discord bans a bot for a while after
10,000 invalid requests in 10 minutes).

Afterwards every row must be 'sent', delivered exactly once (one visible message per nonce); otherwise the bench fails.
Runs on a throwaway embedded cluster (bench/cluster.py), like every database bench.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from bench import BenchResult
from bench.cluster import run_async, throwaway_cluster
from core.config import Settings
from core.db.database import Database
from core.notifications.dispatcher import Dispatcher, DispatchStats
from core.notifications.limiter import DEFAULT_BURST, DEFAULT_RATE_PER_S, Limiter, TokenBucket, Unpaced
from core.notifications.notifier import DISCORD_GLOBAL_LIMIT_PER_S, RateLimitedNotifier

GOAL_PER_S = 45.0
BATCH_SIZE = 100
LATENCY_S = 0.02


async def _seed(superuser_url: str, users: int) -> None:
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute(
            "INSERT INTO tradedesk.users (discord_id, dm_channel_id, dm_status)"
            " SELECT 1000000 + g, 900000000000000000 + g, 'open' FROM generate_series(1, $1) g",
            users,
        )
    finally:
        await conn.close()


async def _burst(superuser_url: str, tag: str) -> int:
    """One pending alert notification per user, all due now."""
    conn = await asyncpg.connect(superuser_url)
    try:
        status = await conn.execute(
            "INSERT INTO tradedesk.notifications (user_id, kind, dedupe_key, title, body)"
            " SELECT id, 'alert', $1 || ':' || discord_id, 'AAPL above 200', 'AAPL crossed 200.00 (simulated price)'"
            " FROM tradedesk.users",
            tag,
        )
    finally:
        await conn.close()
    return int(status.split()[-1])


async def _outcome(superuser_url: str, tag: str) -> dict[str, int]:
    conn = await asyncpg.connect(superuser_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status <> 'sent') AS other,"
            " count(*) FILTER (WHERE last_error IS NOT NULL) AS retried"
            " FROM tradedesk.notifications WHERE dedupe_key LIKE $1",
            tag + ":%",
        )
    finally:
        await conn.close()
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}


async def _phase(
    db: Database, superuser_url: str, tag: str, limiter: Limiter, progress: Callable[[str], None]
) -> dict[str, Any]:
    total = await _burst(superuser_url, tag)
    fake = RateLimitedNotifier(limit_per_s=DISCORD_GLOBAL_LIMIT_PER_S, latency_s=LATENCY_S)
    dispatcher = Dispatcher(db, fake, limiter, batch_size=BATCH_SIZE)
    stats = DispatchStats()
    started = time.perf_counter()
    while stats.notifications_sent + stats.failed < total:
        round_stats = await dispatcher.dispatch_once()
        stats.add(round_stats)
        if round_stats.claimed == 0:
            await asyncio.sleep(0.01)  # only retries left, not due yet
        if time.perf_counter() - started > 30 + total:  # far beyond any sane run
            raise RuntimeError(f"bench dispatch ({tag}): {stats.notifications_sent} of {total} sent, giving up")
    wall = time.perf_counter() - started
    outcome = await _outcome(superuser_url, tag)
    nonces = {v.message.outbox_id for v in fake.deliveries}
    problems = []
    if outcome["sent"] != total or outcome["other"]:
        problems.append(f"{outcome['sent']} of {total} rows sent, {outcome['other']} in another state")
    if len(fake.deliveries) != total or len(nonces) != total:
        problems.append(f"{len(fake.deliveries)} visible messages for {total} notifications ({len(nonces)} nonces)")
    if problems:
        raise RuntimeError(f"bench dispatch ({tag}): " + "; ".join(problems))
    progress(f"{tag}: {total:,} notifications in {wall:.1f} s, {total / wall:.1f}/s, {fake.http_429} 429s")
    return {
        "notifications": total,
        "wall_s": wall,
        "per_s": total / wall,
        "http_429": fake.http_429,
        "requests": fake.requests,
        "peak_per_s": fake.peak_per_s,
        "retried_rows": outcome["retried"],
    }


async def _run(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    users = 300 if quick else 2_000
    started = time.perf_counter()
    async with throwaway_cluster(settings, "dispatch", progress) as cluster:
        await _seed(cluster.superuser_url, users)
        db = Database(cluster.app_url, pool_size=4, max_overflow=0, application_name="tradedesk-bench")
        try:
            progress(
                f"paced: {users:,} notifications at {DEFAULT_RATE_PER_S:g}/s"
                f" into a {DISCORD_GLOBAL_LIMIT_PER_S}/s limit"
            )
            paced = await _phase(db, cluster.superuser_url, "paced", TokenBucket(), progress)
            await asyncio.sleep(1.1)  # a fresh rolling second for the baseline (it has its own fake anyway)
            progress(f"baseline: {users:,} notifications unpaced, retrying 429s after retry_after")
            naive = await _phase(db, cluster.superuser_url, "naive", Unpaced(), progress)
        finally:
            await db.dispose()

    results: dict[str, Any] = {
        "notifications_per_s": round(paced["per_s"], 2),
        "http_429": paced["http_429"],
        "requests_per_notification": round(paced["requests"] / paced["notifications"], 3),
        "peak_requests_per_s": paced["peak_per_s"],
        "baseline_notifications_per_s": round(naive["per_s"], 2),
        "baseline_http_429": naive["http_429"],
        "baseline_peak_requests_per_s": naive["peak_per_s"],
    }
    params: dict[str, Any] = {
        "notifications": paced["notifications"],
        "users": users,
        "baseline_notifications": naive["notifications"],
        "limit_per_s": DISCORD_GLOBAL_LIMIT_PER_S,
        "pace_per_s": DEFAULT_RATE_PER_S,
        "burst": DEFAULT_BURST,
        "batch_size": BATCH_SIZE,
        "latency_ms": LATENCY_S * 1000,
        "paced_wall_s": round(paced["wall_s"], 3),
        "baseline_wall_s": round(naive["wall_s"], 3),
        "paced_requests": paced["requests"],
        "baseline_requests": naive["requests"],
        "baseline_retried_rows": naive["retried_rows"],
        "goal_notifications_per_s": GOAL_PER_S,
        "goal_http_429": 0,
        "quick": quick,
        "postgres": cluster.version,
        "total_s": round(time.perf_counter() - started, 1),
    }
    met = "met" if results["notifications_per_s"] >= GOAL_PER_S else "NOT met"
    met429 = "met" if results["http_429"] == 0 else "NOT met"
    table = [
        ("setup", f"{users:,} users, DM channels cached, one notification each; PostgreSQL {cluster.version}"),
        ("notifier", f"fake Discord: {DISCORD_GLOBAL_LIMIT_PER_S} requests in any rolling second, 429 + retry_after,"
                     f" {LATENCY_S * 1000:g} ms latency, nonce dedupe"),
        ("notifications/s", f"{results['notifications_per_s']:.2f}  (goal >= {GOAL_PER_S:g}: {met})"),
        ("429s", f"{results['http_429']}  (goal 0: {met429});"
                 f" peak {results['peak_requests_per_s']} requests in a second"),
        ("requests", f"{results['requests_per_notification']:.3f} per notification"),
        ("baseline", f"unpaced: {results['baseline_notifications_per_s']:.2f}/s with {results['baseline_http_429']:,}"
                     f" 429s ({naive['retried_rows']:,} rows retried)"),
        ("total", f"{params['total_s']} s"),
    ]  # fmt: skip
    return BenchResult("dispatch", results, params, table)


def bench_dispatch(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    return run_async(_run(settings, quick, progress))
