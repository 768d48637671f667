"""Plain-language questions in Discord: DMs, mentions (answered by DM) and /ask, all through the same agent.

A reply is its text, then one message per proposal with Confirm / Cancel (the same buttons as /buy), then any chart
images. Discord limits a message to 2,000 characters: longer text is split at line breaks.
"""

from __future__ import annotations

import io
import re
from typing import Any

import discord

from bot.buttons import proposal_view
from bot.render import proposal_embed
from bot.reply import missed_notice
from tools.agent import Agent, AgentReply
from tools.context import ToolContext
from tools.desk import Desk

MAX_CONTENT = 2_000


def strip_mention(text: str, bot_id: int) -> str:
    return re.sub(rf"<@!?{bot_id}>", "", text).strip()


def chunks(text: str, limit: int = MAX_CONTENT) -> list[str]:
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            parts.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            parts.append(current)
            current = ""
        current += line
    if current.strip():
        parts.append(current)
    return parts or ["…"]


async def ask(desk: Desk, agent: Agent, discord_user: discord.abc.User, text: str) -> tuple[AgentReply, str | None]:
    """The agent's reply to `text` from this Discord user, and what was held back while their DMs were closed."""
    who = await desk.identify_discord(discord_user.id, discord_user.name)
    reply = await agent.ask(ToolContext(who.user_id, desk), text)
    return reply, missed_notice(who.missed)


def messages_for(reply: AgentReply, owner: int, notice: str | None = None) -> list[dict[str, Any]]:
    """The keyword arguments of each message that carries `reply`, in order."""
    text = f"{notice}\n\n{reply.text}" if notice else reply.text
    out: list[dict[str, Any]] = [{"content": part} for part in chunks(text)]
    for proposal in reply.proposals:
        if proposal.status == "pending":
            out.append({"embed": proposal_embed(proposal), "view": proposal_view(proposal, owner)})
    if reply.attachments:
        out.append({"files": [discord.File(io.BytesIO(data), name) for name, data in reply.attachments]})
    return out
