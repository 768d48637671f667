"""The bot's start-up, command registration, error reporting and the DMs-closed notice, through the fake Discord."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import asyncpg
import pytest
from discord import app_commands

from bench.fake_discord import FakeDiscord, option
from bot.notifier import DiscordNotifier
from bot.reply import DEFER_AFTER_S
from core.db.database import Database
from core.notifications.dispatcher import Dispatcher
from core.notifications.limiter import TokenBucket
from core.notifications.outbox import enqueue
from tests.bot.conftest import EPHEMERAL, Chat, running_bot
from tests.helpers import Clock


async def test_commands_are_registered_once_and_again_only_when_they_change(
    fake: FakeDiscord, db: Database, chat: Chat
) -> None:
    assert fake.command_writes == 1
    names = {c["name"] for c in fake.commands()}
    assert names == {"portfolio", "positions", "pnl", "quote", "chart", "buy", "sell", "orders", "cancel", "alert",
                     "ask", "upgrade", "billing", "dashboard", "help"}  # fmt: skip
    # A restart (a second process, same database): the tree is unchanged, so nothing is sent to Discord.
    async with running_bot(fake, db, chat.clock):
        pass
    assert fake.command_writes == 1
    # A changed tree is registered at the next start-up check.
    extra = app_commands.Command(name="ping", description="Check the bot answers.", callback=_ping)
    chat.bot.tree.add_command(extra)
    assert await chat.bot.sync_commands(force=False) is True
    assert fake.command_writes == 2 and "ping" in {c["name"] for c in fake.commands()}
    assert await chat.bot.sync_commands(force=False) is False
    assert await chat.bot.sync_commands(force=True) is True  # `tradedesk sync-commands`
    assert fake.command_writes == 3


async def _ping(interaction: object) -> None:  # pragma: no cover - never invoked, only registered
    pass


def walk(options: list[dict[str, object]]) -> list[dict[str, object]]:
    found = []
    for opt in options:
        found.append(opt)
        found += walk(opt.get("options", []))  # type: ignore[arg-type]
    return found


async def test_every_command_and_option_has_a_discord_description(chat: Chat) -> None:
    for command in chat.fake.commands():
        assert command["description"] and command["description"] != "…", command["name"]
        for opt in walk(command.get("options", [])):
            assert opt["description"] and opt["description"] != "…", (command["name"], opt["name"])
            assert len(str(opt["description"])) <= 100


async def test_an_unexpected_failure_gets_an_apology_with_a_reference_found_in_the_log(
    chat: Chat, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await asyncpg.connect(db_url)  # the schema owner breaks a table under the bot: a bug, not user error
    try:
        await owner.execute("ALTER TABLE tradedesk.positions RENAME TO positions_gone")
    finally:
        await owner.close()
    with caplog.at_level(logging.ERROR, logger="tradedesk.bot"):
        record = await chat.send(chat.fake.payloads.slash_command("positions"))
    assert record.callback_type == 4 and record.callback_flags & EPHEMERAL
    content = record.callback_data["content"]
    match = re.search(r"reference ([0-9a-f]{8})", content)
    assert content.startswith("Sorry, something went wrong on our side") and match
    logged = [r for r in caplog.records if match[1] in r.getMessage()]
    assert len(logged) == 1 and "/positions" in logged[0].getMessage() and logged[0].exc_info
    assert "positions_gone" not in content and "UndefinedTable" not in content  # no internals shown


async def test_the_first_interaction_after_dms_bounced_says_what_was_held_back(chat: Chat) -> None:
    user = chat.fake.payloads.default_user
    user_id = await chat.user_id(user)
    chat.fake.closed_dms.add(int(user["id"]))
    dispatcher = Dispatcher(chat.db, DiscordNotifier(chat.bot.http), TokenBucket(), coalesce=False)
    async with chat.db.system_scope("test.enqueue") as s:
        await enqueue(s, user_id, "alert", "t1", "AAPL above 210.00", "AAPL traded at 210.50.")
    stats = await dispatcher.dispatch_once()
    assert stats.parked == 1 and chat.fake.channel_messages(chat.fake.dm_channel_id(int(user["id"])) or 0) == []

    chat.fake.closed_dms.clear()  # the user opens their DMs and comes back
    record = await chat.send(chat.fake.payloads.slash_command("orders"))
    content = record.callback_data["content"]
    assert "Your DMs were closed to me, so 1 notification(s) waited" in content and "• AAPL above 210.00" in content
    stats = await dispatcher.dispatch_once()
    assert stats.notifications_sent == 1
    dms = chat.fake.channel_messages(chat.fake.dm_channel_id(int(user["id"])) or 0)
    assert [m["embeds"][0]["title"] for m in dms] == ["AAPL above 210.00"]
    record = await chat.send(chat.fake.payloads.slash_command("orders"))
    assert record.callback_data["content"] is None  # told once


async def test_slow_work_is_deferred_privately_then_answered(chat: Chat, db_url: str) -> None:
    user = chat.fake.payloads.default_user
    await chat.send(chat.fake.payloads.slash_command("portfolio"))  # opens the default portfolio
    user_id = await chat.user_id(user)
    blocker = await asyncpg.connect(db_url)  # holds the portfolio's row lock, as a long fill would
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT set_config('role', 'tradedesk_system', true)")  # RLS: see every tenant
        locked = await blocker.fetch("SELECT 1 FROM tradedesk.portfolios WHERE user_id = $1 FOR UPDATE", user_id)
        assert len(locked) == 1
        payload = chat.fake.payloads.slash_command("buy", option("symbol", "AAPL"), option("qty", "1"))
        record = await chat.send(payload)
        assert record.callback_type == 5 and record.callback_flags & EPHEMERAL  # deferred, private, within 3 s
        # Deferred only once the work had its 2 s (the fake refuses a callback after Discord's 3 s deadline).
        assert record.latency_s is not None and record.latency_s >= DEFER_AFTER_S
        await tx.rollback()
    finally:
        await blocker.close()
    final = await chat.final(record)
    assert final["embeds"][0]["title"] == "Confirm this paper order?" and len(final["components"]) == 1


async def test_a_failed_command_registration_does_not_keep_the_bot_offline(
    fake: FakeDiscord, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next(400, path_contains="/commands")
    with caplog.at_level(logging.ERROR, logger="tradedesk.bot"):
        async with running_bot(fake, db, Clock(datetime.now(UTC))) as bot:
            assert bot.is_ready()
            payload = fake.payloads.slash_command("help")
            await fake.dispatch("INTERACTION_CREATE", payload)
            assert (await fake.wait_for_callback(int(payload["id"]))).callback_type == 4
    assert fake.commands() == []
    assert any("could not register the slash commands" in r.getMessage() for r in caplog.records)
    # Nothing was recorded as registered, so the next start-up tries again.
    async with running_bot(fake, db, Clock(datetime.now(UTC))):
        pass
    assert len(fake.commands()) == 15
