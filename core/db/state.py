"""The deployment's small key-value state (app_state): system-only, e.g. the hash of the last Discord command sync."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from core.db.database import raw_connection


async def get_state(session: AsyncSession, key: str) -> dict[str, Any] | None:
    conn = await raw_connection(session)
    value = await conn.fetchval("SELECT value FROM app_state WHERE key = $1", key)
    if value is None:
        return None
    loaded: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
    return loaded


async def put_state(session: AsyncSession, key: str, value: dict[str, Any], *, replace: bool = True) -> None:
    """Store `value` under `key`; with replace=False, only if the key has no value yet."""
    conn = await raw_connection(session)
    on_conflict = "DO UPDATE SET value = EXCLUDED.value, updated_at = now()" if replace else "DO NOTHING"
    await conn.execute(
        f"INSERT INTO app_state (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) {on_conflict}",
        key,
        json.dumps(value),
    )
