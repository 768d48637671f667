"""Test harness: one embedded Postgres per session, a migrated template, and a fresh database per test.

Tests connect exactly as the app connects (the NOSUPERUSER login role, role tradedesk_user by default); the
superuser URL is used only to create and drop the per-test databases and in tests that need an administrator.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from core.db.database import Database
from core.db.embedded import EmbeddedPostgres, bootstrap
from core.db.migrate import migrate

TEMPLATE = "tradedesk_template"


class PgCluster:
    def __init__(self, server: EmbeddedPostgres, superuser_url: str):
        self.server = server
        self.superuser_url = superuser_url

    def url(self, database: str, role: str = "tradedesk") -> str:
        return self.server.app_url(login_role=role, database=database)

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.superuser_url)

    async def create_database(self, template: str | None = TEMPLATE) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = await self.admin()
        try:
            if template:
                await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template} OWNER tradedesk STRATEGY FILE_COPY")
                # A database's privileges aren't copied from its template; the migration runner revokes this.
                await conn.execute(f"REVOKE TEMPORARY ON DATABASE {name} FROM PUBLIC")
            else:
                await conn.execute(f"CREATE DATABASE {name} OWNER tradedesk")
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await self.admin()
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[tuple[EmbeddedPostgres, str]]:
    # Not under pytest's tmp_path: a concurrent pytest run prunes old basetemp folders, data dir included.
    data_dir = Path(tempfile.mkdtemp(prefix="tradedesk-test-"))
    server = EmbeddedPostgres(data_dir)
    superuser_url = server.start()
    yield server, superuser_url
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def pg(pg_server: tuple[EmbeddedPostgres, str]) -> PgCluster:
    server, superuser_url = pg_server
    await bootstrap(superuser_url, database=TEMPLATE)
    cluster = PgCluster(server, superuser_url)
    await migrate(cluster.url(TEMPLATE))
    return cluster


@pytest.fixture
async def db_name(pg: PgCluster) -> AsyncIterator[str]:
    name = await pg.create_database()
    yield name
    await pg.drop_database(name)


@pytest.fixture
def db_url(pg: PgCluster, db_name: str) -> str:
    return pg.url(db_name)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url, pool_size=4, max_overflow=4)
    yield database
    await database.dispose()


@pytest.fixture
def migrations_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "migrations"
