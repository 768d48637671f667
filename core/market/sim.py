"""The sim provider: a real local websocket server streaming a seeded random walk, the default market data.

It behaves like a small exchange, so the sim path runs the same feed client as Binance: clients subscribe to
symbols (wire format in core/market/providers/sim.py) and receive only those, plus a heartbeat every second. The
walk is seeded and advances only while someone is subscribed, so two servers with the same seed send the same
sequence of trades; only their timestamps (the wall clock at sending) differ.

Prices move in whole ticks of each instrument's tick size (about 2 basis points per trade at most) and sizes in
whole lots, so every value is an exact Decimal on the instrument's grid and no float is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from core.config import Settings
from core.market.providers.sim import trade_message

log = logging.getLogger(__name__)

_MAX_BURST = 1_000  # trades sent per wake-up at most, so a stalled loop catches up without a flood
_STEP_DIVISOR = 5_000  # a trade moves the price by at most 1/5000 (2 bp) of it, in whole ticks


@dataclass(frozen=True, slots=True)
class SimInstrument:
    symbol: str
    start_price: Decimal
    tick_size: Decimal
    lot_size: Decimal
    max_lots: int  # a trade's size is 1..max_lots lots


_CENT, _SHARE = Decimal("0.01"), Decimal(1)
# Late-2025 price levels; the instruments table carries the same tick and lot sizes (0009_instruments.sql).
UNIVERSE: tuple[SimInstrument, ...] = (
    SimInstrument("AAPL", Decimal("230.00"), _CENT, _SHARE, 300),
    SimInstrument("MSFT", Decimal("480.00"), _CENT, _SHARE, 200),
    SimInstrument("NVDA", Decimal("180.00"), _CENT, _SHARE, 500),
    SimInstrument("AMZN", Decimal("225.00"), _CENT, _SHARE, 300),
    SimInstrument("GOOGL", Decimal("250.00"), _CENT, _SHARE, 300),
    SimInstrument("META", Decimal("650.00"), _CENT, _SHARE, 100),
    SimInstrument("TSLA", Decimal("420.00"), _CENT, _SHARE, 300),
    SimInstrument("JPM", Decimal("300.00"), _CENT, _SHARE, 200),
    SimInstrument("SPY", Decimal("660.00"), _CENT, _SHARE, 500),
    SimInstrument("BTC-USD", Decimal("90000.00"), _CENT, Decimal("0.00001"), 20_000),
    SimInstrument("ETH-USD", Decimal("3000.00"), _CENT, Decimal("0.0001"), 50_000),
)


@dataclass(frozen=True, slots=True)
class SimTrade:
    symbol: str
    price: Decimal
    size: Decimal


class RandomWalk:
    """The seeded trade sequence: which instrument trades next, at what price and size."""

    def __init__(self, seed: int, universe: Sequence[SimInstrument] = UNIVERSE) -> None:
        self.universe = tuple(universe)
        self._rng = random.Random(seed)  # noqa: S311 -- a reproducible simulation, not security
        # Prices held as whole numbers of ticks: exact, and every price is on the instrument's grid.
        self._units = [int(i.start_price / i.tick_size) for i in self.universe]

    def next(self) -> SimTrade:
        rng = self._rng
        index = rng.randrange(len(self.universe))
        instrument = self.universe[index]
        step = max(1, self._units[index] // _STEP_DIVISOR)
        units = max(1, self._units[index] + rng.randint(-step, step))
        self._units[index] = units
        size = rng.randint(1, instrument.max_lots) * instrument.lot_size
        return SimTrade(instrument.symbol, units * instrument.tick_size, size)


class SimServer:
    """The local exchange. `async with SimServer(...) as sim:` then connect to `sim.url`."""

    def __init__(
        self,
        *,
        seed: int,
        ticks_per_s: float,
        host: str = "127.0.0.1",
        port: int = 0,
        universe: Sequence[SimInstrument] = UNIVERSE,
        heartbeat_s: float = 1.0,
    ) -> None:
        if ticks_per_s <= 0:
            raise ValueError("ticks_per_s must be positive")
        self.seed = seed
        self.ticks_per_s = ticks_per_s
        self.host = host
        self.port = port
        self.heartbeat_s = heartbeat_s
        self.walk = RandomWalk(seed, universe)
        self.symbols = frozenset(i.symbol for i in self.walk.universe)
        self.trades_sent = 0
        self._clients: dict[ServerConnection, set[str]] = {}
        self._someone_subscribed = asyncio.Event()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> SimServer:
        return cls(seed=settings.sim_seed, ticks_per_s=settings.sim_ticks_per_s, port=settings.sim_port)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sim server is not started")
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> str:
        """Listen (port 0: any free one) and start the market; return the URL clients connect to."""
        self._server = await serve(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port
        self._tasks = [
            asyncio.create_task(self._stream(), name="sim market"),
            asyncio.create_task(self._heartbeats(), name="sim heartbeats"),
        ]
        return self.url

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- clients ----------------------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        subscribed: set[str] = set()
        self._clients[ws] = subscribed
        try:
            async for raw in ws:
                reply = self._request(subscribed, raw)
                self._update_subscribed()
                for message in reply:
                    await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            del self._clients[ws]
            self._update_subscribed()

    def _request(self, subscribed: set[str], raw: str | bytes) -> list[str]:
        try:
            request = json.loads(raw)
            op, symbols = request["op"], request["symbols"]
            if op not in ("subscribe", "unsubscribe") or not all(isinstance(s, str) for s in symbols):
                raise ValueError(op)
        except (ValueError, TypeError, KeyError):
            return [json.dumps({"type": "error", "msg": 'expected {"op": "subscribe", "symbols": [...]}'})]
        replies = []
        unknown = sorted(set(symbols) - self.symbols)
        if unknown:
            replies.append(json.dumps({"type": "error", "msg": f"unknown symbol(s): {', '.join(unknown)}"}))
        known = set(symbols) & self.symbols
        if op == "subscribe":
            subscribed |= known
        else:
            subscribed -= known
        replies.append(json.dumps({"type": "subscribed", "symbols": sorted(subscribed)}))
        return replies

    def _update_subscribed(self) -> None:
        if any(self._clients.values()):
            self._someone_subscribed.set()
        else:
            self._someone_subscribed.clear()

    # -- the market -------------------------------------------------------------------------------------------------

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1 / self.ticks_per_s
        while True:
            await self._someone_subscribed.wait()
            next_at = loop.time()
            while self._someone_subscribed.is_set():
                due = min(_MAX_BURST, int((loop.time() - next_at) / interval) + 1)
                ts_ms = time.time_ns() // 1_000_000
                for _ in range(due):
                    self._send(self.walk.next(), ts_ms)
                next_at += due * interval
                if loop.time() - next_at > 1.0:  # more than the machine can send: drop the backlog, don't chase it
                    next_at = loop.time()
                await asyncio.sleep(max(0.0, next_at - loop.time()))

    def _send(self, trade: SimTrade, ts_ms: int) -> None:
        targets = [ws for ws, symbols in self._clients.items() if trade.symbol in symbols]
        if targets:
            broadcast(targets, trade_message(trade.symbol, str(trade.price), str(trade.size), ts_ms))
            self.trades_sent += 1

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if self._clients:
                broadcast(list(self._clients), json.dumps({"type": "heartbeat", "t": time.time_ns() // 1_000_000}))
