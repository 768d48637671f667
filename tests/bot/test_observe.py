"""Slash commands through the fake Discord are timed by name and outcome (tradedesk_command_duration_seconds)."""

from __future__ import annotations

from bench.fake_discord import option
from core import metrics
from tests.bot.conftest import Chat
from tests.core.market.wire import until


def commands(command: str, outcome: str) -> float:
    return metrics.value("tradedesk_command_duration_seconds_count", {"command": command, "outcome": outcome})


async def test_each_slash_command_is_timed_once_by_name_and_outcome(chat: Chat) -> None:
    ok, error = commands("portfolio", "ok"), commands("portfolio", "error")
    record = await chat.send(chat.fake.payloads.slash_command("portfolio"))
    assert record.callback_data["embeds"][0]["title"] == "Portfolio — Main"
    record = await chat.send(chat.fake.payloads.slash_command("portfolio", option("name", "Retirement")))
    assert record.callback_data["content"] == "You have no portfolio named Retirement."
    # The command ends after its answer is sent: wait for the completion event (or the error handler) to run.
    await until(lambda: commands("portfolio", "ok") == ok + 1, what="the ok command timed")
    await until(lambda: commands("portfolio", "error") == error + 1, what="the failed command timed")
