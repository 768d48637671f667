"""Writing to the notification outbox: one row per thing to tell a user, in the transaction that causes it.

`enqueue` is usable inside any transaction that may write notifications (system_scope: the alert engine, fills, the
Stripe webhook); the row commits or rolls back with the cause, and the dispatcher delivers it later. A second enqueue
with the same `(user_id, dedupe_key)` does nothing, so a retried cause never notifies twice.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from core.db.database import Scope, scope_connection
from core.live import notify_live

KINDS = frozenset({"alert", "fill", "order", "billing", "system"})
MAX_TITLE = 256
MAX_BODY = 4000

_INSERT = (
    "INSERT INTO notifications (user_id, kind, dedupe_key, title, body, payload, alert_id, next_attempt_at)"
    " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, coalesce($8::timestamptz, now()))"
    " ON CONFLICT (user_id, dedupe_key) DO NOTHING RETURNING id"
)


def _clip(value: str, limit: int) -> str:
    value = value.strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


async def enqueue(
    session: Scope,
    user_id: UUID,
    kind: str,
    dedupe_key: str,
    title: str,
    body: str,
    payload: dict[str, Any] | None = None,
    *,
    alert_id: UUID | None = None,
    not_before: datetime | None = None,
) -> int | None:
    """Add a notification for `user_id`; its id, or None when `(user_id, dedupe_key)` was already enqueued.

    Never commits: the caller's scope owns the transaction. Title and body are clipped to the table's limits (an
    ellipsis marks a cut); an unknown kind or an empty dedupe key, title or body is a programming error.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}; one of {sorted(KINDS)}")
    if not 1 <= len(dedupe_key) <= 200:
        raise ValueError("a notification's dedupe_key is 1-200 characters")
    title, body = _clip(title, MAX_TITLE), _clip(body, MAX_BODY)
    if not title or not body:
        raise ValueError("a notification needs a title and a body")
    conn = await scope_connection(session)
    new_id: int | None = await conn.fetchval(
        _INSERT, user_id, kind, dedupe_key, title, body, json.dumps(payload or {}), alert_id, not_before
    )
    if new_id is not None:
        await notify_live(conn, {user_id: ("inbox",)})  # the user's live inbox, once this commits
    return new_id
