"""Alert commands: /alert add, /alert list, /alert remove."""

from __future__ import annotations

from datetime import timedelta

import discord
from discord import app_commands
from discord.ext import commands

from bot import parse
from bot.cogs import symbol_autocomplete, who, with_notice
from bot.render import alert_line, alerts_embed
from bot.reply import Reply, answer
from tools.desk import Desk

KINDS = [
    app_commands.Choice(name="above a price", value="above"),
    app_commands.Choice(name="below a price", value="below"),
    app_commands.Choice(name="moves by a percent (e.g. -5)", value="move"),
]


class AlertsCog(commands.GroupCog, group_name="alert"):
    """Price alerts, checked on every tick and sent to you by DM."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        super().__init__()

    @app_commands.command(name="add")
    @app_commands.describe(
        symbol="A ticker like AAPL or a pair like BTC-USD",
        when="Fire when the price goes above or below a level, or moves by a percent",
        value="The price level, or the percent move (+5 or -5)",
        recurring="Fire again each time it crosses (default: once)",
        cooldown="For recurring alerts: minutes between two firings (default 60)",
        note="A note to include in the DM",
    )
    @app_commands.choices(when=KINDS)
    async def add(
        self,
        interaction: discord.Interaction,
        symbol: str,
        when: app_commands.Choice[str],
        value: str,
        recurring: bool = False,
        cooldown: app_commands.Range[int, 1, 43_200] | None = None,
        note: app_commands.Range[str, 1, 300] | None = None,
    ) -> None:
        """Alert me by DM when a price crosses a level or moves by a percent."""

        async def work() -> Reply:
            number = parse.signed_amount(value, "percent" if when.value == "move" else "alert price")
            person = await who(self.desk, interaction)
            alert = await self.desk.add_alert(
                person.user_id,
                symbol,
                when.value,
                number,
                recurring=recurring,
                cooldown=timedelta(minutes=cooldown) if cooldown is not None else None,
                note=note,
            )
            return with_notice(Reply(content=f"Alert set: {alert_line(alert)}. I'll DM you when it fires."), person)

        await answer(interaction, work())

    @add.autocomplete("symbol")
    async def _symbol(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await symbol_autocomplete(self.desk, current)

    @app_commands.command(name="list")
    async def list_(self, interaction: discord.Interaction) -> None:
        """Your active price alerts."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            return with_notice(Reply(embeds=[alerts_embed(await self.desk.alerts(person.user_id))]), person)

        await answer(interaction, work())

    @app_commands.command(name="remove")
    @app_commands.describe(alert="One of your alerts (start typing its symbol)")
    async def remove(self, interaction: discord.Interaction, alert: str) -> None:
        """Delete one of your price alerts."""

        async def work() -> Reply:
            alert_id = parse.object_id(alert, "alert")
            person = await who(self.desk, interaction)
            await self.desk.remove_alert(person.user_id, alert_id)
            return with_notice(Reply(content="Alert deleted."), person)

        await answer(interaction, work())

    @remove.autocomplete("alert")
    async def _alerts(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        person = await who(self.desk, interaction)
        found = await self.desk.alert_choices(person.user_id, current)
        return [app_commands.Choice(name=alert_line(a).replace("`", "").replace("*", "")[:100], value=str(a.id))
                for a in found]  # fmt: skip
