"""One cog per area: portfolio, orders, alerts, help. Each command parses its options, calls one Desk method and
renders the result; the cog holds no state but the Desk it was given."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.reply import Reply, missed_notice
from tools.desk import Desk, Who


async def who(desk: Desk, interaction: discord.Interaction) -> Who:
    """The TradeDesk user behind this interaction (created on first contact). An autocomplete request doesn't reopen
    closed DMs: its answer can't tell the user what waited, so the next real command does."""
    reopen = interaction.type != discord.InteractionType.autocomplete
    return await desk.identify_discord(interaction.user.id, interaction.user.name, reopen=reopen)


def with_notice(reply: Reply, person: Who) -> Reply:
    """Prepend what was held back while the user's DMs were closed, told once, at this first interaction since."""
    notice = missed_notice(person.missed)
    if notice:
        reply.content = f"{notice}\n\n{reply.content}" if reply.content else notice
    return reply


async def symbol_autocomplete(desk: Desk, current: str) -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=f"{i.symbol} — {i.name}"[:100], value=i.symbol)
        for i in await desk.symbol_choices(current)
    ]
