"""A scripted local websocket server speaking a provider's wire format, and the project's own wire fixtures.

`ScriptedProvider` is a real websockets server on 127.0.0.1:0. For each connection it first reads the client's
frames until one arrives (the subscription), records them, then runs the test's script for that connection
(number 0, 1, ...). Nothing of ours is faked: the feed under test is the real client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from core.market.instruments import SymbolMap

FIXTURES = Path(__file__).parent / "fixtures"

BINANCE_SYMBOLS = SymbolMap("binance", {"BTC-USDT": "BTCUSDT", "ETH-USDT": "ETHUSDT"})
SIM_SYMBOLS = SymbolMap("sim", {"AAPL": "AAPL", "BTC-USD": "BTC-USD"})


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def frame(name: str) -> str:
    """A fixture file as one compact JSON frame."""
    return json.dumps(fixture(name))


def sim_trade(symbol: str, price: str, size: str = "1", ts_ms: int = 1_764_086_400_000) -> str:
    return json.dumps({"type": "trade", "s": symbol, "p": price, "q": size, "t": ts_ms})


Script = Callable[[ServerConnection, int], Awaitable[None]]


class ScriptedProvider:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.subscriptions: list[str] = []  # the first frame of every connection, in order
        self.close_codes: list[int | None] = []
        self.connected = asyncio.Event()
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.subscriptions)

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            first = await ws.recv()
        except ConnectionClosed:
            return
        self.subscriptions.append(first if isinstance(first, str) else first.decode())
        self.connected.set()
        try:
            await self.script(ws, len(self.subscriptions) - 1)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            self.close_codes.append(ws.close_code)

    async def start(self, port: int = 0) -> ScriptedProvider:
        self._server = await serve(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ScriptedProvider:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def until(condition: Callable[[], bool], within: float = 5.0, what: str = "condition") -> None:
    """Wait for `condition` to hold, polling; fail with `what` after `within` seconds (generous: not a timing test)."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)
