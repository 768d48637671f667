"""The migration runner: idempotent, checksummed, serialised, transactional, and refusing unsafe login roles."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from core.db.embedded import bootstrap
from core.db.migrate import Migration, MigrationError, load_migrations, migrate
from tests.app.procs import clean_env
from tests.conftest import PgCluster

TRADEDESK = Path(sys.executable).parent / "tradedesk"


async def _snapshot(url: str) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT 'col', table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'tradedesk' "
            "UNION ALL SELECT 'policy', tablename, policyname, qual FROM pg_policies WHERE schemaname = 'tradedesk' "
            "UNION ALL SELECT 'migration', name, checksum, applied_at::text FROM tradedesk.schema_migrations "
            "ORDER BY 1, 2, 3"
        )
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


@pytest.fixture
async def empty_db(pg: PgCluster) -> AsyncIterator[str]:
    name = await pg.create_database(template=None)
    yield name
    await pg.drop_database(name)


async def test_migrating_twice_changes_nothing(pg: PgCluster, empty_db: str) -> None:
    url = pg.url(empty_db)
    first = await migrate(url)
    assert first.applied == [m.name for m in load_migrations()] and first.already == []
    before = await _snapshot(url)
    second = await migrate(url)
    assert second.applied == [] and second.already == first.applied
    assert await _snapshot(url) == before


async def test_an_edited_applied_migration_is_refused_by_name(pg: PgCluster, db_name: str) -> None:
    migrations = load_migrations()
    edited = Migration(migrations[2].name, migrations[2].sql + "\nCREATE TABLE sneaky (id int);\n")
    with pytest.raises(MigrationError, match=f"migration {migrations[2].name} was edited after it was applied"):
        await migrate(pg.url(db_name), [*migrations[:2], edited, *migrations[3:]])
    conn = await asyncpg.connect(pg.url(db_name))
    try:
        assert await conn.fetchval("SELECT to_regclass('tradedesk.sneaky')") is None
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(pg: PgCluster, db_name: str) -> None:
    bad = Migration("9999_broken.sql", "CREATE TABLE half_done (id int);\nSELECT 1 / 0;\n")
    with pytest.raises(MigrationError, match=r"9999_broken\.sql failed: division by zero"):
        await migrate(pg.url(db_name), [*load_migrations(), bad])
    conn = await asyncpg.connect(pg.url(db_name))
    try:
        assert await conn.fetchval("SELECT to_regclass('tradedesk.half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM tradedesk.schema_migrations WHERE name LIKE '9999%'") == 0
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_do_not_collide(pg: PgCluster, empty_db: str) -> None:
    env = clean_env(DATABASE_URL=pg.url(empty_db))

    async def run() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            str(TRADEDESK), "migrate", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    results = await asyncio.gather(run(), run(), run())
    assert [rc for rc, _ in results] == [0, 0, 0], results
    logs = "".join(out for _, out in results)
    for migration in load_migrations():
        assert logs.count(f"migration applied: {migration.name}") == 1, logs
    conn = await asyncpg.connect(pg.url(empty_db))
    try:
        assert await conn.fetchval("SELECT count(*) FROM tradedesk.schema_migrations") == len(load_migrations())
    finally:
        await conn.close()


async def test_bootstrapping_a_second_database_on_the_same_server_works(pg: PgCluster) -> None:
    name = f"second_{uuid.uuid4().hex[:8]}"
    try:
        await bootstrap(pg.superuser_url, database=name)
        await bootstrap(pg.superuser_url, database=name)  # and again: idempotent
        report = await migrate(pg.url(name))
        assert report.applied == [m.name for m in load_migrations()]
    finally:
        await pg.drop_database(name)


@pytest.fixture
async def login_role(pg: PgCluster) -> AsyncIterator[str]:
    role = f"login_{uuid.uuid4().hex[:8]}"
    yield role
    admin = await pg.admin()
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {role}; DROP ROLE IF EXISTS {role}_via")
    finally:
        await admin.close()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("CREATE ROLE {r} LOGIN SUPERUSER", "is a superuser, which skips row-level security"),
        ("CREATE ROLE {r} LOGIN BYPASSRLS", "has BYPASSRLS, which skips row-level security; run ALTER ROLE {r}"),
        (
            "CREATE ROLE {r} LOGIN; GRANT tradedesk_user TO {r} WITH INHERIT FALSE, SET TRUE;"
            "GRANT tradedesk_system TO {r} WITH INHERIT TRUE, SET TRUE",
            "inherits tradedesk_system, so a connection whose role was reset would keep its privileges; "
            "run REVOKE tradedesk_system FROM {r}",
        ),
        (
            "CREATE ROLE {r}_via NOLOGIN; GRANT tradedesk_user TO {r}_via; "
            "CREATE ROLE {r} LOGIN; GRANT {r}_via TO {r} WITH INHERIT TRUE",
            "inherits tradedesk_user",
        ),
        ("CREATE ROLE {r} LOGIN", "can't SET ROLE tradedesk_user; run GRANT tradedesk_user TO {r} WITH INHERIT FALSE"),
    ],
    ids=["superuser", "bypassrls", "inherits-system", "inherits-user-indirectly", "no-set"],
)
async def test_an_unsafe_login_role_is_refused_with_the_fix(
    pg: PgCluster, empty_db: str, login_role: str, setup: str, message: str
) -> None:
    admin = await pg.admin()
    try:
        await admin.execute(setup.format(r=login_role))
    finally:
        await admin.close()
    with pytest.raises(MigrationError, match=message.format(r=login_role).replace("(", r"\(")):
        await migrate(pg.url(empty_db, role=login_role))
    conn = await asyncpg.connect(pg.url(empty_db))
    try:
        assert await conn.fetchval("SELECT to_regnamespace('tradedesk')") is None, "nothing may be created"
    finally:
        await conn.close()


async def test_the_bootstrapped_login_role_is_safe(pg: PgCluster) -> None:
    admin = await pg.admin()
    try:
        row = await admin.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolinherit, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = 'tradedesk'"
        )
        assert tuple(row) == (False, False, False, False, False)
        grants = await admin.fetch(
            "SELECT m.roleid::regrole::text AS role, m.inherit_option, m.set_option FROM pg_auth_members m "
            "WHERE m.member = 'tradedesk'::regrole ORDER BY 1"
        )
        assert [tuple(g) for g in grants] == [("tradedesk_system", False, True), ("tradedesk_user", False, True)]
    finally:
        await admin.close()
