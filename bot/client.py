"""The Discord bot role: a commands.Bot given its dependencies by app/ (discord.py's advanced_startup.py is the model).

The bot reads and writes through the Desk (user scopes, core services) and reads prices through the Desk's
QuoteSource; it never touches the tick bus or the scheduler, which belong to the worker role. Intents: guilds,
guild messages (for mentions) and DMs; no privileged intent.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.buttons import ProposalButton
from bot.cogs.alerts import AlertsCog
from bot.cogs.help import HelpCog
from bot.cogs.orders import OrdersCog
from bot.cogs.portfolio import PortfolioCog
from bot.errors import send_error
from bot.sync import sync_commands
from core.db.database import Database
from tools.desk import Desk

log = logging.getLogger("tradedesk.bot")

PLAIN_MESSAGE_REPLY = (
    "I work through slash commands: type `/` in any channel or here to see them, or `/help` for examples. "
    "Replies about your portfolio are private."
)


def intents() -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.dm_messages = True
    return chosen


class TradeDeskBot(commands.Bot):
    def __init__(self, desk: Desk, database: Database, *, sync_on_start: bool = True, **options: object) -> None:
        # TradeDesk never joins voice: without these, discord.py warns at start-up that voice libraries are missing.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,  # type: ignore[arg-type]
        )
        self.desk = desk
        self.database = database
        self.sync_on_start = sync_on_start
        self.tree.on_error = self._on_tree_error

    async def setup_hook(self) -> None:
        for cog in (PortfolioCog(self.desk), OrdersCog(self.desk), AlertsCog(self.desk), HelpCog()):
            await self.add_cog(cog)
        self.add_dynamic_items(ProposalButton)
        if self.sync_on_start:
            try:
                await self.sync_commands(force=False)
            except discord.HTTPException as exc:
                # The commands registered last time keep working; a failed update must not keep the bot offline.
                log.error(
                    "discord: could not register the slash commands (%s); retry with tradedesk sync-commands", exc
                )

    async def sync_commands(self, *, force: bool) -> bool:
        assert self.application_id is not None, "log in first: the application id comes from Discord"
        return await sync_commands(self.tree, self.database, self.application_id, force=force)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("discord: connected as %s (id %d) to %d server(s)", self.user, self.user.id, len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        """A DM, or a mention in a guild: answered by DM (a plain message can't be ephemeral, and the answer may be
        about the user's money). No prefix commands: everything is a slash command."""
        if message.author.bot or self.user is None:
            return
        if message.guild is not None and self.user not in message.mentions:
            return
        try:
            await message.author.send(PLAIN_MESSAGE_REPLY)
        except discord.Forbidden:
            log.info("discord: can't DM %s (DMs closed) to answer their message", message.author.id)
        except discord.HTTPException as exc:
            log.warning("discord: could not answer a message from %s: %s", message.author.id, exc)

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await send_error(interaction, error)
