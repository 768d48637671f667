"""`tradedesk run` as a real process: cold start on a fresh data dir, clean shutdown, and recovery after kill -9.

Each test has its own TRADEDESK_DATA_DIR (so its own embedded Postgres cluster) and its own free port.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from app import __version__
from core.alerts.service import create_alert
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.market.sessions import MarketHours
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.models import OrderView as Order
from core.orders.paper import BrokerCosts, PaperBroker
from core.portfolio.service import default_portfolio
from tests.app.procs import (
    Runs,
    Tradedesk,
    clean_env,
    free_port,
    get_json,
    leftovers,
    processes_for,
    run_cli,
    wait_healthy,
)

pytestmark = pytest.mark.slow

# For each integration, what its line in the log says when the local default is in use.
LOCAL_DEFAULT_LINES = {
    "database": re.compile(r"database: DATABASE_URL unset; using the embedded PostgreSQL in .*\(local default\)"),
    "discord": re.compile(r"discord: DISCORD_TOKEN unset; no Discord bot \(local default\)"),
    "llm": re.compile(r"llm: OPENAI_API_KEY unset; .*offline planner"),
    "billing": re.compile(r"billing: STRIPE_SECRET_KEY unset; offline billing simulator"),
    "market": re.compile(r"market: TRADEDESK_MARKET_PROVIDER=sim; simulated prices"),
}


def assert_healthy(td: Tradedesk) -> float:
    body, elapsed = wait_healthy(td, timeout=60)
    feed = body.pop("feed", None)
    assert body == {"status": "ok", "db": "ok", "version": __version__}, f"/healthz after {elapsed:.1f}s: {body}"
    assert feed in ("ok", "stale", "down"), f"/healthz has no feed state: {body}"
    return elapsed


def assert_exits_cleanly(td: Tradedesk, signum: int = signal.SIGTERM) -> None:
    """`signum` makes the process exit 0 within 30 s, with no traceback in its log."""
    td.signal(signum)
    try:
        code = td.wait(30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"tradedesk did not exit within 30s of {signum!r}; log:\n{td.log}") from exc
    assert code == 0, f"exit code {code} after {signum!r}; log:\n{td.log}"
    assert "Traceback" not in td.log, td.log


def assert_stops_cleanly(td: Tradedesk, signum: int, data_dir: Path) -> None:
    """As assert_exits_cleanly, and no process is left using the data dir (the embedded Postgres stopped too)."""
    assert_exits_cleanly(td, signum)
    left = leftovers(data_dir)
    assert left == [], f"processes still using {data_dir} after tradedesk run exited: {left}"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cold_start_serves_healthz_and_stops_on_signal(
    runs: Runs, data_dir: Path, signum: signal.Signals, record_property: pytest.RecordProperty
) -> None:
    assert not data_dir.exists()
    td = runs.start(free_port())

    elapsed = assert_healthy(td)
    record_property("cold_start_s", round(elapsed, 2))
    assert processes_for(data_dir), "the embedded Postgres should run while tradedesk run is up"

    assert_stops_cleanly(td, signum, data_dir)

    log = td.log
    missing = [name for name, line in LOCAL_DEFAULT_LINES.items() if not line.search(log)]
    assert missing == [], f"no log line says which local default is in use for {missing}; log:\n{log}"


def test_restart_after_kill_9_recovers_the_orphaned_postgres(runs: Runs, data_dir: Path) -> None:
    port = free_port()
    first = runs.start(port)
    assert_healthy(first)

    first.proc.kill()  # SIGKILL to tradedesk alone: no handler, no atexit; postgres stays behind
    assert first.wait(10) == -signal.SIGKILL
    orphans = processes_for(data_dir)
    assert orphans, "expected the embedded Postgres to outlive a kill -9 of tradedesk run"

    second = runs.start(port)
    elapsed = assert_healthy(second)
    assert "forgot 1 handle(s) of processes that died" in second.log, second.log
    assert "migrations: 0 applied" in second.log, f"after {elapsed:.1f}s: {second.log}"

    assert_stops_cleanly(second, signal.SIGTERM, data_dir)


def test_sigterm_during_startup_still_stops_cleanly(runs: Runs, data_dir: Path) -> None:
    """A stop asked for while the embedded Postgres is starting and migrating must not leave it behind."""
    td = runs.start(free_port())
    deadline = time.monotonic() + 60
    while "starting" not in td.log:
        assert td.proc.poll() is None, f"tradedesk run exited early; log:\n{td.log}"
        assert time.monotonic() < deadline, f"no 'starting' line within 60s; log:\n{td.log}"
        time.sleep(0.02)
    assert_stops_cleanly(td, signal.SIGTERM, data_dir)


def test_db_stop_leaves_the_database_of_a_running_tradedesk_alone(runs: Runs, data_dir: Path) -> None:
    td = runs.start(free_port())
    assert_healthy(td)

    env = clean_env(TRADEDESK_DATA_DIR=str(data_dir))
    result = run_cli("db-stop", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "embedded Postgres is still in use by another tradedesk process"
    status, body = get_json(f"http://127.0.0.1:{td.port}/healthz")
    assert (status, body["db"]) == (200, "ok"), body

    assert_stops_cleanly(td, signal.SIGTERM, data_dir)


def fresh_price_url(data_dir: Path, td: Tradedesk, symbol: str = "BTC-USD", age_s: float = 5.0) -> str:
    """The database URL (from `tradedesk db-url`) once `symbol` has a last price younger than `age_s`: the sim
    streams and the persister writes."""
    result = run_cli("db-url", env=clean_env(TRADEDESK_DATA_DIR=str(data_dir)))
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    deadline = time.monotonic() + 30
    while not any(
        r["symbol"] == symbol and r["age"] < timedelta(seconds=age_s) for r in asyncio.run(_last_prices(url))
    ):
        assert time.monotonic() < deadline, f"no fresh {symbol} price; log:\n{td.log}"
        time.sleep(0.2)
    return url


async def _last_prices(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            "SELECT symbol, price, source, now() - ts AS age FROM tradedesk.last_prices ORDER BY symbol"
        )
    finally:
        await conn.close()


def test_run_streams_simulated_prices_into_last_prices(runs: Runs, data_dir: Path) -> None:
    """With no configuration, the worker's feed reads the local sim exchange and keeps last_prices fresh."""
    td = runs.start(free_port())
    assert_healthy(td)
    deadline = time.monotonic() + 30
    while get_json(f"http://127.0.0.1:{td.port}/healthz")[1].get("feed") != "ok":
        assert time.monotonic() < deadline, f"the feed never reported ok; log:\n{td.log}"
        time.sleep(0.2)
    assert re.search(r"market feed: SIMULATED prices from the local sim exchange at ws://127\.0\.0\.1:\d+", td.log)

    result = run_cli("db-url", env=clean_env(TRADEDESK_DATA_DIR=str(data_dir)))
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    rows: list[asyncpg.Record] = []
    while len(rows) < 11:
        assert time.monotonic() < deadline, f"last_prices has only {rows}; log:\n{td.log}"
        time.sleep(0.5)
        rows = asyncio.run(_last_prices(url))
    assert {r["source"] for r in rows} == {"sim"}
    assert all(r["age"] < timedelta(seconds=10) for r in rows), rows  # fresh: persisted about once a second

    assert_stops_cleanly(td, signal.SIGTERM, data_dir)


async def _trade_against_the_sim(url: str) -> tuple[Order, Order, str]:
    """As a transport would: a market order (fills at once), then two resting limits a little under and over the
    last price (a buy and a sell of what was bought), so whichever way the sim's seeded walk goes next, the worker's
    matcher must fill one of them. Returns the market order, the limit that filled (or the buy, if none did) and the
    audit actor of that fill."""
    db = Database(url)
    broker = PaperBroker(MarketHours(always_open=True), BrokerCosts())
    try:
        user = await resolve_identity(db, console_handle="demo")
        async with db.user_scope(user) as s:
            pf = await default_portfolio(s, Decimal(100000))
            market = await broker.submit(s, OrderRequest(pf.id, "BTC-USD", Side.BUY, OrderType.MARKET, Decimal("0.01")))
        resting: list[Order] = []
        for _ in range(5):  # limits two ticks from the last price, placed before the walk gets there
            async with db.user_scope(user) as s:
                last = await (await raw_connection(s)).fetchval(
                    "SELECT price FROM last_prices WHERE symbol = 'BTC-USD'"
                )
                placed = [
                    await broker.submit(
                        s,
                        OrderRequest(
                            pf.id, "BTC-USD", side, OrderType.LIMIT, Decimal("0.01"), TimeInForce.GTC, limit_price=price
                        ),
                    )
                    for side, price in ((Side.BUY, last - Decimal("0.02")), (Side.SELL, last + Decimal("0.02")))
                ]
            resting = [o for o in placed if o.status == "new"]
            if len(resting) == 2:
                break
            async with db.user_scope(user) as s:
                for order in resting:
                    await broker.cancel(s, order.id)
        assert len(resting) == 2, "the limits were marketable at once every time"
        deadline = time.monotonic() + 30
        while True:
            async with db.user_scope(user) as s:
                current = [await broker.get(s, o.id) for o in resting]
            done = [o for o in current if o is not None and o.status != "new"]
            if done or time.monotonic() > deadline:
                limit = done[0] if done else current[0]
                assert limit is not None
                async with db.user_scope(user) as s:
                    actor = await (await raw_connection(s)).fetchval(
                        "SELECT actor FROM audit_log WHERE action = 'order.filled' AND detail->>'order_id' = $1",
                        str(limit.id),
                    )
                return market, limit, actor or ""
            await asyncio.sleep(0.2)
    finally:
        await db.dispose()


def test_a_paper_order_fills_against_sim_ticks(runs: Runs, data_dir: Path) -> None:
    """`tradedesk run` with no configuration: ticks stream, a market order fills, the matcher fills a resting limit."""
    td = runs.start(free_port(), TRADEDESK_SIM_TICKS_PER_S="200")
    assert_healthy(td)
    market, limit, actor = asyncio.run(_trade_against_the_sim(fresh_price_url(data_dir, td)))
    assert market.status == "filled" and market.avg_fill_price is not None
    assert abs(market.avg_fill_price - market.quote_price) <= market.quote_price * Decimal("0.0002")  # 1 bp slippage
    assert limit.status == "filled", f"the resting limit never filled; log:\n{td.log}"
    assert limit.limit_price is not None and limit.avg_fill_price is not None
    better = (
        limit.avg_fill_price <= limit.limit_price if limit.side == "buy" else limit.avg_fill_price >= limit.limit_price
    )
    assert better and actor == "system:broker"
    assert re.search(rf"matching: filled {limit.side} BTC-USD {limit.id}", td.log), td.log
    assert_stops_cleanly(td, signal.SIGTERM, data_dir)


async def _alert_both_ways(url: str) -> str:
    """Alerts a tick above and a tick below the last price: the sim's next move crosses one of them."""
    db = Database(url)
    try:
        user = await resolve_identity(db, console_handle="watcher")
        async with db.user_scope(user) as s:
            last = await (await raw_connection(s)).fetchval("SELECT price FROM last_prices WHERE symbol = 'BTC-USD'")
            await create_alert(s, "BTC-USD", "above", last + Decimal("0.01"))
            await create_alert(s, "BTC-USD", "below", last - Decimal("0.01"))
        return str(last)
    finally:
        await db.dispose()


def test_an_alert_fires_on_a_sim_tick_and_is_delivered_once(runs: Runs, data_dir: Path) -> None:
    """`tradedesk run` with no configuration: the engine fires on the tick that crosses, the outbox delivers it
    through the console notifier, once."""
    td = runs.start(free_port(), TRADEDESK_SIM_TICKS_PER_S="200")
    assert_healthy(td)
    url = fresh_price_url(data_dir, td)
    deadline = time.monotonic() + 30
    asyncio.run(_alert_both_ways(url))
    while "[notification #" not in td.log:
        assert time.monotonic() < deadline, f"no alert was delivered; log:\n{td.log}"
        time.sleep(0.2)
    time.sleep(1)  # room for a (wrong) second delivery to show up
    lines = [line for line in td.log.splitlines() if "[notification #" in line]
    assert all("to @watcher" in line and "BTC-USD" in line for line in lines), lines
    assert len({line.split("]")[0] for line in lines}) == len(lines), f"a notification was delivered twice: {lines}"
    assert re.search(r"alerts: fired BTC-USD (above|below)", td.log), td.log
    assert_stops_cleanly(td, signal.SIGTERM, data_dir)
