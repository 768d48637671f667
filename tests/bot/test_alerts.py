"""/alert add, /alert list and /alert remove (a subcommand group) through the fake Discord."""

from __future__ import annotations

from typing import Any

import pytest

from bench.fake_discord import option, subcommand
from tests.bot.conftest import EPHEMERAL, Chat


def alert(chat: Chat, name: str, *options: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return chat.fake.payloads.slash_command("alert", subcommand(name, *options), **kw)


async def test_add_list_and_remove_an_alert(chat: Chat) -> None:
    record = await chat.send(
        alert(chat, "add", option("symbol", "aapl"), option("when", "above"), option("value", "210"),
              option("note", "take profit"))
    )  # fmt: skip
    assert record.callback_type == 4 and record.callback_flags & EPHEMERAL
    assert "Alert set:" in record.callback_data["content"]
    assert "**AAPL** above 210.00 — take profit" in record.callback_data["content"]

    record = await chat.send(
        alert(chat, "add", option("symbol", "ETH-USD"), option("when", "move"), option("value", "-5"),
              option("recurring", True), option("cooldown", 30))
    )  # fmt: skip
    assert "**ETH-USD** moves -5% from 3,000.00 (to 2,850.00) · recurring" in record.callback_data["content"]

    record = await chat.send(alert(chat, "list"))
    description = record.callback_data["embeds"][0]["description"]
    assert record.callback_flags & EPHEMERAL and "AAPL" in description and "ETH-USD" in description

    record = await chat.send(
        chat.fake.payloads.autocomplete("alert", subcommand("remove", option("alert", "eth", focused=True)))
    )
    choices = record.callback_data["choices"]
    assert len(choices) == 1 and "ETH-USD" in choices[0]["name"]
    record = await chat.send(alert(chat, "remove", option("alert", choices[0]["value"])))
    assert record.callback_flags & EPHEMERAL and record.callback_data["content"] == "Alert deleted."
    record = await chat.send(alert(chat, "list"))
    assert "ETH-USD" not in record.callback_data["embeds"][0]["description"]
    assert await chat.count(chat.fake.payloads.default_user, "alerts") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((option("symbol", "AAPL"), option("when", "above"), option("value", "190")), "already at 200"),
        ((option("symbol", "AAPL"), option("when", "below"), option("value", "-3")), "greater than zero"),
        ((option("symbol", "AAPL"), option("when", "above"), option("value", "NaN")), "finite number"),
        ((option("symbol", "AAPL"), option("when", "above"), option("value", "1e308")), "too large"),
        ((option("symbol", "AAPL"), option("when", "move"), option("value", "0")), "would fire at once"),
        ((option("symbol", "🚀"), option("when", "above"), option("value", "1")), "is not a symbol"),
        ((option("symbol", "NOPE"), option("when", "above"), option("value", "1")), "Unknown symbol"),
        ((option("symbol", "AAPL"), option("when", "above"), option("value", "250"), option("cooldown", 5)),
         "only applies to a recurring alert"),
    ],
)  # fmt: skip
async def test_bad_alert_input_gets_a_clear_private_error_and_writes_nothing(
    chat: Chat, options: tuple[dict[str, Any], ...], message: str
) -> None:
    record = await chat.send(alert(chat, "add", *options))
    assert record.callback_type == 4 and record.callback_flags & EPHEMERAL
    assert message.lower() in record.callback_data["content"].lower()
    assert await chat.count(chat.fake.payloads.default_user, "alerts") == 0


async def test_another_users_alert_cant_be_removed_or_seen(chat: Chat) -> None:
    mallory = chat.fake.payloads.user("mallory")
    await chat.send(alert(chat, "add", option("symbol", "AAPL"), option("when", "above"), option("value", "300"),
                          who=mallory))  # fmt: skip
    record = await chat.send(
        chat.fake.payloads.autocomplete("alert", subcommand("remove", option("alert", "", focused=True)), who=mallory)
    )
    mallorys = record.callback_data["choices"][0]["value"]
    record = await chat.send(
        chat.fake.payloads.autocomplete("alert", subcommand("remove", option("alert", "", focused=True)))
    )
    assert record.callback_data["choices"] == []
    for typed in (mallorys, "garbage"):
        record = await chat.send(alert(chat, "remove", option("alert", typed)))
        assert record.callback_flags & EPHEMERAL and "no alert" in record.callback_data["content"].lower()
    assert await chat.count(mallory, "alerts") == 1
