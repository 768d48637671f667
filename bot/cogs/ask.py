"""/ask: a plain-language question, answered privately in guilds (deferred: the model may take a few seconds)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.conversation import ask, messages_for
from bot.reply import is_private_here
from tools.agent import Agent
from tools.desk import Desk


class AskCog(commands.Cog, name="Ask"):
    def __init__(self, desk: Desk, agent: Agent) -> None:
        self.desk = desk
        self.agent = agent

    @app_commands.command(name="ask")
    @app_commands.describe(question='Anything about your portfolio, prices, orders or alerts, e.g. "how is my AAPL?"')
    async def ask(self, interaction: discord.Interaction, question: app_commands.Range[str, 1, 2000]) -> None:
        """Ask in plain words: positions, P&L, prices, orders, alerts. Orders still need your confirmation."""
        private = is_private_here(interaction)
        await interaction.response.defer(ephemeral=private, thinking=True)
        reply, notice = await ask(self.desk, self.agent, interaction.user, question)
        for kwargs in messages_for(reply, interaction.user.id, notice):
            await interaction.followup.send(ephemeral=private, **kwargs)
