"""The Discord bot role: a commands.Bot given its dependencies by app/ (discord.py's advanced_startup.py is the model).

The bot reads and writes through the Desk (user scopes, core services) and reads prices through the Desk's
QuoteSource; it never touches the tick bus or the scheduler, which belong to the worker role. Intents: guilds,
guild messages (for mentions) and DMs; no privileged intent.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.buttons import ProposalButton
from bot.cogs.alerts import AlertsCog
from bot.cogs.ask import AskCog
from bot.cogs.billing import BillingCog
from bot.cogs.dashboard import DashboardCog
from bot.cogs.help import HelpCog
from bot.cogs.orders import OrdersCog
from bot.cogs.portfolio import PortfolioCog
from bot.conversation import ask, messages_for, strip_mention
from bot.errors import send_error, user_message
from bot.observe import ObservedTree, command_done
from bot.sync import sync_commands
from core.db.database import Database
from core.logcontext import set_request_id
from tools.agent import Agent
from tools.desk import Desk

log = logging.getLogger("tradedesk.bot")


def intents() -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.dm_messages = True
    return chosen


class TradeDeskBot(commands.Bot):
    def __init__(
        self, desk: Desk, agent: Agent, database: Database, *, sync_on_start: bool = True, **options: object
    ) -> None:
        # TradeDesk never joins voice: without these, discord.py warns at start-up that voice libraries are missing.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=ObservedTree,
            **options,  # type: ignore[arg-type]
        )
        self.desk = desk
        self.agent = agent
        self.database = database
        self.sync_on_start = sync_on_start
        self.tree.on_error = self._on_tree_error

    async def setup_hook(self) -> None:
        cogs = (
            PortfolioCog(self.desk),
            OrdersCog(self.desk),
            AlertsCog(self.desk),
            AskCog(self.desk, self.agent),
            BillingCog(self.desk),
            DashboardCog(self.desk),
            HelpCog(),
        )
        for cog in cogs:
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
        """A DM, or a mention in a guild: a question for the agent, answered by DM (a plain message can't be
        ephemeral, and the answer may be about the user's money). No prefix commands: the rest is slash commands."""
        if message.author.bot or self.user is None:
            return
        if message.guild is not None and self.user not in message.mentions:
            return
        set_request_id(str(message.id))  # this handler runs in a task of its own: its log lines carry the message id
        text = strip_mention(message.content, self.user.id)
        try:
            if message.guild is None:
                with contextlib.suppress(discord.HTTPException):  # the indicator is a courtesy, not the answer
                    await message.channel.typing()
            reply, notice = await ask(self.desk, self.agent, message.author, text)
            for kwargs in messages_for(reply, message.author.id, notice):
                await message.author.send(**kwargs)
        except discord.Forbidden:
            log.info("discord: can't DM %s (DMs closed) to answer their message", message.author.id)
        except Exception as exc:  # noqa: BLE001 - the one error mapper tells the user and logs the rest
            with contextlib.suppress(discord.HTTPException):
                await message.author.send(user_message(exc, where="a message"))

    async def on_app_command_completion(
        self, interaction: discord.Interaction, command: app_commands.Command[Any, ..., Any] | app_commands.ContextMenu
    ) -> None:
        command_done(interaction, "ok")

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        command_done(interaction, "error")
        await send_error(interaction, error)
