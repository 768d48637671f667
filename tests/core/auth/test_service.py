"""Login tokens and web sessions on the real database: one redeem wins, RLS keeps users to their own rows, and
expired rows are purged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.auth.service import (
    InvalidLogin,
    create_session,
    csrf_ok,
    csrf_token,
    digest,
    end_session,
    issue_login_token,
    purge_expired,
    redeem_login_token,
    session_user,
)
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity

NOW = datetime.now(UTC).replace(microsecond=0)


async def test_concurrent_redeems_of_one_link_sign_in_once(db: Database) -> None:
    alice = await resolve_identity(db, console_handle="alice")
    async with db.user_scope(alice) as s:
        token = await issue_login_token(s, alice, NOW)
    results = await asyncio.gather(*(redeem_login_token(db, token, NOW) for _ in range(5)), return_exceptions=True)
    assert results.count(alice) == 1
    assert all(isinstance(r, InvalidLogin) for r in results if r != alice)


async def test_a_user_can_issue_links_and_see_sessions_only_for_themselves(db: Database) -> None:
    alice = await resolve_identity(db, console_handle="alice")
    bob = await resolve_identity(db, console_handle="bob")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with db.user_scope(alice) as s:
            await issue_login_token(s, bob, NOW)

    bobs = await create_session(db, bob, NOW, user_agent="x" * 1000)
    async with db.user_scope(alice) as s:
        conn = await raw_connection(s)
        assert await conn.fetchval("SELECT count(*) FROM web_sessions") == 0
        assert await end_session(s, bobs) is False  # RLS: alice can't log bob out
    assert await session_user(db, bobs, NOW) == bob
    async with db.user_scope(bob) as s:
        agent = await (await raw_connection(s)).fetchval("SELECT user_agent FROM web_sessions")
        assert len(agent) == 300
        assert await end_session(s, bobs) is True
    assert await session_user(db, bobs, NOW) is None


async def test_expired_links_and_sessions_are_purged(db: Database) -> None:
    alice = await resolve_identity(db, console_handle="alice")
    async with db.user_scope(alice) as s:
        old = await issue_login_token(s, alice, NOW)
        fresh = await issue_login_token(s, alice, NOW + timedelta(minutes=5))
    stale = await create_session(db, alice, NOW, ttl=timedelta(hours=1))
    live = await create_session(db, alice, NOW)
    async with db.system_scope("auth.purge") as s:
        assert await purge_expired(s, NOW + timedelta(minutes=12)) == (1, 0)
        assert await purge_expired(s, NOW + timedelta(hours=2)) == (1, 1)
    async with db.system_scope("test.read") as s:
        conn = await raw_connection(s)
        assert await conn.fetchval("SELECT count(*) FROM login_tokens WHERE token_hash = ANY($1)",
                                   [digest(old), digest(fresh)]) == 0  # fmt: skip
    assert await session_user(db, stale, NOW + timedelta(hours=2)) is None
    assert await session_user(db, live, NOW + timedelta(hours=2)) == alice


def test_the_csrf_token_is_bound_to_its_session() -> None:
    assert csrf_ok("session-a", csrf_token("session-a"))
    assert not csrf_ok("session-b", csrf_token("session-a"))
    assert not csrf_ok("session-a", None) and not csrf_ok("session-a", "")
