"""What the database itself says about tenancy: tables, RLS flags, policies and privileges, read from the catalog.

The contract tests are generated from these answers, never from a hand-kept list of tables, so a table added later
without policies, or with a privilege nobody reviewed, fails them.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

SCHEMA = "tradedesk"
USER_ROLE = "tradedesk_user"
SYSTEM_ROLE = "tradedesk_system"
ME = "(SELECT nullif(current_setting('app.user_id', true), '')::uuid)"


@dataclass(frozen=True)
class Policy:
    name: str
    roles: tuple[str, ...]
    cmd: str
    permissive: bool
    using: str | None
    check: str | None


async def tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
        SCHEMA,
    )
    return [r[0] for r in rows]


async def tenant_tables(conn: asyncpg.Connection) -> dict[str, str]:
    """Every table holding a user's data, with its tenant key column: `user_id`, or `id` for users itself."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
        SCHEMA,
    )
    found = {r[0]: "user_id" for r in rows}
    found["users"] = "id"
    return found


async def rls_flags(conn: asyncpg.Connection, table: str) -> tuple[bool, bool]:
    row = await conn.fetchrow(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass", f"{SCHEMA}.{table}"
    )
    return bool(row[0]), bool(row[1])


async def policies(conn: asyncpg.Connection, table: str) -> list[Policy]:
    rows = await conn.fetch(
        "SELECT policyname, roles::text[] AS roles, cmd, permissive = 'PERMISSIVE' AS permissive, qual, with_check "
        "FROM pg_policies WHERE schemaname = $1 AND tablename = $2 ORDER BY policyname",
        SCHEMA,
        table,
    )
    return [
        Policy(r["policyname"], tuple(sorted(r["roles"])), r["cmd"], r["permissive"], r["qual"], r["with_check"])
        for r in rows
    ]


async def user_expression(conn: asyncpg.Connection, key: str) -> str:
    """How Postgres prints the tenant policy's expression for column `key`, for an exact comparison."""
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS _probe ({key} uuid)")
    await conn.execute(f"DROP POLICY IF EXISTS probe ON _probe; CREATE POLICY probe ON _probe USING ({key} = {ME})")
    qual = await conn.fetchval("SELECT qual FROM pg_policies WHERE tablename = '_probe'")
    await conn.execute("DROP TABLE _probe")
    return str(qual)


async def privileges(conn: asyncpg.Connection, role: str = USER_ROLE) -> dict[str, set[str]]:
    """Privileges `role` holds directly on each table of the schema: "SELECT", or "UPDATE(col,col)" per column grant."""
    held: dict[str, set[str]] = {}
    for r in await conn.fetch(
        "SELECT c.relname, a.privilege_type FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "aclexplode(c.relacl) a WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') "
        "AND a.grantee = $2::regrole",
        SCHEMA,
        role,
    ):
        held.setdefault(r[0], set()).add(r[1])
    columns: dict[tuple[str, str], list[str]] = {}
    for r in await conn.fetch(
        "SELECT c.relname, att.attname, a.privilege_type FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute att ON att.attrelid = c.oid, "
        "aclexplode(att.attacl) a WHERE n.nspname = $1 AND a.grantee = $2::regrole ORDER BY att.attname",
        SCHEMA,
        role,
    ):
        columns.setdefault((r[0], r[2]), []).append(r[1])
    for (table, privilege), cols in columns.items():
        held.setdefault(table, set()).add(f"{privilege}({','.join(sorted(cols))})")
    return held


async def sequence_privileges(conn: asyncpg.Connection, role: str = USER_ROLE) -> dict[str, set[str]]:
    held: dict[str, set[str]] = {}
    for r in await conn.fetch(
        "SELECT c.relname, a.privilege_type FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "aclexplode(c.relacl) a WHERE n.nspname = $1 AND c.relkind = 'S' AND a.grantee = $2::regrole",
        SCHEMA,
        role,
    ):
        held.setdefault(r[0], set()).add(r[1])
    return held


async def executable_functions(conn: asyncpg.Connection, role: str = USER_ROLE) -> set[str]:
    rows = await conn.fetch(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = $1 AND has_function_privilege($2, p.oid, 'EXECUTE')",
        SCHEMA,
        role,
    )
    return {r[0] for r in rows}


async def primary_key(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
        f"{SCHEMA}.{table}",
    )
    return [r[0] for r in rows]


async def leading_index_columns(conn: asyncpg.Connection, table: str) -> set[str]:
    """The first column of every index on `table`."""
    rows = await conn.fetch(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = $1::regclass",
        f"{SCHEMA}.{table}",
    )
    return {r[0] for r in rows}


async def tenancy_violations(conn: asyncpg.Connection) -> list[str]:
    """Every way the schema breaks the tenancy rules of DESIGN section 4; empty when it keeps them all."""
    problems: list[str] = []
    for table, key in (await tenant_tables(conn)).items():
        enabled, forced = await rls_flags(conn, table)
        if not enabled:
            problems.append(f"{table}: row level security is not enabled")
        if not forced:
            problems.append(f"{table}: row level security is not forced (the owner would bypass it)")
        if key not in await leading_index_columns(conn, table):
            problems.append(f"{table}: no index leads with {key}")
        expected = await user_expression(conn, key)
        found = await policies(conn, table)
        user_policies = [p for p in found if p.roles == (USER_ROLE,)]
        system_policies = [p for p in found if p.roles == (SYSTEM_ROLE,)]
        if len(found) != 2 or len(user_policies) != 1 or len(system_policies) != 1:
            problems.append(f"{table}: expected exactly one {USER_ROLE} and one {SYSTEM_ROLE} policy, got {found}")
            continue
        user, system = user_policies[0], system_policies[0]
        if not (user.permissive and user.cmd == "ALL" and user.using == expected and user.check == expected):
            problems.append(f"{table}: {USER_ROLE} policy must be ALL USING and WITH CHECK {expected}; got {user}")
        if not (system.permissive and system.cmd == "ALL" and system.using == "true" and system.check == "true"):
            problems.append(f"{table}: {SYSTEM_ROLE} policy must be ALL USING (true) WITH CHECK (true); got {system}")
    return problems
