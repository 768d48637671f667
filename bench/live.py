"""`tradedesk bench live`: 1,000 dashboard websockets on one web process; tick-to-client latency, and the overview's
requests per second.

Server (this process): the real web app (`webhooks.app.create_app` with a Desk and a `LiveHub`, served by
`web.AppRunner` on 127.0.0.1 as `tradedesk run` serves it) on a throwaway embedded Postgres, with a local TickBus as
when this process runs the worker. The hub renders with `webhooks.pages.topic_renderer`: the overview's own summary
and positions fragment templates, valued through `Desk.portfolio` in the user's scope, as `tradedesk run` does.

Data: N users (`resolve_identity`), each with a default paper portfolio (`Desk.portfolio` opens it) holding one
position in one of 10 symbols (round robin), and a signed-in dashboard session (`Desk.dashboard_link` then
`Desk.sign_in`, as the login POST does).

Clients: a second process (spawned), so that this process's CPU is the server's alone: N websockets, each signed in
as its own user with the dashboard's Origin, following the "portfolio" topic (what the overview page follows). Each
client waits for its snapshot before the measurement starts.

Ticks: published on the bus at a steady TICKS_PER_S, round robin over the symbols (a random walk), each carrying
its own timestamp (`Tick.ts` = the wall clock at publish). A client records, for each price it receives, its
receive time minus that timestamp (same machine, same clock): tick_p50_ms and tick_p99_ms. server_cpu_pct is this
process's CPU time over the tick phase's wall time (100 = one core); the hub also re-renders a user's portfolio at
most once a second when a held price moves, which is most of that CPU.

Overview throughput: then, without ticks, 16 concurrent keep-alive clients in the client process GET / (the
overview page: cookie check, the user's portfolio valued in their scope, HTML) for DURATION seconds, each request
as a different user's session; baseline: GET /healthz (a database ping) the same way in the same run.
ratio = overview_rps / baseline_rps.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
import asyncpg
import psutil
from aiohttp import web

from app.services import desk as build_desk
from bench import BenchResult
from bench.cluster import refresh_prices, run_async, throwaway_cluster
from bench.serve import serve
from bench.stats import p50, p99, r
from core.config import Settings
from core.db.database import Database
from core.db.identity import resolve_identity
from core.db.roles import SCHEMA
from core.market.bus import TickBus
from core.market.ticks import Tick
from tools.desk import Desk
from webhooks.app import create_app
from webhooks.live import LiveHub
from webhooks.pages import topic_renderer

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "SPY", "BTC-USD")
START_PRICE = Decimal("100.00")
TICKS_PER_S = 50
CONCURRENCY = 16
COOKIE = "tradedesk_session"
GOAL_P99_MS = 100.0
GOAL_RPS = 1_000


# ------------------------------------------------------------------------------------------------ the clients


def _clients(conn: Connection, base: str, sessions: list[str]) -> None:
    asyncio.run(_clients_main(conn, base, sessions))


async def _clients_main(conn: Connection, base: str, sessions: list[str]) -> None:
    loop = asyncio.get_running_loop()
    origin = base.rstrip("/")
    connector = aiohttp.TCPConnector(limit=0)
    samples: list[int] = []
    measuring = False
    async with aiohttp.ClientSession(connector=connector) as http:
        ready = 0
        all_ready = asyncio.Event()

        async def one(session: str) -> None:
            nonlocal ready
            headers = {"Cookie": f"{COOKIE}={session}", "Origin": origin}
            async with http.ws_connect(f"{base}/live?topics=portfolio", headers=headers, heartbeat=None) as ws:
                snapshot = False
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    now = time.time_ns()
                    data = msg.json()
                    if data["type"] == "prices" and measuring:
                        for entry in data["prices"].values():
                            at = datetime.fromisoformat(entry["at"]).timestamp()
                            samples.append(now - int(at * 1e9))
                    elif data["type"] == "fragments" and not snapshot:
                        snapshot = True
                        ready += 1
                        if ready == len(sessions):
                            all_ready.set()

        sockets = [asyncio.create_task(one(s)) for s in sessions]
        await asyncio.wait_for(all_ready.wait(), 300)
        conn.send("ready")
        await loop.run_in_executor(None, conn.recv)  # "measure"
        measuring = True
        await loop.run_in_executor(None, conn.recv)  # "stop"
        measuring = False
        conn.send(samples)
        for task in sockets:
            task.cancel()
        await asyncio.gather(*sockets, return_exceptions=True)

        # Overview throughput, then the baseline, each for `duration` seconds.
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "done":
                break
            path, duration = command
            conn.send(await _hammer(http, base + path, sessions, duration))


async def _hammer(http: aiohttp.ClientSession, url: str, sessions: list[str], duration: float) -> dict[str, Any]:
    done = 0
    errors = 0
    deadline = time.monotonic() + duration
    started = time.monotonic()
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            session = sessions[next(counter) % len(sessions)]
            async with http.get(url, headers={"Cookie": f"{COOKIE}={session}"}) as resp:
                await resp.read()
                if resp.status == 200:
                    done += 1
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    return {"rps": done / elapsed, "errors": errors, "requests": done}


class Clients:
    def __init__(self, base: str, sessions: list[str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_clients, args=(child, base, sessions), daemon=True)
        self.proc.start()

    async def recv(self, within_s: float = 600) -> Any:
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.conn.poll, within_s):
            raise RuntimeError("bench live: the client process stopped answering")
        return self.conn.recv()

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.conn.send("done")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


# ------------------------------------------------------------------------------------------------ the server


async def _seed_users(
    db: Database, desk: Desk, superuser_url: str, n: int, progress: Callable[[str], None]
) -> list[str]:
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    try:
        await conn.executemany(
            "INSERT INTO last_prices (symbol, price, ts, source) VALUES ($1, $2, now(), 'sim')"
            " ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, ts = EXCLUDED.ts",
            [(s, START_PRICE) for s in SYMBOLS],
        )
    finally:
        await conn.close()
    users: list[UUID] = []
    sessions: list[str] = []
    sem = asyncio.Semaphore(16)

    async def one(k: int) -> None:
        async with sem:
            user = await resolve_identity(db, console_handle=f"live{k}")
            await desk.portfolio(user)  # opens the default portfolio
            token = urlsplit(await desk.dashboard_link(user)).path.rsplit("/", 1)[1]
            users.append(user)
            sessions.append(await desk.sign_in(token))

    for start in range(0, n, 250):
        await asyncio.gather(*(one(k) for k in range(start, min(n, start + 250))))
        progress(f"users: {min(n, start + 250)}/{n} signed in")
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    try:
        await conn.execute(
            "INSERT INTO positions (user_id, portfolio_id, symbol, qty, avg_cost)"
            " SELECT pf.user_id, pf.id, ($1::text[])[1 + (row_number() OVER (ORDER BY pf.user_id))::int % $2], 10, 95"
            " FROM portfolios pf",
            list(SYMBOLS),
            len(SYMBOLS),
        )
    finally:
        await conn.close()
    return sessions


async def _publish(bus: TickBus, stop: asyncio.Event, rng: random.Random) -> int:
    """TICKS_PER_S ticks a second, round robin over SYMBOLS, each stamped with the wall clock when published."""
    prices = dict.fromkeys(SYMBOLS, START_PRICE)
    interval = 1 / TICKS_PER_S
    next_at = time.monotonic()
    k = 0
    while not stop.is_set():
        symbol = SYMBOLS[k % len(SYMBOLS)]
        step = Decimal(rng.choice((-5, -1, 1, 5))) / 100
        prices[symbol] = max(Decimal("1.00"), prices[symbol] + step)
        bus.publish(Tick(symbol, prices[symbol], Decimal(1), datetime.now(UTC), "sim"))
        k += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return k


async def _run(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    n = 200 if quick else 1_000
    tick_s = 5.0 if quick else 20.0
    http_s = 3.0 if quick else 10.0
    rng = random.Random(20261125)
    async with throwaway_cluster(settings, "live", progress) as cluster:
        db = Database(cluster.app_url)
        bench_settings = settings.model_copy(update={"public_url": "http://127.0.0.1:8080"})
        desk = build_desk(bench_settings, db)
        bus = TickBus()
        hub = LiveHub(db, render=topic_renderer(desk), bus=bus, held_symbols=desk.held_symbols)
        stop_prices = asyncio.Event()
        stamper = asyncio.create_task(refresh_prices(cluster.superuser_url, list(SYMBOLS), stop_prices))
        runner: web.AppRunner | None = None
        clients: Clients | None = None
        try:
            progress(f"creating {n} users, each with a position and a signed-in session")
            sessions = await _seed_users(db, desk, cluster.superuser_url, n, progress)
            app = create_app(bench_settings, database=db, version="bench", desk=desk, live=hub)
            served = await serve(app)
            runner, base = served.runner, served.base_url
            await hub.wait_listening()
            progress(f"connecting {n} websocket clients (separate process)")
            clients = Clients(base, sessions)
            assert await clients.recv() == "ready"
            progress(
                f"all {hub.sockets()} sockets have their snapshot; publishing {TICKS_PER_S} ticks/s for {tick_s:g} s"
            )
            me = psutil.Process()
            clients.conn.send("measure")
            cpu0, wall0 = me.cpu_times(), time.monotonic()
            stop = asyncio.Event()
            publisher = asyncio.create_task(_publish(bus, stop, rng))
            await asyncio.sleep(tick_s)
            stop.set()
            published = await publisher
            cpu1, wall1 = me.cpu_times(), time.monotonic()
            await asyncio.sleep(0.5)  # the last ticks in flight
            clients.conn.send("stop")
            samples: list[int] = await clients.recv()
            cpu_pct = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (wall1 - wall0)
            progress(f"{len(samples)} prices received; closing the sockets")
            async with asyncio.timeout(30):
                while hub.sockets():  # noqa: ASYNC110 -- the client process closes them
                    await asyncio.sleep(0.05)
            progress(f"GET / (overview) with {CONCURRENCY} clients for {http_s:g} s")
            clients.conn.send(("/", http_s))
            overview = await clients.recv()
            progress(f"GET /healthz (baseline) with {CONCURRENCY} clients for {http_s:g} s")
            clients.conn.send(("/healthz", http_s))
            baseline = await clients.recv()
            renders, dropped, shed = hub.renders, hub.dropped, hub.shed
        finally:
            if clients is not None:
                clients.stop()
            stop_prices.set()
            await stamper
            if runner is not None:
                await runner.cleanup()
            await db.dispose()

    tick_p50 = r(p50(samples)) if samples else None
    tick_p99 = r(p99(samples)) if samples else None
    results = {
        "tick_p50_ms": tick_p50,
        "tick_p99_ms": tick_p99,
        "clients": n,
        "server_cpu_pct": round(cpu_pct, 1),
        "overview_rps": round(overview["rps"], 1),
        "baseline_rps": round(baseline["rps"], 1),
        "ratio": round(overview["rps"] / baseline["rps"], 3) if baseline["rps"] else None,
        "prices_received": len(samples),
        "ticks_published": published,
        "renders": renders,
        "dropped_sockets": dropped,
        "portfolio_refreshes_put_off": shed,
        "http_errors": overview["errors"] + baseline["errors"],
        "goal_met": bool(tick_p99 is not None and tick_p99 <= GOAL_P99_MS and overview["rps"] >= GOAL_RPS),
    }
    params = {
        "clients": n,
        "symbols": len(SYMBOLS),
        "ticks_per_s": TICKS_PER_S,
        "tick_phase_s": tick_s,
        "http_concurrency": CONCURRENCY,
        "http_phase_s": http_s,
        "topics": "portfolio",
        "clients_process": "separate (spawned)",
        "quick": quick,
        "cpus": os.cpu_count(),
    }
    table = [
        ("clients", f"{n} websockets (separate process), one held symbol each of {len(SYMBOLS)}"),
        ("ticks", f"{published} published at {TICKS_PER_S}/s; {len(samples)} prices received"),
        ("tick -> client", f"p50 {tick_p50} ms, p99 {tick_p99} ms (goal p99 <= {GOAL_P99_MS:g} ms)"),
        ("server CPU", f"{cpu_pct:.1f}% of one core during the tick phase ({renders} renders in all, {shed} put off)"),
        ("GET / (overview)", f"{overview['rps']:.0f} requests/s (goal >= {GOAL_RPS})"),
        ("GET /healthz", f"{baseline['rps']:.0f} requests/s (baseline)"),
        ("ratio", f"{results['ratio']}"),
        ("dropped sockets", str(dropped)),
    ]
    return BenchResult("live", results, params, table)


def bench_live(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    return run_async(_run(settings, quick, progress))
