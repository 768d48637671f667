"""The feed client against a real local websocket server speaking Binance's wire format: it survives the provider
closing the connection, malformed frames, silence, a provider that is down, and a shutdown notice; it resubscribes
every time, tracks staleness, and logs each event once.

Intervals are shrunk through the constructor so the suite stays fast; waits use generous timeouts, never timing
assertions.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from core.market.bus import TickBus
from core.market.feed import MarketFeed, redact_url
from core.market.providers.binance import BinanceAdapter
from core.market.ticks import Tick
from tests.core.market.wire import BINANCE_SYMBOLS, ScriptedProvider, fixture, frame, until

SYMBOLS = ["BTC-USDT", "ETH-USDT"]
BTC = frame("binance_trade_raw.json")
ETH = frame("binance_trade_combined.json")


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="core.market.feed")


def make_feed(url: str, publish: Callable[[Tick], None] | None = None, **options: Any) -> MarketFeed:
    settings: dict[str, Any] = {
        "stale_after_s": 5.0,
        "silence_timeout_s": 5.0,
        "backoff_initial_s": 0.01,
        "backoff_cap_s": 0.05,
        "check_every_s": 0.02,
        "close_timeout_s": 1.0,
        "rng": random.Random(7),
    }
    settings.update(options)
    return MarketFeed(BinanceAdapter(BINANCE_SYMBOLS), url, SYMBOLS, publish or (lambda tick: None), **settings)


def logged(caplog: pytest.LogCaptureFixture, pattern: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.search(pattern, r.getMessage())]


def params(subscription: str) -> list[str]:
    body = json.loads(subscription)
    assert body["method"] == "SUBSCRIBE"
    return list(body["params"])


async def test_reconnects_and_resubscribes_when_the_provider_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(BTC)
        await ws.send(ETH)
        if n == 0:
            await ws.close(1001, "going away")

    bus = TickBus()
    sub = bus.subscribe("test")
    async with ScriptedProvider(script) as provider:
        feed = make_feed(provider.url, bus.publish)
        feed.start()
        try:
            await until(lambda: provider.connections == 2 and feed.ticks == 4, what="a second connection and ticks")
        finally:
            await feed.stop()

    assert [params(s) for s in provider.subscriptions] == [["btcusdt@trade", "ethusdt@trade"]] * 2
    assert [t.symbol for t in await sub.get_many()] == ["BTC-USDT", "ETH-USDT"] * 2
    assert len(logged(caplog, r": connected to ws://127\.0\.0\.1")) == 1
    assert (
        len(
            logged(
                caplog,
                r"disconnected \(the server closed the connection with code 1001 \(going away\)\); reconnecting in",
            )
        )
        == 1
    )
    assert len(logged(caplog, r"reconnected to ws://127\.0\.0\.1:\d+ \(\d+\.\d s without a connection\)")) == 1
    assert len(logged(caplog, r"subscribed to 2 symbol\(s\)")) == 2  # once per connection
    assert provider.close_codes[-1] == 1000  # stop() closed politely
    assert feed.status() == "down"


async def test_malformed_frames_are_counted_skipped_and_logged_once_then_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    garbage = fixture("garbage_frames.json")

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(BTC)
        for raw in garbage:
            await ws.send(raw)
        await ws.send(b"\xff\xfe not even utf-8")  # a binary frame
        await ws.send(ETH)

    async with ScriptedProvider(script) as provider:
        feed = make_feed(provider.url, summary_every_s=0.1)
        feed.start()
        try:
            await until(lambda: feed.ticks == 2 and feed.malformed == len(garbage) + 1, what="every frame handled")
            await until(lambda: bool(logged(caplog, "more malformed")), what="the periodic summary")
            connected = feed.connected
        finally:
            await feed.stop()

    assert connected and provider.connections == 1
    assert len(logged(caplog, "skipped a malformed frame")) == 1
    [summary] = logged(caplog, "more malformed")  # one summary: nothing new came after it
    assert re.search(rf"skipped {len(garbage)} more malformed frame\(s\) .* \({len(garbage) + 1} in all\)", summary)
    assert logged(caplog, "disconnected") == []


async def test_a_silent_provider_is_left_and_symbols_go_stale_then_fresh_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(BTC)
        await ws.send(ETH)
        # then say nothing on this connection (websockets still answers pings: only the watchdog can tell)

    transitions: list[tuple[str, bool]] = []
    async with ScriptedProvider(script) as provider:
        feed = make_feed(
            provider.url,
            stale_after_s=0.2,
            silence_timeout_s=1.0,
            on_staleness=lambda symbol, stale: transitions.append((symbol, stale)),
        )
        feed.start()
        try:
            await until(lambda: feed.status() == "ok", what="both symbols fresh")
            await until(lambda: feed.stale == set(SYMBOLS), what="both symbols stale during the silence")
            assert feed.is_stale("BTC-USDT") and feed.status() == "stale" and provider.connections == 1
            await until(lambda: provider.connections == 2, what="a reconnect after the silence")
            await until(lambda: feed.status() == "ok", what="both symbols fresh again")
            await until(lambda: bool(logged(caplog, "fresh again")), what="the fresh-again line")
        finally:
            await feed.stop()

    assert params(provider.subscriptions[1]) == params(provider.subscriptions[0])
    for symbol in SYMBOLS:
        assert [stale for s, stale in transitions if s == symbol][:3] == [False, True, False]
    stale_lines = logged(caplog, r"stale \(no tick for")
    fresh_lines = logged(caplog, "fresh again")
    for symbol in SYMBOLS:
        assert sum(symbol in line for line in stale_lines) >= 1
        assert sum(symbol in line for line in fresh_lines) == 1
    assert len(logged(caplog, r"disconnected \(no message for \d+\.\d s\)")) >= 1
    assert len(logged(caplog, "disconnected")) == provider.connections - 1  # one line per disconnect, no loop


async def test_a_provider_that_is_down_is_retried_quietly_until_it_comes_up(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(BTC)

    feed = make_feed(f"ws://127.0.0.1:{port}")
    feed.start()
    provider = ScriptedProvider(script)
    try:
        await until(lambda: feed.failed_attempts >= 5, what="several failed attempts")
        assert feed.status() == "down"
        await provider.start(port)
        await until(lambda: feed.ticks == 1, what="the first tick once the provider is up")
    finally:
        await feed.stop()
        await provider.stop()

    assert len(logged(caplog, r"can't connect to ws://127\.0\.0\.1:\d+ \(.+\); retrying in")) == 1
    assert logged(caplog, "still not connected") == []  # the summary comes every summary_every_s (60 s here)
    assert len(logged(caplog, r"reconnected to .*, \d+ failed attempt\(s\)\)")) == 1
    assert feed.failed_attempts == 0


async def test_a_shutdown_notice_makes_it_reconnect_at_once(caplog: pytest.LogCaptureFixture) -> None:
    shutdown = json.dumps(fixture("binance_control.json")["server_shutdown_combined"])

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps(fixture("binance_control.json")["subscribe_ack"]))
        await ws.send(BTC)
        if n == 0:
            await ws.send(shutdown)

    async with ScriptedProvider(script) as provider:
        feed = make_feed(provider.url, backoff_initial_s=0.01, backoff_cap_s=60)
        feed.start()
        try:
            await until(lambda: provider.connections == 2 and feed.ticks == 2, what="the reconnect")
        finally:
            await feed.stop()

    assert len(logged(caplog, r"disconnected \(Binance announced a server shutdown\)")) == 1
    assert params(provider.subscriptions[1]) == ["btcusdt@trade", "ethusdt@trade"]
    assert provider.close_codes[0] == 1000  # we closed it, politely


async def test_status_and_a_graceful_stop(caplog: pytest.LogCaptureFixture) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(BTC)

    async with ScriptedProvider(script) as provider:
        feed = make_feed(provider.url)
        assert feed.status() == "down"
        feed.start()
        try:
            await until(lambda: feed.ticks == 1, what="a tick")
            assert feed.status() == "stale"  # ETH-USDT hasn't traded yet
            assert not feed.is_stale("BTC-USDT") and feed.is_stale("ETH-USDT") and feed.is_stale("XRP-USDT")
        finally:
            await feed.stop()
        await until(lambda: len(provider.close_codes) == 1, what="the server to see the close")
    assert provider.close_codes == [1000]
    assert feed.status() == "down"
    assert logged(caplog, "disconnected") == []


async def test_an_adapter_bug_costs_one_frame_not_the_feed(caplog: pytest.LogCaptureFixture) -> None:
    class FragileAdapter(BinanceAdapter):
        def parse(self, raw: str | bytes) -> list[Tick]:
            if raw == "boom":
                raise RuntimeError("adapter bug")
            return super().parse(raw)

    async def script(ws: ServerConnection, n: int) -> None:
        for raw in ("boom", "boom", BTC):
            await ws.send(raw)

    async with ScriptedProvider(script) as provider:
        feed = MarketFeed(FragileAdapter(BINANCE_SYMBOLS), provider.url, SYMBOLS, lambda t: None, stale_after_s=5)
        feed.start()
        try:
            await until(lambda: feed.ticks == 1, what="the tick after the bad frames")
        finally:
            await feed.stop()
    assert feed.malformed == 2 and provider.connections == 1
    assert len(logged(caplog, "the adapter failed on a frame")) == 1


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    feed = make_feed("ws://127.0.0.1:9", backoff_initial_s=0.5, backoff_cap_s=30, rng=random.Random(1))
    for attempt in range(40):
        bound = min(30.0, 0.5 * 2**attempt)
        delays = [feed.backoff(attempt) for _ in range(50)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # spread over the whole range, not a fixed delay


def test_invalid_url_fails_at_construction_and_logs_never_show_secrets() -> None:
    with pytest.raises(ValueError):
        make_feed("http://example.com/not-a-websocket")
    assert redact_url("wss://user:pw@ws.finnhub.io:443/path?token=SECRET") == "wss://ws.finnhub.io:443/path"
