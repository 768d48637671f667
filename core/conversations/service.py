"""The agent's short memory: one running conversation per user and channel, read back newest first within a token
budget. Tenant data like everything else (RLS): a user's memory is theirs alone. Nothing here commits.

Tokens are estimated (about four characters each, rounded up), which is what trimming needs: a budget, not a bill.
The bill uses the token counts the model reports (core/billing/usage.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from core.db.database import Scope, scope_connection

CHANNELS = ("discord", "console", "web")
MAX_CONTENT = 20_000


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True)
class Turn:
    role: str  # user | assistant
    content: str


async def current_conversation(scope: Scope, channel: str) -> UUID:
    """The user's conversation on `channel`, started on first use."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    conn = await scope_connection(scope)
    found: UUID | None = await conn.fetchval(
        "SELECT id FROM conversations WHERE channel = $1 ORDER BY updated_at DESC LIMIT 1", channel
    )
    if found is not None:
        return found
    created: UUID = await conn.fetchval(
        "INSERT INTO conversations (user_id, channel) VALUES (nullif(current_setting('app.user_id', true), '')::uuid,"
        " $1) RETURNING id",
        channel,
    )
    return created


async def recent_turns(scope: Scope, conversation_id: UUID, *, max_tokens: int, max_turns: int = 40) -> list[Turn]:
    """The latest user and assistant turns that fit in `max_tokens`, oldest first."""
    conn = await scope_connection(scope)
    rows = await conn.fetch(
        "SELECT role, content, token_count FROM messages WHERE conversation_id = $1 AND role IN ('user', 'assistant')"
        " ORDER BY id DESC LIMIT $2",
        conversation_id,
        max_turns,
    )
    kept: list[Turn] = []
    budget = max_tokens
    for row in rows:
        cost = row["token_count"] or estimate_tokens(row["content"])
        if cost > budget:
            break
        budget -= cost
        kept.append(Turn(row["role"], row["content"]))
    kept.reverse()
    if kept and kept[0].role == "assistant":  # a conversation read back starts with what the user said
        kept.pop(0)
    return kept


async def remember(scope: Scope, conversation_id: UUID, role: str, content: str) -> None:
    """Append a turn (clipped to the table's limit) and mark the conversation as just used."""
    if role not in ("user", "assistant"):
        raise ValueError(f"only user and assistant turns are remembered, not {role!r}")
    text = content if len(content) <= MAX_CONTENT else content[: MAX_CONTENT - 1] + "…"
    conn = await scope_connection(scope)
    await conn.execute(
        "INSERT INTO messages (user_id, conversation_id, role, content, token_count)"
        " VALUES (nullif(current_setting('app.user_id', true), '')::uuid, $1, $2, $3, $4)",
        conversation_id,
        role,
        text,
        estimate_tokens(text),
    )
    await conn.execute("UPDATE conversations SET updated_at = now() WHERE id = $1", conversation_id)
