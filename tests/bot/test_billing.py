"""/upgrade to Pro and back through the offline billing simulator, end to end: the bot's link, the simulated checkout
page on the real web app, the signed events it POSTs to the real /stripe/webhook, entitlements and DMs."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bench.fake_discord import FakeDiscord
from core.billing.entitlements import entitlements
from core.config import Settings
from core.db.database import Database, raw_connection
from tests.bot.conftest import EPHEMERAL, PRICES, Chat, build_desk, running_bot
from tests.helpers import Clock
from webhooks.app import create_app
from webhooks.billing_sim import BillingSimulator

SECRET = "whsec_test_simulator_secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def shop(fake: FakeDiscord, db: Database) -> AsyncIterator[tuple[Chat, BillingSimulator, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sim = BillingSimulator(
        db, public_url=base, webhook_url=f"{base}/stripe/webhook", webhook_secret=SECRET, price_pro="price_sim_pro"
    )
    app = create_app(Settings(), database=db, version="test", billing=sim, webhook_secret=SECRET)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    desk = build_desk(db, clock)
    desk.billing = sim
    desk.config = replace(desk.config, public_url=base)
    try:
        async with running_bot(fake, db, clock, desk=desk) as bot:
            chat = Chat(fake, bot, db, clock)
            for symbol, price in PRICES.items():
                await chat.set_price(symbol, price)
            yield chat, sim, base
    finally:
        await runner.cleanup()


def link_of(data: dict[str, Any]) -> str:
    [row] = data["components"]
    [button] = row["components"]
    assert button["style"] == 5  # a link button
    url: str = button["url"]
    return url


async def plan(chat: Chat) -> str:
    user = await chat.user_id(chat.fake.payloads.default_user)
    async with chat.db.user_scope(user) as s:
        return (await entitlements(s)).plan


async def outbox_titles(chat: Chat) -> list[str]:
    user = await chat.user_id(chat.fake.payloads.default_user)
    async with chat.db.user_scope(user) as s:
        rows = await (await raw_connection(s)).fetch("SELECT title FROM notifications ORDER BY id")
    return [r["title"] for r in rows]


async def test_upgrade_through_the_simulator_to_pro_and_cancel_back_to_free(
    shop: tuple[Chat, BillingSimulator, str],
) -> None:
    chat, _, base = shop
    record = await chat.send(chat.fake.payloads.slash_command("upgrade"))
    assert record.callback_type == 4 and record.callback_flags & EPHEMERAL
    assert "simulated: no card is charged" in record.callback_data["content"]
    checkout = link_of(record.callback_data)
    assert checkout.startswith(f"{base}/billing/simulator/checkout/")

    async with aiohttp.ClientSession() as http:
        async with http.get(checkout) as page:
            text = await page.text()
            assert page.status == 200 and "Simulated billing" in text and "7-day free trial" in text
        async with http.post(checkout, data={"action": "pay"}, allow_redirects=False) as paid:
            assert paid.status == 303 and paid.headers["Location"] == f"{base}/billing/success"

        assert await plan(chat) == "pro"
        assert await outbox_titles(chat) == ["Welcome to Pro"]
        async with http.post(checkout, data={"action": "pay"}, allow_redirects=False) as again:  # a second tab
            assert again.status == 303
        user = await chat.user_id(chat.fake.payloads.default_user)
        async with chat.db.user_scope(user) as s:
            assert await (await raw_connection(s)).fetchval("SELECT count(*) FROM subscriptions") == 1
        record = await chat.send(chat.fake.payloads.slash_command("upgrade"))
        assert record.callback_data["content"].startswith("You're on Pro already")

        record = await chat.send(chat.fake.payloads.slash_command("billing"))
        assert record.callback_flags & EPHEMERAL
        assert record.callback_data["content"].startswith("You're on **Pro** (subscription trialing")
        portal = link_of(record.callback_data)
        async with http.get(portal) as page:
            assert "trialing" in await page.text()
        async with http.post(portal, allow_redirects=False) as canceled:
            assert canceled.status == 303 and canceled.headers["Location"] == f"{base}/billing/return"

    assert await plan(chat) == "free"
    assert await outbox_titles(chat) == ["Welcome to Pro", "You're on the Free plan now"]
    record = await chat.send(chat.fake.payloads.slash_command("upgrade"))
    again = link_of(record.callback_data)
    async with aiohttp.ClientSession() as http, http.get(again) as page:
        assert "free trial" not in await page.text()  # the trial is for first-time subscribers


async def test_billing_before_any_subscription_points_to_upgrade(shop: tuple[Chat, BillingSimulator, str]) -> None:
    chat, _, _ = shop
    record = await chat.send(chat.fake.payloads.slash_command("billing"))
    assert record.callback_data["content"] == "You're on **Free**. /upgrade to get Pro."
    assert not record.callback_data.get("components")


async def test_a_forged_or_expired_checkout_link_is_refused(shop: tuple[Chat, BillingSimulator, str]) -> None:
    chat, _, base = shop
    record = await chat.send(chat.fake.payloads.slash_command("upgrade"))
    checkout = link_of(record.callback_data)
    token = checkout.rsplit("/", 1)[1]
    body, mac = token.split(".")
    forged = f"{base}/billing/simulator/checkout/{body}.{'0' * len(mac)}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(forged, data={"action": "pay"}, allow_redirects=False) as response,
    ):
        assert response.status == 404 and re.search("expired", await response.text())
    assert await plan(chat) == "free"
