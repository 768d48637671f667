"""Registering slash commands with Discord only when they changed.

Discord limits command creation (200 a day per guild and globally), and a bot restarted in a crash loop must not
burn it. The command tree's JSON, exactly as it would be sent, is hashed and kept in app_state per application;
start-up syncs only when the hash differs. `tradedesk sync-commands` forces it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from discord import app_commands

from core.db.database import Database
from core.db.state import get_state, put_state

log = logging.getLogger("tradedesk.bot")


def tree_payload(tree: app_commands.CommandTree[Any]) -> list[dict[str, Any]]:
    return sorted((command.to_dict(tree) for command in tree.get_commands()), key=lambda c: (c["type"], c["name"]))


def tree_hash(tree: app_commands.CommandTree[Any]) -> str:
    encoded = json.dumps(tree_payload(tree), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


async def sync_commands(tree: app_commands.CommandTree[Any], db: Database, application_id: int, *, force: bool) -> bool:
    """Register the global commands if they differ from the last registration (or `force`); True if it synced."""
    key = f"discord.commands:{application_id}"
    digest = tree_hash(tree)
    async with db.system_scope("discord.command_sync") as s:
        stored = await get_state(s, key)
    if not force and stored is not None and stored.get("hash") == digest:
        log.info("discord: %d slash commands unchanged since the last registration; not registering", stored["count"])
        return False
    synced = await tree.sync()
    async with db.system_scope("discord.command_sync") as s:
        await put_state(s, key, {"hash": digest, "count": len(synced), "at": datetime.now(UTC).isoformat()})
    log.info("discord: registered %d slash commands with Discord", len(synced))
    return True
