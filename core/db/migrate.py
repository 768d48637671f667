"""The migration runner: plain SQL files in migrations/, applied in order, each in its own transaction.

It runs on its own connection as the login role (the schema owner), under a Postgres advisory lock so that two
processes migrating at once take turns, and records each file's name and SHA-256. A file changed after it was
applied is refused: put the change in a new migration. Before anything, it checks the login role can't skip RLS.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from core.db.connect import connect
from core.db.roles import SCHEMA, SYSTEM_ROLE, USER_ROLE
from core.errors import SetupError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Advisory locks are per database, so two databases on one server migrate independently.
_MIGRATION_LOCK = 0x7D_7D_0002


class MigrationError(SetupError):
    pass


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    if not files:
        raise MigrationError(f"no migrations found in {directory}; is this a complete checkout?")
    return [Migration(f.name, f.read_text(encoding="utf-8")) for f in files]


async def check_login_role(conn: asyncpg.Connection) -> None:
    """Refuse a login role that would make RLS meaningless, saying how to fix it."""
    row = await conn.fetchrow(
        "SELECT current_user AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    )
    name = row["name"]
    if row["rolsuper"]:
        raise MigrationError(
            f"login role {name} is a superuser, which skips row-level security; connect as a NOSUPERUSER role "
            f"(see `tradedesk bootstrap-sql`)"
        )
    if row["rolbypassrls"]:
        raise MigrationError(
            f"login role {name} has BYPASSRLS, which skips row-level security; run ALTER ROLE {name} NOBYPASSRLS "
            f"or connect as the role `tradedesk bootstrap-sql` creates"
        )
    missing = [
        r for r in (USER_ROLE, SYSTEM_ROLE) if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", r)
    ]
    if missing:
        raise MigrationError(
            f"role(s) {', '.join(missing)} missing on this server; run the SQL from `tradedesk bootstrap-sql` once "
            f"as an administrator"
        )
    for role in (USER_ROLE, SYSTEM_ROLE):
        # USAGE: holds the role's privileges without SET ROLE, i.e. inherits it (directly or through another role).
        if await conn.fetchval("SELECT pg_has_role(current_user, $1, 'USAGE')", role):
            raise MigrationError(
                f"login role {name} inherits {role}, so a connection whose role was reset would keep its "
                f"privileges; run REVOKE {role} FROM {name}; GRANT {role} TO {name} WITH INHERIT FALSE, SET TRUE;"
            )
        if not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'SET')", role):
            raise MigrationError(
                f"login role {name} can't SET ROLE {role}; run GRANT {role} TO {name} WITH INHERIT FALSE, SET TRUE;"
            )


async def check_no_temp_tables(conn: asyncpg.Connection) -> None:
    """The app's roles must not create temporary tables: pg_temp is searched before other schemas, so a temp table
    named like ours could shadow it, in a later transaction on the same pooled connection too. Postgres grants TEMP on
    every database to PUBLIC by default; the database's owner can revoke it, so we do when we own it."""
    if not await conn.fetchval(
        "SELECT has_database_privilege($1, current_database(), 'TEMP')"
        " OR has_database_privilege($2, current_database(), 'TEMP')",
        USER_ROLE,
        SYSTEM_ROLE,
    ):
        return
    database = await conn.fetchval("SELECT current_database()")
    if await conn.fetchval(
        "SELECT pg_get_userbyid(datdba) = current_user FROM pg_database WHERE datname = $1", database
    ):
        await conn.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        log.info("revoked TEMPORARY on database %s from PUBLIC", database)
        return
    raise MigrationError(
        f"tradedesk_user or tradedesk_system may create temporary tables in database {database}; as its owner run "
        f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC (see `tradedesk bootstrap-sql`)'
    )


async def migrate(url: str, migrations: list[Migration] | None = None) -> MigrationReport:
    """Apply every migration not yet applied. Running it again changes nothing."""
    migrations = load_migrations() if migrations is None else migrations
    report = MigrationReport()
    conn = await connect(url)
    try:
        await check_login_role(conn)
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            # Under the lock: two processes revoking at once fail with "tuple concurrently updated" (pg_database).
            await check_no_temp_tables(conn)
            await conn.execute(
                f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = await conn.fetch(f"SELECT name, checksum FROM {SCHEMA}.schema_migrations")
            applied = {r["name"]: r["checksum"] for r in rows}
            known = {m.name for m in migrations}
            for name in sorted(set(applied) - known):
                log.warning("migration %s is applied in the database but unknown to this version", name)
            for migration in migrations:
                recorded = applied.get(migration.name)
                if recorded is not None:
                    if recorded != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was edited after it was applied (checksum differs); "
                            f"restore the original file and put the change in a new migration"
                        )
                    report.already.append(migration.name)
                    continue
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path = {SCHEMA}")
                    try:
                        await conn.execute(migration.sql)
                    except asyncpg.PostgresError as exc:
                        raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
                    await conn.execute(
                        f"INSERT INTO {SCHEMA}.schema_migrations (name, checksum) VALUES ($1, $2)",
                        migration.name,
                        migration.checksum,
                    )
                log.info("migration applied: %s", migration.name)
                report.applied.append(migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return report
