"""Dashboard sign-in: one-time login tokens (the link /dashboard gives) and web sessions (the cookie).

Both are random URL-safe secrets handed to the user once; the database keeps only their SHA-256, so a leaked table
signs nobody in. A user asks for a login link for themselves, in their own user_scope. Redeeming it, and finding the
user behind a session cookie, must work before we know who is asking: those are small named system_scope paths
("auth.redeem_login", "auth.create_session", "auth.session_lookup") that return a user id and nothing else, like
resolve_identity. Logging out runs in the user's own scope (tradedesk_user may DELETE its own sessions).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import text

from core.db.database import Database, Scope, run_sql, scope_connection
from core.errors import DomainError

LOGIN_TTL = timedelta(minutes=10)
SESSION_TTL = timedelta(days=7)
SEEN_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often: a page view is not a write
_TOKEN_BYTES = 32
_MAX_TOKEN_CHARS = 128  # token_urlsafe(32) is 43 characters; anything much longer is not ours
_MAX_USER_AGENT = 300


class InvalidLogin(DomainError):
    """An expired, used or unknown login link. The message never says which (a guesser learns nothing)."""

    code = "invalid_login"


LOGIN_REJECTED = "This sign-in link has expired or was already used. Run /dashboard in Discord for a new one."


def new_secret() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


def digest(token: str) -> bytes:
    """What the database stores for a token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def _plausible(token: str) -> bool:
    return 0 < len(token) <= _MAX_TOKEN_CHARS and token.isascii()


def csrf_token(session_token: str) -> str:
    """The per-session CSRF token for forms: an HMAC keyed by the session secret, which only the cookie holds (a
    cross-site page can neither read the cookie nor compute this), so no server-side secret or storage is needed."""
    return hmac.new(session_token.encode(), b"tradedesk.csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(csrf_token(session_token), submitted)


async def issue_login_token(scope: Scope, user_id: UUID, now: datetime, ttl: timedelta = LOGIN_TTL) -> str:
    """A one-time login token for the scope's own user (RLS refuses any other user id); only its hash is stored."""
    if ttl <= timedelta(0):
        raise ValueError("a login token's ttl must be positive")
    token = new_secret()
    conn = await scope_connection(scope)
    await conn.execute(
        "INSERT INTO login_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        digest(token),
        user_id,
        now + ttl,
    )
    return token


async def redeem_login_token(db: Database, token: str, now: datetime) -> UUID:
    """The user a login token belongs to, marking it used: once, atomically (two concurrent redeems: one wins).

    Expired, used or unknown tokens raise InvalidLogin and write nothing.
    """
    if not _plausible(token):
        raise InvalidLogin(LOGIN_REJECTED)
    async with db.system_scope("auth.redeem_login") as s:
        row = (
            await run_sql(
                s,
                text(
                    "UPDATE login_tokens SET used_at = :now"
                    " WHERE token_hash = :hash AND used_at IS NULL AND expires_at > :now RETURNING user_id"
                ),
                {"now": now, "hash": digest(token)},
            )
        ).one_or_none()
    if row is None:
        raise InvalidLogin(LOGIN_REJECTED)
    user_id: UUID = row.user_id
    return user_id


async def create_session(
    db: Database, user_id: UUID, now: datetime, ttl: timedelta = SESSION_TTL, user_agent: str | None = None
) -> str:
    """A new web session for a user just signed in; returns the cookie's secret (only its hash is stored)."""
    if ttl <= timedelta(0):
        raise ValueError("a session's ttl must be positive")
    token = new_secret()
    agent = (user_agent or "")[:_MAX_USER_AGENT] or None
    async with db.system_scope("auth.create_session") as s:
        await run_sql(
            s,
            text(
                "INSERT INTO web_sessions (session_hash, user_id, created_at, expires_at, last_seen_at, user_agent)"
                " VALUES (:hash, :uid, :now, :expires, :now, :agent)"
            ),
            {"hash": digest(token), "uid": user_id, "now": now, "expires": now + ttl, "agent": agent},
        )
    return token


async def session_user(db: Database, token: str, now: datetime) -> UUID | None:
    """The user of a live session cookie, or None (unknown, expired or logged out). Marks it seen, at most once a
    minute."""
    if not _plausible(token):
        return None
    # The bare connection: every dashboard request (and the live socket's handshake) starts here.
    async with db.system_connection("auth.session_lookup") as conn:
        row = await conn.fetchrow(
            "SELECT user_id, last_seen_at FROM web_sessions WHERE session_hash = $1 AND expires_at > $2",
            digest(token),
            now,
        )
        if row is None:
            return None
        if now - row["last_seen_at"] >= SEEN_EVERY:
            await conn.execute("UPDATE web_sessions SET last_seen_at = $2 WHERE session_hash = $1", digest(token), now)
    user_id: UUID = row["user_id"]
    return user_id


async def end_session(scope: Scope, token: str) -> bool:
    """Log out: delete the session in its user's own scope (RLS keeps it to their sessions). True if one ended."""
    if not _plausible(token):
        return False
    conn = await scope_connection(scope)
    deleted: str = await conn.execute("DELETE FROM web_sessions WHERE session_hash = $1", digest(token))
    return deleted != "DELETE 0"


async def purge_expired(scope: Scope, now: datetime) -> tuple[int, int]:
    """Delete login tokens and sessions past their expiry (the worker's "auth.purge" job, in system_scope): a
    used or expired link is worthless, and the table would otherwise grow by one row per /dashboard forever."""
    conn = await scope_connection(scope)
    tokens: str = await conn.execute("DELETE FROM login_tokens WHERE expires_at <= $1", now)
    sessions: str = await conn.execute("DELETE FROM web_sessions WHERE expires_at <= $1", now)
    return int(tokens.split()[-1]), int(sessions.split()[-1])
