"""The tenancy contract, generated from the catalog (DESIGN section 4).

For every table with a user_id (and users itself): RLS enabled and forced, exactly the two policies, and an index
leading with the key. The privileges tradedesk_user holds equal the grant matrix below, and each one is exercised:
under user_scope(A), A's own rows work (so a refusal is RLS, not a missing grant), B's rows are invisible to SELECT,
UPDATE and DELETE touch none of them, and an INSERT carrying B's user_id is refused.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from core.db.database import Database
from tests.core.db import catalog
from tests.core.db.world import BUILDERS, World, build_world, insert_sql, raw, seed_reference

# What tradedesk_user may do, table by table. Column lists are column-level grants: a user changes their settings,
# never their identity, cash, fills or plan. Reviewing a change to this matrix is reviewing a security change.
TENANT_GRANTS: dict[str, set[str]] = {
    "users": {
        "SELECT",
        "UPDATE(alerts_muted_until,digest_time,display_currency,display_name,quiet_hours_end,quiet_hours_start,timezone,"
        "updated_at)",
    },
    # Opening portfolios, moving cash and placing or canceling orders go through the SQL functions below.
    "portfolios": {"SELECT", "UPDATE(allow_short,is_default,name)"},
    "orders": {"SELECT"},
    "order_proposals": {"SELECT", "INSERT", "UPDATE(decided_at,status)"},
    "fills": {"SELECT"},
    "cash_ledger": {"SELECT"},
    "positions": {"SELECT"},
    "equity_snapshots": {"SELECT"},
    "alerts": {
        "SELECT",
        "DELETE",
        "INSERT(checked_price,cooldown_seconds,direction,expires_at,kind,note,percent,recurring,reference_price,symbol,"
        "threshold,user_id)",
        "UPDATE(expires_at,note,updated_at)",
    },
    "notifications": {"SELECT", "UPDATE(read_at)"},
    "conversations": {"SELECT", "INSERT", "DELETE", "UPDATE(title,updated_at)"},
    "messages": {"SELECT", "INSERT", "DELETE"},
    "usage_events": {"SELECT", "INSERT(completion_tokens,kind,model,prompt_tokens,quantity,user_id)"},
    "billing_customers": {"SELECT"},
    "subscriptions": {"SELECT"},
    "audit_log": {"SELECT"},
    "login_tokens": {"SELECT", "INSERT(expires_at,token_hash,user_id)"},
    "web_sessions": {"SELECT", "DELETE"},
}
# Global reference data: readable by every user, writable by none.
REFERENCE_GRANTS: dict[str, set[str]] = {
    "instruments": {"SELECT"},
    "last_prices": {"SELECT"},
    "price_bars": {"SELECT"},
}
SEQUENCE_GRANTS = {"messages_id_seq": {"USAGE"}, "usage_events_id_seq": {"USAGE"}}
# SECURITY DEFINER functions that take the user from the scope and validate everything they write.
EXECUTABLE_FUNCTIONS = {"record_audit", "place_order", "cancel_order", "open_portfolio", "move_cash", "reset_portfolio"}
# Tables only system jobs touch; every other table is tenant or reference data.
SYSTEM_ONLY = {"app_state", "schema_migrations", "stripe_events"}


class _Rollback(Exception):
    """Raised to leave a scope without committing what the check wrote."""


@pytest.fixture
async def admin(db_url: str) -> Any:
    conn = await asyncpg.connect(db_url)  # the login role itself, as the migration runner connects
    yield conn
    await conn.close()


@pytest.fixture
async def worlds(db: Database, admin: asyncpg.Connection) -> tuple[World, World]:
    await seed_reference(db)
    keys = {t: await catalog.primary_key(admin, t) for t in BUILDERS}
    return await build_world(db, "a", keys), await build_world(db, "b", keys)


def _split(privilege: str) -> tuple[str, list[str] | None]:
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", privilege)
    assert m
    return m.group(1), (m.group(2).split(",") if m.group(2) else None)


def _where(pk: dict[str, Any]) -> tuple[str, list[Any]]:
    return " AND ".join(f"{c} = ${i}" for i, c in enumerate(pk, 1)), list(pk.values())


async def _as_user(db: Database, world: World, sql: str, *args: Any, fetch: bool = False) -> Any:
    """Run one statement under user_scope(world) and roll it back; return its status (or value)."""
    result: Any = None
    try:
        async with db.user_scope(world.user_id) as s:
            conn = await raw(s)
            result = await (conn.fetchval(sql, *args) if fetch else conn.execute(sql, *args))
            raise _Rollback
    except _Rollback:
        pass
    return result


async def test_every_tenant_table_has_rls_forced_and_the_two_policies(admin: asyncpg.Connection) -> None:
    assert await catalog.tenancy_violations(admin) == []


async def test_the_schema_has_only_known_kinds_of_table(admin: asyncpg.Connection) -> None:
    tenant = await catalog.tenant_tables(admin)
    assert set(REFERENCE_GRANTS).isdisjoint(tenant), "reference tables must not carry user data"
    unclassified = set(await catalog.tables(admin)) - set(tenant) - set(REFERENCE_GRANTS) - SYSTEM_ONLY
    assert unclassified == set(), "classify each new table as tenant (user_id), reference or system-only"


async def test_tradedesk_user_privileges_equal_the_grant_matrix(admin: asyncpg.Connection) -> None:
    held = await catalog.privileges(admin)
    expected = {**TENANT_GRANTS, **REFERENCE_GRANTS}
    assert held == expected
    assert set(TENANT_GRANTS) == set(await catalog.tenant_tables(admin))
    assert await catalog.sequence_privileges(admin) == SEQUENCE_GRANTS
    assert await catalog.executable_functions(admin) == EXECUTABLE_FUNCTIONS
    assert await admin.fetchval("SELECT has_schema_privilege('tradedesk_user', 'tradedesk', 'CREATE')") is False
    for role in ("tradedesk_user", "tradedesk_system"):  # a temp table could shadow ours (pg_temp is searched first)
        assert await admin.fetchval("SELECT has_database_privilege($1, current_database(), 'TEMP')", role) is False


async def test_tradedesk_system_can_work_on_every_table_but_the_migration_log(admin: asyncpg.Connection) -> None:
    held = await catalog.privileges(admin, catalog.SYSTEM_ROLE)
    for table in set(await catalog.tables(admin)) - {"schema_migrations"}:
        assert {"SELECT", "INSERT", "UPDATE", "DELETE"} <= held.get(table, set()), table
    assert "schema_migrations" not in held


async def test_select_shows_own_rows_and_hides_everyone_elses(
    db: Database, admin: asyncpg.Connection, worlds: tuple[World, World]
) -> None:
    a, b = worlds
    for table, key in (await catalog.tenant_tables(admin)).items():
        own = await _as_user(db, a, f"SELECT count(*) FROM {table} WHERE {key} = $1", a.user_id, fetch=True)
        theirs = await _as_user(db, a, f"SELECT count(*) FROM {table} WHERE {key} = $1", b.user_id, fetch=True)
        total = await _as_user(db, a, f"SELECT count(*) FROM {table}", fetch=True)
        assert (own, theirs, total) == (1, 0, 1), f"{table}: own={own} theirs={theirs} total={total}"


async def test_update_touches_own_rows_only(
    db: Database, admin: asyncpg.Connection, worlds: tuple[World, World]
) -> None:
    a, b = worlds
    checked = 0
    for table, privileges in (await catalog.privileges(admin)).items():
        for privilege in privileges:
            kind, columns = _split(privilege)
            if kind != "UPDATE" or table not in TENANT_GRANTS:
                continue
            column = (columns or [c for c in await catalog.primary_key(admin, table)])[0]
            for world, expected in ((a, "UPDATE 1"), (b, "UPDATE 0")):
                where, args = _where(world.pk[table])
                status = await _as_user(db, a, f"UPDATE {table} SET {column} = {column} WHERE {where}", *args)
                assert status == expected, f"{table}.{column} as A on {world.tag}'s row: {status}"
            checked += 1
    assert checked == sum(any(p.startswith("UPDATE") for p in g) for g in TENANT_GRANTS.values())


async def test_delete_touches_own_rows_only(
    db: Database, admin: asyncpg.Connection, worlds: tuple[World, World]
) -> None:
    a, b = worlds
    checked = 0
    for table, privileges in (await catalog.privileges(admin)).items():
        if "DELETE" not in privileges or table not in TENANT_GRANTS:
            continue
        for world, expected in ((a, "DELETE 1"), (b, "DELETE 0")):
            where, args = _where(world.pk[table])
            status = await _as_user(db, a, f"DELETE FROM {table} WHERE {where}", *args)
            assert status == expected, f"{table} as A on {world.tag}'s row: {status}"
        checked += 1
    assert checked == sum("DELETE" in g for g in TENANT_GRANTS.values())


async def test_insert_accepts_own_rows_and_refuses_another_users(
    db: Database, admin: asyncpg.Connection, worlds: tuple[World, World]
) -> None:
    a, b = worlds
    checked = 0
    for table, privileges in (await catalog.privileges(admin)).items():
        insert = [p for p in privileges if p.startswith("INSERT")]
        if not insert or table not in TENANT_GRANTS:
            continue
        assert table in BUILDERS, f"{table}: add a row builder to tests/core/db/world.py"
        _, columns = _split(insert[0])
        pk = await catalog.primary_key(admin, table)

        def values(world: World, columns: list[str] | None = columns, table: str = table) -> dict[str, Any]:
            row = BUILDERS[table](world, 2)
            return row if columns is None else {c: v for c, v in row.items() if c in columns}

        sql, args = insert_sql(table, values(a), pk)
        assert (await _as_user(db, a, sql, *args, fetch=True)) is not None, f"{table}: A can't insert its own row"
        sql, args = insert_sql(table, values(b), pk)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await _as_user(db, a, sql, *args, fetch=True)
        checked += 1
    assert checked == sum(any(p.startswith("INSERT") for p in g) for g in TENANT_GRANTS.values())


async def test_without_a_user_in_scope_nothing_is_visible(
    db: Database, admin: asyncpg.Connection, worlds: tuple[World, World]
) -> None:
    a, _ = worlds
    async with db.engine.connect() as sa_conn:
        conn = (await sa_conn.get_raw_connection()).driver_connection
        assert await conn.fetchval("SELECT current_user") == "tradedesk_user"
        for table in await catalog.tenant_tables(admin):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await conn.execute(
                "INSERT INTO alerts (user_id, symbol, direction, kind, threshold) VALUES ($1, 'AAPL', 'above', "
                "'price', 1)",
                a.user_id,
            )


async def test_a_pooled_connection_carries_nothing_of_the_previous_user(
    db_url: str, admin: asyncpg.Connection, worlds: tuple[World, World]
) -> None:
    a, _ = worlds
    single = Database(db_url, pool_size=1, max_overflow=0)
    try:
        async with single.user_scope(a.user_id) as s:
            conn = await raw(s)
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            assert await conn.fetchval("SELECT count(*) FROM orders") == 1
        async with single.engine.connect() as sa_conn:
            conn = (await sa_conn.get_raw_connection()).driver_connection
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid, "the pool should hand back the same one"
            assert await conn.fetchval("SELECT current_user") == "tradedesk_user"
            assert await conn.fetchval("SELECT coalesce(current_setting('app.user_id', true), '')") == ""
            for table in await catalog.tenant_tables(admin):
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    finally:
        await single.dispose()


async def test_reset_role_lands_on_a_role_that_sees_nothing(
    db: Database, admin: asyncpg.Connection, worlds: tuple[World, World]
) -> None:
    tenant = await catalog.tenant_tables(admin)
    pooled = await db.connect_raw()
    try:
        await pooled.execute("SET ROLE tradedesk_system")
        assert await pooled.fetchval("SELECT count(*) FROM users") == 2  # system does see everyone...
        await pooled.execute("RESET ROLE")
        assert await pooled.fetchval("SELECT current_user") == "tradedesk_user"
        for table in tenant:  # ...and after a reset, nobody
            assert await pooled.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    finally:
        await pooled.close()
    # The login role itself (no startup role) owns the tables, but RLS is forced and it inherits neither role.
    await admin.execute("RESET ROLE")
    assert await admin.fetchval("SELECT current_user") == "tradedesk"
    for table in tenant:
        assert await admin.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_a_table_added_without_policies_breaks_the_contract(admin: asyncpg.Connection) -> None:
    await admin.execute(
        "CREATE TABLE tradedesk.widgets (id int PRIMARY KEY, user_id uuid NOT NULL);"
        "GRANT SELECT ON tradedesk.widgets TO tradedesk_user"
    )
    problems = await catalog.tenancy_violations(admin)
    assert any(p.startswith("widgets: row level security is not enabled") for p in problems)
    assert any(p.startswith("widgets: no index leads with user_id") for p in problems)
    assert any(p.startswith("widgets: expected exactly one") for p in problems)
    assert (await catalog.privileges(admin)).get("widgets") == {"SELECT"} != TENANT_GRANTS.get("widgets")


async def test_a_child_row_cannot_point_at_another_users_parent(db: Database, worlds: tuple[World, World]) -> None:
    """Foreign-key checks skip RLS, so children reference (user_id, id): a guessed id of B's is still refused."""
    a, b = worlds
    row = BUILDERS["order_proposals"](a, 3) | {"portfolio_id": b.id("portfolios")}
    sql, args = insert_sql("order_proposals", row, ["id"])
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await _as_user(db, a, sql, *args, fetch=True)
