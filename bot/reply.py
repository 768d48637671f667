"""Answering an interaction: privacy, the 3-second deadline, and what was held back while DMs were closed.

Anything about a user's money is ephemeral in a guild channel and a normal message in DMs. Discord wants an answer
within 3 s; `answer` gives the work 2 s and then defers (the ephemeral flag is fixed at that moment, so it is decided
up front), sending the reply as the deferred response's edit when the work is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import discord

from core.notifications.dispatcher import Missed

DEFER_AFTER_S = 2.0
T = TypeVar("T")
_MISSED_SHOWN = 5


@dataclass
class Reply:
    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    view: discord.ui.View | None = None
    files: list[discord.File] = field(default_factory=list)


def is_private_here(interaction: discord.Interaction) -> bool:
    """Whether a reply about the user's money must be ephemeral here: in a guild, yes; in DMs it is already private."""
    return interaction.guild_id is not None


def missed_notice(missed: Sequence[Missed]) -> str | None:
    """A few lines telling a returning user what we could not DM them, and that it is on its way now."""
    if not missed:
        return None
    lines = [f"Your DMs were closed to me, so {len(missed)} notification(s) waited; they are being sent now:"]
    lines += [f"• {m.title}" for m in missed[:_MISSED_SHOWN]]
    if len(missed) > _MISSED_SHOWN:
        lines.append(f"• … and {len(missed) - _MISSED_SHOWN} more")
    return "\n".join(lines)


async def within_deadline(
    work: Coroutine[Any, Any, T], defer: Callable[[], Awaitable[object]], *, defer_after: float = DEFER_AFTER_S
) -> T:
    """The result of `work`; if it isn't ready within `defer_after` seconds, `defer()` acknowledges the interaction
    first (Discord wants an answer within 3 s). The work is cancelled if this is."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=defer_after)
        if not done:
            await defer()
        return await task
    finally:
        if not task.done():
            task.cancel()


async def answer(
    interaction: discord.Interaction,
    work: Coroutine[Any, Any, Reply],
    *,
    private: bool = True,
    defer_after: float = DEFER_AFTER_S,
) -> None:
    """Run `work` and send its Reply; defer first if it takes longer than `defer_after` seconds.

    `private`: the reply is about the user's own data, so ephemeral in guilds. Errors propagate to the command
    tree's error handler (the one mapper), which knows whether the interaction was deferred.
    """
    ephemeral = private and is_private_here(interaction)
    reply = await within_deadline(
        work, lambda: interaction.response.defer(ephemeral=ephemeral, thinking=True), defer_after=defer_after
    )
    kwargs: dict[str, Any] = {"content": reply.content, "embeds": reply.embeds}
    if reply.view is not None:
        kwargs["view"] = reply.view
    if interaction.response.is_done():
        await interaction.edit_original_response(attachments=reply.files, **kwargs)
    else:
        await interaction.response.send_message(files=reply.files, ephemeral=ephemeral, **kwargs)
