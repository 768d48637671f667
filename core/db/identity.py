"""resolve_identity: the one named path from an outside identity to a user id.

No user_scope can exist before we know who the user is, so this small function runs in system_scope, creates the
user on first contact, and returns only the id. Everything after it runs in user_scope(id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text

from core.db.database import Database, run_sql
from core.errors import InvalidInput

_HANDLE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
_MAX_SNOWFLAKE = 2**63 - 1


def normalize_handle(handle: str) -> str:
    handle = handle.strip().lower()
    if not _HANDLE.match(handle):
        raise InvalidInput(
            "A console handle is 1-32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    return handle


@dataclass(frozen=True)
class Identity:
    user_id: UUID
    dms_closed: bool  # our last DM bounced (Discord 50007): the transport clears the mark at this interaction


async def resolve_identity(
    db: Database,
    *,
    discord_id: int | None = None,
    console_handle: str | None = None,
    display_name: str | None = None,
) -> UUID:
    """Return the user id for exactly one of `discord_id` or `console_handle`, creating the user if new."""
    identity = await identify(db, discord_id=discord_id, console_handle=console_handle, display_name=display_name)
    return identity.user_id


async def identify(
    db: Database,
    *,
    discord_id: int | None = None,
    console_handle: str | None = None,
    display_name: str | None = None,
) -> Identity:
    """resolve_identity, also saying whether the user's DMs are marked closed."""
    if (discord_id is None) == (console_handle is None):
        raise ValueError("resolve_identity takes exactly one of discord_id or console_handle")
    value: int | str
    if discord_id is not None:
        if isinstance(discord_id, bool) or not isinstance(discord_id, int) or not 0 < discord_id <= _MAX_SNOWFLAKE:
            raise InvalidInput("A Discord id is a positive 64-bit snowflake.")
        column, value = "discord_id", discord_id
    else:
        assert console_handle is not None
        column, value = "console_handle", normalize_handle(console_handle)
    name = (display_name or "").strip()[:100] or None
    # A read first: a known user (nearly every interaction) costs no write, so no WAL flush at commit. The insert
    # for a new one keeps the no-op DO UPDATE so that RETURNING gives the id even when a concurrent first contact won.
    known = text(f"SELECT id, dm_status FROM users WHERE {column} = :value")
    insert = text(
        f"INSERT INTO users ({column}, display_name) VALUES (:value, :name) "
        f"ON CONFLICT ({column}) DO UPDATE SET {column} = EXCLUDED.{column} RETURNING id, dm_status"
    )
    async with db.system_scope("resolve_identity") as session:
        row = (await run_sql(session, known, {"value": value})).one_or_none()
        if row is None:
            row = (await run_sql(session, insert, {"value": value, "name": name})).one()
    return Identity(row.id, row.dm_status == "closed")
