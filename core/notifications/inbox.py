"""A user's notification inbox: what the bot sent (or holds back, or couldn't deliver), newest first, and read marks.

Read through the user's own scope: RLS shows a user their own notifications only, and users may set read_at and
nothing else (grants of migration 0004). Coalesced members of a burst are shown inside their group's message, so the
inbox lists only the messages a user actually receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.db.database import Scope, scope_connection

INBOX_LIMIT = 50


@dataclass(frozen=True)
class InboxItem:
    id: int
    kind: str  # alert | fill | order | billing | system
    title: str
    body: str
    status: str  # pending (waiting to be sent) | sent | failed
    created_at: datetime
    read: bool


@dataclass(frozen=True)
class Inbox:
    items: list[InboxItem]
    unread: int


async def read_inbox(scope: Scope, limit: int = INBOX_LIMIT) -> Inbox:
    conn = await scope_connection(scope)
    rows = await conn.fetch(
        "SELECT id, kind, title, body, status, created_at, read_at IS NOT NULL AS read FROM notifications"
        " WHERE status <> 'coalesced' ORDER BY created_at DESC, id DESC LIMIT $1",
        limit,
    )
    unread = await conn.fetchval("SELECT count(*) FROM notifications WHERE status <> 'coalesced' AND read_at IS NULL")
    return Inbox([InboxItem(**dict(r)) for r in rows], unread)


async def mark_all_read(scope: Scope, now: datetime) -> int:
    """Mark every unread notification read; returns how many were."""
    conn = await scope_connection(scope)
    status = await conn.execute("UPDATE notifications SET read_at = $1 WHERE read_at IS NULL", now)
    return int(status.rsplit(" ", 1)[1])
