"""The one error mapper of the Discord front: `tree.on_error`, every View's `on_error`, the buttons and the message
handler all end here.

A DomainError is the user's to read: its message, ephemeral. Discord's own check failures (cooldowns, a command
used where it can't be) likewise. Anything else is our bug: the user gets a short apology with a reference id, and
the log gets the same id with the traceback, so a support question finds its cause in one grep.
"""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from core.errors import DomainError

log = logging.getLogger("tradedesk.bot")


def _unwrap(error: BaseException) -> BaseException:
    while isinstance(error, app_commands.CommandInvokeError | app_commands.TransformerError) and error.__cause__:
        error = error.__cause__
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    return error


def user_message(error: BaseException, *, where: str) -> str:
    """What to tell the user about `error`; logs the unexpected ones with a reference id."""
    error = _unwrap(error)
    if isinstance(error, DomainError):
        return error.message
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use that command here."
    reference = secrets.token_hex(4)
    log.error("error %s in %s: %s", reference, where, type(error).__name__, exc_info=error)
    return f"Sorry, something went wrong on our side. If it keeps happening, mention reference {reference}."


async def send_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user what went wrong, ephemerally, whether or not the interaction was answered already."""
    where = f"/{interaction.command.qualified_name}" if interaction.command else f"interaction {interaction.type.name}"
    message = user_message(error, where=where)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)
    except discord.HTTPException as exc:  # the interaction expired or Discord is down: the log is all we have
        log.warning("could not tell the user about an error in %s: %s", where, exc)


class ReportingView(discord.ui.View):
    """A View whose failures reach the user through the one error mapper."""

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[object], /
    ) -> None:
        await send_error(interaction, error)
