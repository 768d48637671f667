"""The cluster-wide roles TradeDesk relies on, and the SQL that creates them.

Roles belong to the cluster, not to a database, so they are made at bootstrap (idempotently: a second database on the
same server must not fail), never by a migration. The embedded default runs this SQL with its superuser; for an
external database `tradedesk bootstrap-sql` prints it for an operator to run once.
"""

from __future__ import annotations

import re

USER_ROLE = "tradedesk_user"
SYSTEM_ROLE = "tradedesk_system"
SCHEMA = "tradedesk"
DEFAULT_LOGIN_ROLE = "tradedesk"

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(name: str, what: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{what} {name!r} must be a lowercase SQL identifier (letters, digits, underscore)")
    return name


def bootstrap_sql(login_role: str = DEFAULT_LOGIN_ROLE, database: str | None = None) -> str:
    """SQL that creates the two NOLOGIN roles and the login role and grants them WITH INHERIT FALSE.

    The login role is NOSUPERUSER and NOBYPASSRLS (either would skip RLS even under FORCE), and holds the two roles
    without inheriting them: it may `SET ROLE` to each (what user_scope and system_scope do) but a connection whose
    role was reset gets none of their privileges. Running it again changes nothing.
    """
    check_identifier(login_role, "login role")
    lines = [
        "-- TradeDesk bootstrap: run once per Postgres cluster as a role that may create roles (idempotent).",
        "DO $$",
        "BEGIN",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{USER_ROLE}') THEN",
        f"    CREATE ROLE {USER_ROLE} NOLOGIN;",
        "  END IF;",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SYSTEM_ROLE}') THEN",
        f"    CREATE ROLE {SYSTEM_ROLE} NOLOGIN;",
        "  END IF;",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login_role}') THEN",
        f"    CREATE ROLE {login_role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;",
        "  END IF;",
        "END",
        "$$;",
        f"GRANT {USER_ROLE} TO {login_role} WITH INHERIT FALSE, SET TRUE;",
        f"GRANT {SYSTEM_ROLE} TO {login_role} WITH INHERIT FALSE, SET TRUE;",
    ]
    if database is not None:
        check_identifier(database, "database")
        lines.append(f"GRANT CONNECT, CREATE ON DATABASE {database} TO {login_role};")
        # No temporary tables for the app's roles: pg_temp is searched first and could shadow our tables.
        lines.append(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC;")
    return "\n".join(lines) + "\n"
