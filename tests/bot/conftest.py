"""The real TradeDesk bot (`bot.start()`) against the local fake of Discord, on a fresh database per test.

`discord_bot` starts the fake, points discord.py at it, builds the Desk and the bot exactly as app/ does (but with a
test clock, so proposals can expire without waiting) and waits until the gateway is ready. `Chat.send` dispatches an
INTERACTION_CREATE and returns what the bot answered, as recorded by the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text

from bench.fake_discord import FakeDiscord, InteractionRecord
from bot.client import TradeDeskBot
from core.db.database import Database, raw_connection, run_sql
from core.db.identity import resolve_identity
from core.market.quotes import DbQuoteSource
from core.market.sessions import MarketHours
from core.orders.paper import BrokerCosts, PaperBroker
from tests.helpers import Clock
from tools.agent import Agent, AgentConfig
from tools.desk import Desk, DeskConfig
from tools.planner import run_planner

EPHEMERAL = 64
ANSWER_WITHIN_S = 10  # generous for a loaded CI machine; Discord's own 3 s deadline is enforced by the fake
STARTING_CASH = Decimal(100_000)
PRICES = {"AAPL": "200.00", "MSFT": "400.00", "TSLA": "250.00", "BTC-USD": "90000.00", "ETH-USD": "3000.00"}


@dataclass
class Chat:
    fake: FakeDiscord
    bot: TradeDeskBot
    db: Database
    clock: Clock

    async def send(self, payload: dict[str, Any]) -> InteractionRecord:
        """Dispatch an interaction and wait for the bot's answer (its callback)."""
        await self.fake.dispatch("INTERACTION_CREATE", payload)
        return await self.fake.wait_for_callback(int(payload["id"]), timeout=ANSWER_WITHIN_S)

    async def final(self, record: InteractionRecord) -> dict[str, Any]:
        """What the user finally sees: the callback's message, or the deferred response's edit."""
        if record.callback_type == 5:
            edit = await self.fake.wait_for_request(
                lambda r: r.method == "PATCH" and r.path.endswith(f"/{record.payload['token']}/messages/@original"),
                timeout=ANSWER_WITHIN_S,
                include_recorded=True,
            )
            return dict(edit.json or {})
        return record.callback_data

    async def set_price(self, symbol: str, price: str) -> None:
        async with self.db.system_scope("test.set_price") as s:
            await run_sql(
                s,
                text(
                    "INSERT INTO last_prices (symbol, price, ts, source) VALUES (:s, :p, :ts, 'sim') "
                    "ON CONFLICT (symbol) DO UPDATE SET price = EXCLUDED.price, ts = EXCLUDED.ts"
                ),
                {"s": symbol, "p": Decimal(price), "ts": self.clock()},
            )

    async def user_id(self, discord_user: dict[str, Any]) -> UUID:
        return await resolve_identity(self.db, discord_id=int(discord_user["id"]))

    async def count(self, discord_user: dict[str, Any], table: str) -> int:
        async with self.db.user_scope(await self.user_id(discord_user)) as s:
            n: int = await (await raw_connection(s)).fetchval(f"SELECT count(*) FROM {table}")
        return n


def build_desk(db: Database, clock: Clock) -> Desk:
    return Desk(
        db,
        DbQuoteSource(db, stale_after_s=30, clock=clock),
        PaperBroker(MarketHours(always_open=True, clock=clock), BrokerCosts(stale_after=timedelta(seconds=30))),
        DeskConfig(starting_cash=STARTING_CASH, stale_after=timedelta(seconds=30)),
        clock=clock,
    )


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, db: Database, clock: Clock, *, desk: Desk | None = None
) -> AsyncIterator[TradeDeskBot]:
    agent = Agent(None, AgentConfig(channel="discord"), planner=run_planner)  # the offline planner, as without a key
    bot = TradeDeskBot(desk or build_desk(db, clock), agent, db, guild_ready_timeout=0.1)
    task = asyncio.create_task(bot.start(fake.token))
    try:
        async with asyncio.timeout(15):
            while not bot.is_ready():
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.point_client_here()
        yield server


@pytest.fixture
async def chat(fake: FakeDiscord, db: Database) -> AsyncIterator[Chat]:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    async with running_bot(fake, db, clock) as bot:
        c = Chat(fake, bot, db, clock)
        for symbol, price in PRICES.items():
            await c.set_price(symbol, price)
        yield c
