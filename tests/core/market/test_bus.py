"""The tick bus: fan-out, a slow consumer conflated per symbol without holding anyone up, and clean unsubscribing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.market.bus import TickBus
from core.market.ticks import Tick

T0 = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def tick(symbol: str, n: int) -> Tick:
    return Tick(symbol, Decimal(100) + Decimal(n) / 100, Decimal(1), T0 + timedelta(milliseconds=n), "sim")


async def test_every_subscriber_gets_every_tick_in_order_and_last_is_the_newest() -> None:
    bus = TickBus()
    a, b = bus.subscribe("a"), bus.subscribe("b")
    ticks = [tick(s, n) for n, s in enumerate(["AAPL", "MSFT", "AAPL"])]
    for t in ticks:
        bus.publish(t)
    assert [await a.get() for _ in ticks] == ticks
    assert await b.get_many() == ticks
    assert bus.last("AAPL") == ticks[2] and bus.last("TSLA") is None


async def test_a_slow_consumer_is_conflated_per_symbol_and_holds_up_no_one(caplog: pytest.LogCaptureFixture) -> None:
    bus = TickBus()
    fast = bus.subscribe("fast", maxsize=10_000)
    slow = bus.subscribe("slow", maxsize=5)
    symbols = ["AAPL", "MSFT", "BTC-USD"]
    published = [tick(symbols[n % 3], n) for n in range(300)]
    received: list[Tick] = []

    async def consume_fast() -> None:
        async for t in fast:
            received.append(t)
            if len(received) == len(published):
                return

    consumer = asyncio.create_task(consume_fast())
    for n, t in enumerate(published):
        bus.publish(t)  # synchronous and never blocks, whatever `slow` does
        if n % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(consumer, 5)

    assert received == published
    assert slow.pending() == 5 + len(symbols)  # bounded: the queue plus one tick per symbol
    assert slow.dropped == len(published) - slow.pending()
    got = await slow.get_many()
    assert got[:5] == published[:5]  # what was queued before it fell behind, in order
    assert {t.symbol: t for t in got[5:]} == {t.symbol: t for t in published[-3:]}  # then each symbol's newest
    for symbol in symbols:  # per symbol, prices still arrive in time order
        times = [t.ts for t in got if t.symbol == symbol]
        assert times == sorted(times)
    assert len([r for r in caplog.records if "fell behind" in r.getMessage()]) == 1

    bus.publish(tick("AAPL", 1000))  # caught up: back to plain queueing
    assert await slow.get() == tick("AAPL", 1000) and slow.pending() == 0


async def test_symbol_filter_and_unsubscribe() -> None:
    bus = TickBus()
    crypto = bus.subscribe("crypto", symbols=["BTC-USD"])
    everything = bus.subscribe("all")
    bus.publish(tick("AAPL", 1))
    bus.publish(tick("BTC-USD", 2))
    assert await crypto.get_many() == [tick("BTC-USD", 2)]

    with everything:
        assert len(await everything.get_many()) == 2
    assert everything.closed and everything not in bus.subscribers
    bus.publish(tick("AAPL", 3))
    with pytest.raises(EOFError):
        await everything.get()


async def test_closing_wakes_a_waiting_consumer_and_ends_iteration() -> None:
    bus = TickBus()
    sub = bus.subscribe("dashboard")
    seen: list[Tick] = []

    async def consume() -> None:
        async for t in sub:
            seen.append(t)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    bus.publish(tick("AAPL", 1))
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(task, 5)
    assert seen == [tick("AAPL", 1)]
    assert bus.subscribers == []


def test_a_subscription_needs_room() -> None:
    with pytest.raises(ValueError):
        TickBus().subscribe("x", maxsize=0)


async def test_a_consumer_that_must_see_every_path_is_never_conflated(caplog: pytest.LogCaptureFixture) -> None:
    bus = TickBus()
    every = bus.subscribe("alerts", maxsize=2, conflate=False)
    for n in range(5):  # 99 -> 101 -> 99 style paths: each price matters
        bus.publish(tick("BTC-USD", n))
    got = [await every.get() for _ in range(5)]
    assert [t.price for t in got] == [tick("BTC-USD", n).price for n in range(5)]
    assert every.dropped == 0
    assert "alerts is" in caplog.text and "nothing dropped" in caplog.text
