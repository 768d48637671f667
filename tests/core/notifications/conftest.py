"""Fixtures for the outbox: users as resolve_identity creates them, a clock to inject, enqueue in its own scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.db.types import utcnow
from core.notifications.dispatcher import Dispatcher, DispatchStats
from core.notifications.outbox import enqueue
from tests.helpers import Clock


@pytest.fixture
def clock() -> Clock:
    """A minute ahead of the real time, so rows enqueued with the database's now() during setup are due at once."""
    return Clock(utcnow() + timedelta(minutes=1))


@dataclass
class Outbox:
    db: Database

    async def user(self, n: int, *, channel: bool = True, **settings: Any) -> UUID:
        """A Discord user (id 1000+n), DM channel cached unless told otherwise, with `settings` on their row."""
        user = await resolve_identity(self.db, discord_id=1000 + n)
        values = {"dm_channel_id": 5000 + n if channel else None, **settings}
        async with self.db.system_scope("test.user_settings") as s:
            conn = await raw_connection(s)
            columns = ", ".join(f"{column} = ${i}" for i, column in enumerate(values, start=2))
            await conn.execute(f"UPDATE users SET {columns} WHERE id = $1", user, *values.values())
        return user

    async def add(self, user: UUID, key: str, kind: str = "alert", title: str | None = None) -> int:
        async with self.db.system_scope("test.enqueue") as s:
            new_id = await enqueue(s, user, kind, key, title or f"Alert {key}", f"body of {key}", {"key": key})
        assert new_id is not None
        return new_id

    async def rows(self, where: str = "true", *args: Any) -> list[dict[str, Any]]:
        async with self.db.system_scope("test.read") as s:
            conn = await raw_connection(s)
            recs = await conn.fetch(
                f"SELECT *, next_attempt_at = 'infinity' AS parked FROM notifications WHERE {where} ORDER BY id", *args
            )
        return [dict(r) for r in recs]

    async def users(self, user: UUID) -> dict[str, Any]:
        async with self.db.system_scope("test.read") as s:
            conn = await raw_connection(s)
            rec = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user)
        assert rec is not None
        return dict(rec)


@pytest.fixture
def outbox(db: Database) -> Outbox:
    return Outbox(db)


async def drain(dispatcher: Dispatcher, *, rounds: int = 10_000) -> DispatchStats:
    """Dispatch round after round until a round finds nothing due."""
    total = DispatchStats()
    for _ in range(rounds):
        stats = await dispatcher.dispatch_once()
        total.add(stats)
        if stats.claimed == 0 and stats.held == 0 and stats.parked == 0:
            return total
    raise AssertionError("the outbox never drained")
