"""Plain-language questions in Discord (offline planner, as without OPENAI_API_KEY): DMs, mentions answered by DM,
/ask answered privately in guilds, and proposals from a conversation confirmed with the same buttons as /buy."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.fake_discord import RecordedRequest, option
from tests.bot.conftest import EPHEMERAL, Chat
from tests.bot.test_orders import buttons, click

POST_MESSAGE = "POST /channels/{channel_id}/messages"
FOLLOWUP = "POST /webhooks/{application_id}/{token}"


async def collect(chat: Chat, route: str, mark: int, count: int) -> list[RecordedRequest]:
    """The first `count` requests to `route` recorded after index `mark`, waiting for them as they arrive."""
    while len(got := [r for r in chat.fake.requests[mark:] if r.route == route]) < count:
        await chat.fake.wait_for_request(lambda r: r.route == route, timeout=10)
    return got[:count]


async def dms_after(chat: Chat, payload: dict[str, Any], count: int) -> list[RecordedRequest]:
    """Dispatch a MESSAGE_CREATE and return the first `count` DMs the bot sends back."""
    mark = len(chat.fake.requests)
    await chat.fake.dispatch("MESSAGE_CREATE", payload)
    sent = await collect(chat, POST_MESSAGE, mark, count)
    dm = chat.fake.dm_channel_id(int(chat.fake.payloads.default_user["id"]))
    assert all(r.path.endswith(f"/channels/{dm}/messages") for r in sent), "answers go to the user's DMs"
    return sent[:count]


async def test_a_mention_in_a_guild_is_answered_by_dm_with_real_numbers(chat: Chat) -> None:
    [reply] = await dms_after(chat, chat.fake.payloads.message_create("how is my aapl position?"), 1)
    assert reply.json is not None
    assert reply.json["content"].startswith("You have no AAPL position. AAPL last traded at $200 as of")
    assert "(simulated prices)" in reply.json["content"]
    guild_channel = chat.fake.channel_id
    assert chat.fake.channel_messages(guild_channel) == []  # nothing about money in the channel


async def test_a_dm_can_prepare_an_order_that_the_buttons_confirm(chat: Chat) -> None:
    text, proposal = await dms_after(chat, chat.fake.payloads.message_create("buy 2 tsla", guild=False), 2)
    assert text.json is not None and "press Confirm" in text.json["content"]
    assert proposal.json is not None and proposal.json["embeds"][0]["title"] == "Confirm this paper order?"
    ids = buttons(proposal.json)
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 0
    kind, done = await click(chat, ids["Confirm"], guild=False)
    assert kind == 7 and done["embeds"][0]["title"] == "Order filled"
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 1


async def test_unclear_messages_get_help_and_other_guild_chatter_is_ignored(chat: Chat) -> None:
    for text in ("🚀🚀🚀", "bonjour, comment ça va ?"):
        [reply] = await dms_after(chat, chat.fake.payloads.message_create(text, guild=False), 1)
        assert reply.json is not None and len(reply.json["content"]) < 600
    mark = len(chat.fake.requests)
    await chat.fake.dispatch("MESSAGE_CREATE", chat.fake.payloads.message_create("chatter", mention_bot=False))
    await asyncio.sleep(0.3)
    assert [r for r in chat.fake.requests[mark:] if r.route == POST_MESSAGE] == []


async def test_ask_is_deferred_privately_in_guilds_and_answers_with_the_buttons(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("ask", option("question", "buy 1 btc at 85000")))
    assert record.callback_type == 5 and record.callback_flags & EPHEMERAL
    await collect(chat, FOLLOWUP, 0, 2)
    first, second = record.followups[:2]
    assert first["flags"] & EPHEMERAL and second["flags"] & EPHEMERAL
    assert "press Confirm" in first["content"]
    assert set(buttons(second)) == {"Confirm", "Cancel"}


async def test_ask_in_dms_is_a_normal_message(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("ask", option("question", "what's my cash"), guild=False))
    assert record.callback_type == 5 and not record.callback_flags & EPHEMERAL
    await collect(chat, FOLLOWUP, 0, 1)
    assert "$100,000.00" in record.followups[0]["content"]
