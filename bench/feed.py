"""`tradedesk bench feed`: how many Binance trade frames per second become Ticks.

Parse: 200k (`--quick`: 50k) frames shaped like Binance's (`<symbol>@trade` over 200 symbols, raw and combined-stream
forms alternating, prices and sizes as decimal strings) go through `BinanceAdapter.parse` — JSON, shape checks,
Decimal parsing with range checks, timestamp, canonical symbol — and, in the same run, through the naive baseline:
`json.loads`, `Decimal()` on the two strings and `Tick(...)`, with no validation at all. Rounds alternate between
the two and the median round counts; `ratio` = ours / baseline, i.e. what the validation costs. Both must produce
the same ticks, or the bench fails.

End to end: a websockets server in another process streams frames as fast as it can to the real `MarketFeed`
(same adapter) publishing on a `TickBus` with one consumer; `e2e_msgs_per_s` is frames received over wall time on the
client side, framing and the event loop included.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any

from bench import BenchResult
from core.config import Settings
from core.market.bus import TickBus
from core.market.feed import MarketFeed
from core.market.instruments import SymbolMap
from core.market.providers.binance import BinanceAdapter
from core.market.ticks import Tick

SEED = 20261125
SYMBOLS = 200
_T0_MS = 1_764_086_400_000


def _symbol_map() -> SymbolMap:
    return SymbolMap("binance", {f"C{i:03d}-USDT": f"C{i:03d}USDT" for i in range(SYMBOLS)})


def make_frames(n: int, seed: int = SEED) -> list[str]:
    """Binance trade frames, raw and combined alternating, with realistic decimal strings."""
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        symbol = f"C{rng.randrange(SYMBOLS):03d}USDT"
        trade = {
            "e": "trade",
            "E": _T0_MS + i,
            "s": symbol,
            "t": 5_000_000_000 + i,
            "p": f"{rng.randrange(1, 10_000_000) / 100:.8f}",
            "q": f"{rng.randrange(1, 10_000_000) / 100_000:.8f}",
            "T": _T0_MS + i,
            "m": rng.random() < 0.5,
            "M": True,
        }
        message = trade if i % 2 == 0 else {"stream": f"{symbol.lower()}@trade", "data": trade}
        frames.append(json.dumps(message, separators=(",", ":")))
    return frames


def naive_parse(raw: str, canonical: dict[str, str]) -> list[Tick]:
    """What one writes first: no shape, type or range checks."""
    message = json.loads(raw)
    data = message.get("data", message)
    ts = datetime.fromtimestamp(data["T"] / 1000, UTC)
    return [Tick(canonical[data["s"]], Decimal(data["p"]), Decimal(data["q"]), ts, "binance")]


def _rate(n: int, fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def _measure_parse(frames: list[str], rounds: int, progress: Callable[[str], None]) -> tuple[list[float], list[float]]:
    adapter = BinanceAdapter(_symbol_map())
    canonical = {f"C{i:03d}USDT": f"C{i:03d}-USDT" for i in range(SYMBOLS)}
    ours_parse, naive = adapter.parse, naive_parse

    # Same ticks from both (timestamps aside: the baseline goes through a float and may be a microsecond off).
    for raw in frames[:2_000]:
        [a], [b] = ours_parse(raw), naive(raw, canonical)
        if (a.symbol, a.price, a.size) != (b.symbol, b.price, b.size):
            raise RuntimeError(f"bench feed: parsers disagree on {raw}: {a} != {b}")

    ours: list[float] = []
    base: list[float] = []

    def run_ours() -> None:
        for raw in frames:
            ours_parse(raw)

    def run_naive() -> None:
        for raw in frames:
            naive(raw, canonical)

    for r in range(rounds):
        pair = [(ours, run_ours), (base, run_naive)]
        for samples, fn in pair if r % 2 == 0 else pair[::-1]:
            samples.append(_rate(len(frames), fn))
        progress(f"parse round {r + 1}/{rounds}: ours {ours[-1]:,.0f}/s, naive {base[-1]:,.0f}/s")
    if adapter.malformed:
        raise RuntimeError(f"bench feed: {adapter.malformed} frames counted as malformed")
    return ours, base


def _serve(frames: list[str], conn: Connection) -> None:
    """In a child process: accept one client, wait for its subscription, send every frame, then wait to be closed."""
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        for raw in frames:
            await ws.send(raw)
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            conn.send(server.sockets[0].getsockname()[1])
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until the parent says stop

    asyncio.run(main())


async def _measure_e2e(frames: list[str], port: int) -> tuple[float, int]:
    bus = TickBus()
    sub = bus.subscribe("bench", maxsize=len(frames) + 1)
    done = asyncio.Event()
    received = 0
    first_at = 0.0

    def publish(tick: Tick) -> None:
        nonlocal received, first_at
        if received == 0:
            first_at = time.perf_counter()
        bus.publish(tick)
        received += 1
        if received == len(frames):
            done.set()

    feed = MarketFeed(
        BinanceAdapter(_symbol_map()),
        f"ws://127.0.0.1:{port}",
        _symbol_map().canonical_symbols,
        publish,
        stale_after_s=60,
        silence_timeout_s=60,
    )
    feed.start()
    try:
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - first_at
    finally:
        await feed.stop()
    if sub.pending() != len(frames):
        raise RuntimeError(f"bench feed: the consumer got {sub.pending()} ticks of {len(frames)}")
    return (len(frames) - 1) / elapsed, feed.malformed


def _e2e(frames: list[str], progress: Callable[[str], None]) -> tuple[float, int]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(frames, child), daemon=True)
    server.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("bench feed: the frame server did not start")
        port = parent.recv()
        progress(f"end to end: {len(frames):,} frames over a local websocket")
        return asyncio.run(_measure_e2e(frames, port))
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.kill()


def bench_feed(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    n = 50_000 if quick else 200_000
    rounds = 5 if quick else 7
    progress(f"building {n:,} Binance trade frames over {SYMBOLS} symbols")
    frames = make_frames(n)
    ours, base = _measure_parse(frames, rounds, progress)
    e2e_frames = frames[: n // 2]
    e2e, e2e_malformed = _e2e(e2e_frames, progress)
    if e2e_malformed:
        raise RuntimeError(f"bench feed: {e2e_malformed} frames malformed end to end")

    ours_rate, base_rate = statistics.median(ours), statistics.median(base)
    results: dict[str, Any] = {
        "msgs_per_s": round(ours_rate),
        "baseline_msgs_per_s": round(base_rate),
        "ratio": round(ours_rate / base_rate, 3),
        "us_per_msg": round(1e6 / ours_rate, 3),
        "e2e_msgs_per_s": round(e2e),
    }
    params: dict[str, Any] = {
        "messages": n,
        "symbols": SYMBOLS,
        "rounds": rounds,
        "e2e_messages": len(e2e_frames),
        "quick": quick,
        "python": sys.version.split()[0],
        "json": "stdlib json (parse_float=Decimal)",
    }
    table = [
        ("frames", f"{n:,} Binance trades over {SYMBOLS} symbols, raw and combined-stream alternating"),
        ("BinanceAdapter.parse (goal >= 100k/s)", f"{ours_rate:,.0f} msgs/s  ({results['us_per_msg']} us/msg)"),
        ("naive json.loads + Decimal baseline", f"{base_rate:,.0f} msgs/s"),
        ("ratio (ours / naive: cost of validation)", f"{results['ratio']:.3f}x"),
        ("end to end (websocket -> feed -> bus)", f"{e2e:,.0f} msgs/s over {len(e2e_frames):,} frames"),
        ("rounds", f"{rounds} per parser, alternating; median reported"),
    ]
    return BenchResult("feed", results, params, table)
