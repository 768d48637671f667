"""user_scope, system_scope and resolve_identity against the real database."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from core.db.database import Database, run_sql
from core.db.identity import resolve_identity
from core.errors import InvalidInput


async def test_resolve_identity_creates_once_and_returns_the_same_id(db: Database) -> None:
    first = await resolve_identity(db, discord_id=53908232506183680, display_name="Ada")
    again = await resolve_identity(db, discord_id=53908232506183680)
    other = await resolve_identity(db, console_handle="Ada")
    assert first == again
    assert other != first
    assert await resolve_identity(db, console_handle="  ada ") == other


async def test_concurrent_first_contact_creates_one_user(db: Database) -> None:
    ids = await asyncio.gather(*(resolve_identity(db, discord_id=4242) for _ in range(8)))
    assert len(set(ids)) == 1
    async with db.system_scope("test.count_users") as s:
        count = (await run_sql(s, text("SELECT count(*) FROM users WHERE discord_id = 4242"))).scalar_one()
    assert count == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"discord_id": 0},
        {"discord_id": -5},
        {"discord_id": 2**63},
        {"discord_id": True},
        {"console_handle": ""},
        {"console_handle": "has space"},
        {"console_handle": "x" * 33},
        {"console_handle": "ünicode"},
        {"console_handle": "-leading"},
    ],
)
async def test_resolve_identity_rejects_bad_identities_and_writes_nothing(db: Database, kwargs: dict) -> None:
    with pytest.raises(InvalidInput):
        await resolve_identity(db, **kwargs)
    async with db.system_scope("test.count_users") as s:
        assert (await run_sql(s, text("SELECT count(*) FROM users"))).scalar_one() == 0


async def test_resolve_identity_needs_exactly_one_identity(db: Database) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await resolve_identity(db)
    with pytest.raises(ValueError, match="exactly one"):
        await resolve_identity(db, discord_id=1, console_handle="a")


async def test_user_scope_sets_role_and_user_for_the_transaction_only(db: Database) -> None:
    uid = await resolve_identity(db, console_handle="alice")
    async with db.user_scope(uid) as s:
        row = (await run_sql(s, text("SELECT current_user, current_setting('app.user_id', true)"))).one()
    assert row == ("tradedesk_user", str(uid))
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT current_user, coalesce(current_setting('app.user_id', true), '')"))
        ).one()
    assert row == ("tradedesk_user", "")


async def test_user_scope_rolls_back_on_error(db: Database) -> None:
    uid = await resolve_identity(db, console_handle="alice")
    with pytest.raises(RuntimeError):
        async with db.user_scope(uid) as s:
            await run_sql(s, text("UPDATE users SET timezone = 'Europe/Paris' WHERE id = :id"), {"id": uid})
            raise RuntimeError("boom")
    async with db.user_scope(uid) as s:
        assert (await run_sql(s, text("SELECT timezone FROM users"))).scalar_one() == "UTC"


async def test_user_scope_refuses_a_non_uuid(db: Database) -> None:
    with pytest.raises(TypeError):
        async with db.user_scope(str(uuid.uuid4())):  # type: ignore[arg-type]
            pass


async def test_system_scope_needs_a_named_reason(db: Database) -> None:
    with pytest.raises(ValueError):
        async with db.system_scope(""):
            pass
    async with db.system_scope("alerts.engine") as s:
        row = (await run_sql(s, text("SELECT current_user, current_setting('app.system_reason')"))).one()
    assert row == ("tradedesk_system", "alerts.engine")


async def test_record_audit_writes_for_the_scoped_user_only(db: Database) -> None:
    alice = await resolve_identity(db, console_handle="alice")
    async with db.user_scope(alice) as s:
        await run_sql(s, text("SELECT record_audit('order.confirmed', '{\"order\": 1}'::jsonb)"))
        rows = (await run_sql(s, text("SELECT user_id, actor, action FROM audit_log"))).all()
    assert rows == [(alice, "user", "order.confirmed")]
    async with db.engine.connect() as conn:  # no user in scope: the function can't write an orphan row
        with pytest.raises(Exception, match="null value"):
            await conn.execute(text("SELECT record_audit('x')"))


async def test_user_connection_is_the_same_scope_on_the_bare_connection(db: Database) -> None:
    alice = await resolve_identity(db, console_handle="alice")
    bob = await resolve_identity(db, console_handle="bob")
    async with db.user_connection(alice) as conn:
        assert await conn.fetchval("SELECT current_user") == "tradedesk_user"
        assert await conn.fetchval("SELECT current_setting('app.user_id')") == str(alice)
        assert await conn.fetchval("SELECT count(*) FROM users") == 1
        assert await conn.fetchval("SELECT count(*) FROM users WHERE id = $1", bob) == 0
    with pytest.raises(RuntimeError):
        async with db.user_connection(alice) as conn:
            await conn.execute("UPDATE users SET timezone = 'Asia/Tokyo'")
            raise RuntimeError("boom")
    async with db.user_scope(alice) as s:
        assert (await run_sql(s, text("SELECT timezone FROM users"))).scalar_one() == "UTC"
    async with db.engine.connect() as sa_conn:  # the pooled connection afterwards: nobody's
        conn = (await sa_conn.get_raw_connection()).driver_connection
        assert await conn.fetchval("SELECT coalesce(current_setting('app.user_id', true), '')") == ""
        assert await conn.fetchval("SELECT count(*) FROM users") == 0
    with pytest.raises(TypeError):
        async with db.user_connection(str(alice)):  # type: ignore[arg-type]
            pass


async def test_system_connection_is_system_scope_on_the_bare_connection(db: Database) -> None:
    alice = await resolve_identity(db, console_handle="alice")
    await resolve_identity(db, console_handle="bob")
    with pytest.raises(ValueError):
        async with db.system_connection("Robert'); DROP TABLE users; --"):
            pass
    async with db.system_connection("billing.stripe_event") as conn:
        assert await conn.fetchval("SELECT current_user") == "tradedesk_system"
        assert await conn.fetchval("SELECT current_setting('app.system_reason')") == "billing.stripe_event"
        assert await conn.fetchval("SELECT current_setting('app.user_id')") == ""
        assert await conn.fetchval("SELECT count(*) FROM users") == 2
    with pytest.raises(RuntimeError):
        async with db.system_connection("test.rollback") as conn:
            await conn.execute("UPDATE users SET timezone = 'Asia/Tokyo'")
            raise RuntimeError("boom")
    async with db.user_scope(alice) as s:
        assert (await run_sql(s, text("SELECT timezone FROM users"))).scalar_one() == "UTC"
    async with db.engine.connect() as sa_conn:  # the pooled connection afterwards: back to tradedesk_user, nobody's
        conn = (await sa_conn.get_raw_connection()).driver_connection
        assert await conn.fetchval("SELECT current_user") == "tradedesk_user"
        assert await conn.fetchval("SELECT coalesce(current_setting('app.system_reason', true), '')") == ""
        assert await conn.fetchval("SELECT count(*) FROM users") == 0


async def test_the_app_roles_cannot_create_temporary_tables(db: Database) -> None:
    """pg_temp is searched before our schema: a temp table named like ours could shadow it for a definer function or
    for the next transaction on the same pooled connection. The roles have no TEMP privilege at all."""
    alice = await resolve_identity(db, console_handle="alice")
    with pytest.raises(Exception, match="permission denied to create temporary tables"):
        async with db.user_connection(alice) as conn:
            await conn.execute("CREATE TEMP TABLE last_prices (symbol text, price numeric)")
    with pytest.raises(Exception, match="permission denied to create temporary tables"):
        async with db.system_scope("test.temp") as s:
            await run_sql(s, text("CREATE TEMP TABLE notifications (id int)"))


async def test_bare_connections_beyond_the_pool_are_closed_cleanly(
    db_url: str, pg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An overflow connection is closed when it comes back to a full pool: SQLAlchemy's asyncpg adapter does that
    through a greenlet, so the bare-connection scopes must check in inside one (else: MissingGreenlet, logged and
    the connection left open)."""
    small = Database(db_url, pool_size=1, max_overflow=2, application_name="overflow-test")
    try:
        alice = await resolve_identity(small, console_handle="alice")
        held = asyncio.Event()

        async def hold(kind: str) -> None:
            scope = small.user_connection(alice) if kind == "user" else small.system_connection("test.overflow")
            async with scope as conn:
                await conn.fetchval("SELECT 1")
                await held.wait()

        tasks = [asyncio.create_task(hold(k)) for k in ("user", "system", "user")]
        await asyncio.sleep(0.2)
        held.set()
        await asyncio.gather(*tasks)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        admin = await pg.admin()
        try:
            open_now = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'overflow-test'"
            )
        finally:
            await admin.close()
        assert open_now == 1  # the pool's one; the two overflow connections were closed
    finally:
        await small.dispose()


async def test_a_dead_connection_is_not_handed_out_again(db_url: str, pg: Any) -> None:
    single = Database(db_url, pool_size=1, max_overflow=0)
    try:
        alice = await resolve_identity(single, console_handle="alice")
        async with single.user_connection(alice) as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        admin = await pg.admin()
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(Exception):  # noqa: B017 -- whatever the driver raises for a connection that died
            async with single.user_connection(alice) as conn:
                await conn.fetchval("SELECT 1")
        async with single.user_connection(alice) as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await single.dispose()
