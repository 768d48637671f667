"""The worker role's market half, in process on the real database: the sim exchange by default, Binance's wire
format from a configured URL, ticks on the bus and in last_prices, and a clean stop."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from websockets.asyncio.server import ServerConnection

from app.worker import Worker, check_market_settings
from core.config import Settings
from core.db.database import Database
from core.errors import SetupError
from core.market.sim import UNIVERSE
from tests.core.market.wire import ScriptedProvider, frame, until


async def last_prices(db: Database) -> dict[str, dict[str, Any]]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT symbol, price, source, ts FROM last_prices"))).mappings()
        return {r["symbol"]: dict(r) for r in rows}


async def test_with_no_configuration_the_worker_streams_the_sim_into_the_bus_and_last_prices(
    db: Database, tmp_path: Path
) -> None:
    worker = Worker(Settings(data_dir=tmp_path, sim_ticks_per_s=400), db)
    await worker.start()
    ticks = worker.bus.subscribe("test")
    try:
        assert worker.sim is not None and worker.feed is not None and worker.feed.url == worker.sim.url
        first = await ticks.get()
        assert first.source == "sim" and type(first.price) is Decimal
        await until(lambda: worker.feed_status() == "ok", what="every sim symbol ticking")
        for _ in range(100):  # persisted once a second: give it a few
            if len(await last_prices(db)) == len(UNIVERSE):
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.stop()
    assert worker.feed_status() == "down" and worker.sim is None
    prices = await last_prices(db)
    assert set(prices) == {i.symbol for i in UNIVERSE}
    assert {p["source"] for p in prices.values()} == {"sim"}
    assert worker.bus.last("AAPL") is not None and prices["AAPL"]["price"] == worker.bus.last("AAPL").price  # type: ignore[union-attr]


async def test_binance_from_a_configured_url(db: Database, tmp_path: Path) -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(json.dumps({"result": None, "id": 1}))
        await ws.send(frame("binance_trade_raw.json"))

    async with ScriptedProvider(script) as provider:
        settings = Settings(data_dir=tmp_path, market_provider="binance", market_url=provider.url)
        worker = Worker(settings, db)
        await worker.start()
        try:
            assert worker.sim is None
            await until(lambda: worker.bus.last("BTC-USDT") is not None, what="the trade on the bus")
        finally:
            await worker.stop()
    assert json.loads(provider.subscriptions[0])["params"] == ["btcusdt@trade", "ethusdt@trade"]
    prices = await last_prices(db)
    assert prices["BTC-USDT"]["price"] == Decimal("90412.35") and prices["BTC-USDT"]["source"] == "binance"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"market_provider": "coinbase"}, "TRADEDESK_MARKET_PROVIDER=coinbase is not supported"),
        ({"market_url": "https://example.com"}, "TRADEDESK_MARKET_URL"),
    ],
)
def test_market_settings_are_checked_before_anything_starts(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(SetupError, match=message):
        check_market_settings(Settings(data_dir=tmp_path, **overrides))  # type: ignore[arg-type]


async def test_of_two_workers_one_runs_the_market_and_the_scheduler_and_the_other_takes_over(
    db: Database, tmp_path: Path
) -> None:
    """Both deliver notifications; the feed (with the sim exchange, matcher, alerts) and the scheduler run in one."""
    settings = Settings(data_dir=tmp_path, sim_ticks_per_s=200)
    first = Worker(settings, db, retry_s=0.2)
    second = Worker(settings, db, retry_s=0.2)
    await first.start()
    await second.start()
    try:
        assert first.market.is_leader and first.scheduling.is_leader
        assert first.feed is not None and first.sim is not None and first.scheduler is not None
        assert first.matcher is not None and first.jobs.matcher is first.matcher
        assert not second.market.is_leader and not second.scheduling.is_leader
        assert second.feed is None and second.sim is None and second.scheduler is None and second.matcher is None
        assert second.feed_status() == "standby"
        await until(lambda: first.feed_status() == "ok", within=10, what="the leader streaming")

        await first.stop()  # steps down (feed, sim and scheduler stopped), then releases the locks
        assert first.feed is None and first.sim is None and first.scheduler is None
        assert first.feed_status() == "down"
        await until(lambda: second.market.is_leader and second.scheduling.is_leader, within=10, what="failover")
        assert second.scheduler is not None and second.sim is not None
        await until(lambda: second.feed_status() == "ok", within=10, what="the new leader streaming")
    finally:
        await second.stop()
        await first.stop()
    assert second.feed_status() == "down" and second.bus.subscribers == []
