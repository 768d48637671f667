"""/dashboard: a one-time sign-in link to the web dashboard, sent privately as the reply and never through the
outbox (it expires in minutes; a DM could be held back by quiet hours)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs import who, with_notice
from bot.reply import Reply, answer
from core.auth.service import LOGIN_TTL
from tools.desk import Desk


def _link(url: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Open dashboard", url=url, style=discord.ButtonStyle.link))
    return view


class DashboardCog(commands.Cog, name="Dashboard"):
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    @app_commands.command(name="dashboard")
    async def dashboard(self, interaction: discord.Interaction) -> None:
        """A private link that signs you in to your web dashboard."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            url = await self.desk.dashboard_link(person.user_id)
            minutes = int(LOGIN_TTL.total_seconds() // 60)
            text = (
                f"Here is your private sign-in link to the dashboard. It works once, within {minutes} minutes; "
                "don't share it."
            )
            return with_notice(Reply(content=text, view=_link(url)), person)

        await answer(interaction, work())
