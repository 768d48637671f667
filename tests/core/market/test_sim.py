"""The sim exchange: a seeded walk on each instrument's tick grid, served over a real local websocket."""

from __future__ import annotations

import json
from decimal import Decimal

from websockets.asyncio.client import ClientConnection, connect

from core.market.sim import UNIVERSE, RandomWalk, SimServer, SimTrade

GRID = {i.symbol: i for i in UNIVERSE}


def test_same_seed_same_trades_other_seed_other_trades() -> None:
    a, b, c = RandomWalk(42), RandomWalk(42), RandomWalk(43)
    run_a = [a.next() for _ in range(500)]
    assert run_a == [b.next() for _ in range(500)]
    assert run_a != [c.next() for _ in range(500)]


def test_prices_and_sizes_are_exact_decimals_on_the_instrument_grid_near_realistic_levels() -> None:
    walk = RandomWalk(7)
    trades = [walk.next() for _ in range(5_000)]
    assert {t.symbol for t in trades} == set(GRID)
    for t in trades:
        spec = GRID[t.symbol]
        assert type(t.price) is Decimal and type(t.size) is Decimal
        assert t.price > 0 and t.price % spec.tick_size == 0
        assert t.size > 0 and t.size % spec.lot_size == 0
        assert abs(t.price / spec.start_price - 1) < Decimal("0.1")  # a random walk, not a rocket
    assert GRID["AAPL"].start_price == Decimal("230.00") and GRID["BTC-USD"].start_price == Decimal("90000.00")


async def read_trades(ws: ClientConnection, n: int) -> tuple[list[SimTrade], list[dict[str, object]]]:
    trades: list[SimTrade] = []
    raw_trades: list[dict[str, object]] = []
    while len(trades) < n:
        message = json.loads(await ws.recv())
        if message["type"] == "trade":
            raw_trades.append(message)
            trades.append(SimTrade(message["s"], Decimal(message["p"]), Decimal(message["q"])))
    return trades, raw_trades


async def test_two_servers_with_one_seed_stream_the_same_trades_as_decimal_strings() -> None:
    runs = []
    for _ in range(2):
        async with SimServer(seed=99, ticks_per_s=2_000) as sim, connect(sim.url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "symbols": sorted(GRID)}))
            assert json.loads(await ws.recv()) == {"type": "subscribed", "symbols": sorted(GRID)}
            runs.append(await read_trades(ws, 40))
    (trades_1, raw_1), (trades_2, _) = runs
    assert trades_1 == trades_2
    walk = RandomWalk(99)
    assert trades_1 == [walk.next() for _ in range(40)]
    assert all(isinstance(m["p"], str) and isinstance(m["q"], str) and isinstance(m["t"], int) for m in raw_1)


async def test_a_client_gets_only_what_it_subscribed_to_and_errors_for_bad_requests() -> None:
    async with SimServer(seed=1, ticks_per_s=2_000, heartbeat_s=0.05) as sim, connect(sim.url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "symbols": ["AAPL", "ZZZZ"]}))
        assert json.loads(await ws.recv()) == {"type": "error", "msg": "unknown symbol(s): ZZZZ"}
        assert json.loads(await ws.recv()) == {"type": "subscribed", "symbols": ["AAPL"]}
        trades, _ = await read_trades(ws, 20)
        assert {t.symbol for t in trades} == {"AAPL"}

        await ws.send("hello?")
        kinds = set()
        while "error" not in kinds or "heartbeat" not in kinds:
            kinds.add(json.loads(await ws.recv())["type"])

        await ws.send(json.dumps({"op": "unsubscribe", "symbols": ["AAPL"]}))
        while (message := json.loads(await ws.recv()))["type"] != "subscribed":
            pass
        assert message["symbols"] == []
    assert sim.trades_sent >= 20
