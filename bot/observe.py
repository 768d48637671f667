"""The bot's observability: every interaction's id as the log context, every slash command timed.

`ObservedTree` is the bot's CommandTree. Its global check runs first for every application command, in the task that
then runs the command and its error handler: it sets the interaction id as the request id of everything logged on
its behalf (core/logcontext.py) and notes the start time. The command ends in the bot's `on_app_command_completion`
(outcome ok) or in the one error mapper (outcome error); both call `command_done`, which observes
tradedesk_command_duration_seconds by command name (a bounded set: our own commands).
"""

from __future__ import annotations

import time
from typing import Any

import discord
from discord import app_commands

from core import metrics
from core.logcontext import set_request_id

_STARTED = "tradedesk_started"


def interaction_started(interaction: discord.Interaction[Any]) -> None:
    """The interaction id becomes the log context; application commands are timed from here."""
    set_request_id(str(interaction.id))
    if interaction.type is discord.InteractionType.application_command:
        interaction.extras[_STARTED] = time.perf_counter()


def command_done(interaction: discord.Interaction[Any], outcome: str) -> None:
    """Observe the command's duration once (a later call for the same interaction does nothing)."""
    started = interaction.extras.pop(_STARTED, None)
    if started is None:
        return
    command = interaction.command
    name = command.qualified_name if command is not None else "unknown"
    metrics.COMMAND_LATENCY.labels(name, outcome).observe(time.perf_counter() - started)


class ObservedTree(app_commands.CommandTree[Any]):
    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        interaction_started(interaction)
        return True
