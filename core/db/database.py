"""The pool, and the only two ways a transaction gets an identity: `user_scope` and `system_scope`.

Every pooled connection logs in as the login role with `role=tradedesk_user` in its startup parameters, so the
session's default role is tradedesk_user: even after `RESET ROLE`, code that forgot to open a scope sees no tenant's
rows. A scope is one transaction whose first statement sets the role and the user id with `set_config(..., true)`,
which Postgres undoes at COMMIT or ROLLBACK: nothing of one user survives into the next use of the connection.

The transport (command, tool dispatcher, HTTP handler, job) opens the scope and so owns the transaction: it commits
when the block ends and rolls back on an exception. Core services take the session and never commit.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
from sqlalchemy import Executable, Result, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import greenlet_spawn
from sqlmodel.ext.asyncio.session import AsyncSession

from core.db.roles import SCHEMA, SYSTEM_ROLE, USER_ROLE

log = logging.getLogger(__name__)

# What a database that went away (restart, failover, a killed backend) raises through asyncpg or SQLAlchemy:
# callers that can retry later catch these.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    SQLAlchemyError,
)

_SCOPE_SQL = text(
    "SELECT set_config('role', :role, true), set_config('app.user_id', :uid, true),"
    " set_config('app.system_reason', :reason, true)"
)
_REASON = re.compile(r"^[a-z][a-z0-9_.:-]{2,63}$")


async def run_sql(session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None) -> Result[Any]:
    """Run a Core statement (e.g. `text(...)`) in the session's transaction; `session.exec` is for typed selects."""
    conn = await session.connection()
    return await conn.execute(statement, params)


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a scope's session, inside the scope's transaction.

    For hot paths that call one SQL function with asyncpg's own types and errors (no ORM round trip).
    """
    conn = await session.connection()
    dbapi = await conn.get_raw_connection()
    driver: asyncpg.Connection = dbapi.driver_connection
    return driver


# What core services take as their first argument: a user_scope/system_scope session, or user_connection's connection.
Scope: TypeAlias = AsyncSession | asyncpg.Connection


async def scope_connection(scope: Scope) -> asyncpg.Connection:
    """The asyncpg connection of either kind of scope."""
    return scope if isinstance(scope, asyncpg.Connection) else await raw_connection(scope)


class Database:
    """An async SQLAlchemy engine over asyncpg connections made exactly as the app must connect."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10, application_name: str = "tradedesk"):
        self.url = url
        self._server_settings = {
            "role": USER_ROLE,
            # pg_temp named last: otherwise it is searched first, and a temp table could shadow ours.
            "search_path": f"{SCHEMA}, pg_temp",
            "application_name": application_name,
        }

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(url, server_settings=self._server_settings)

        self.engine: AsyncEngine = create_async_engine(
            "postgresql+asyncpg://",
            async_creator=connect,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    async def connect_raw(self, **kwargs: Any) -> asyncpg.Connection:
        """A dedicated asyncpg connection made like the pooled ones (for LISTEN, advisory locks, benches)."""
        return await asyncpg.connect(self.url, server_settings=self._server_settings, **kwargs)

    @asynccontextmanager
    async def user_scope(self, user_id: UUID) -> AsyncIterator[AsyncSession]:
        """One transaction as tradedesk_user for `user_id`: RLS shows and accepts only that user's rows."""
        if not isinstance(user_id, UUID):
            raise TypeError(f"user_scope needs a UUID from resolve_identity, got {type(user_id).__name__}")
        async with self._sessions() as session, session.begin():
            await run_sql(session, _SCOPE_SQL, {"role": USER_ROLE, "uid": str(user_id), "reason": ""})
            yield session

    @asynccontextmanager
    async def user_connection(self, user_id: UUID) -> AsyncIterator[asyncpg.Connection]:
        """user_scope for hot paths: the same transaction and identity, on the bare asyncpg connection.

        No ORM session is built (it costs more CPU than a paper order's whole SQL work), and BEGIN travels with the
        scope in one round trip, as `SET LOCAL` (what `set_config(..., true)` does, undone at COMMIT or ROLLBACK)
        rather than a SELECT: utility statements need no planning and send no row back. Use it where plain SQL is
        all the work and it runs often (placing an order; valuing a portfolio for every dashboard page).
        """
        if not isinstance(user_id, UUID):
            raise TypeError(f"user_connection needs a UUID from resolve_identity, got {type(user_id).__name__}")
        # str(UUID) is hex digits and dashes only, so it is safe inside the literal.
        async with self._bare(f"BEGIN; SET LOCAL ROLE {USER_ROLE}; SET LOCAL app.user_id = '{user_id}'") as conn:
            yield conn

    @asynccontextmanager
    async def system_connection(self, reason: str) -> AsyncIterator[asyncpg.Connection]:
        """system_scope for hot paths (the Stripe webhook): the same transaction and role, on the bare asyncpg
        connection, BEGIN and the scope in one round trip (see `user_connection`)."""
        if not _REASON.match(reason):
            raise ValueError(f"system_connection reason must be a short lowercase name, got {reason!r}")
        # _REASON allows [a-z0-9_.:-] only, so the reason is safe inside the literal.
        scope = (
            f"BEGIN; SET LOCAL ROLE {SYSTEM_ROLE}; SET LOCAL app.user_id = ''; SET LOCAL app.system_reason = '{reason}'"
        )
        async with self._bare(scope) as conn:
            yield conn

    @asynccontextmanager
    async def _bare(self, begin: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection inside a transaction opened by `begin`; COMMIT on exit, ROLLBACK on error."""
        pooled = await self.engine.raw_connection()  # the same pool as the sessions, minus the Connection layer
        conn: asyncpg.Connection = pooled.driver_connection
        try:
            await conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if not conn.is_closed():
                    with contextlib.suppress(*DATABASE_ERRORS):  # a failed ROLLBACK is handled at check-in below
                        await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
        finally:

            def release() -> None:
                # A dead connection, or one still in a transaction (BEGIN, COMMIT or ROLLBACK failed, or a cancel cut
                # in), must not go back to the pool: the next user would run inside someone else's transaction.
                if conn.is_closed() or conn.is_in_transaction():
                    pooled.invalidate()
                pooled.close()

            # Checking in can close the connection (an overflow connection when the pool is full, an invalidated
            # one): SQLAlchemy's asyncpg adapter then awaits through a greenlet, so it must run inside one.
            await greenlet_spawn(release)

    @asynccontextmanager
    async def system_scope(self, reason: str) -> AsyncIterator[AsyncSession]:
        """One transaction as tradedesk_system, which sees every tenant. For the few named cross-tenant jobs only.

        `reason` names the call site (e.g. "resolve_identity", "alerts.engine"); it is kept in the transaction as
        `app.system_reason` so it shows up in Postgres logs and triggers.
        """
        if not _REASON.match(reason):
            raise ValueError(f"system_scope reason must be a short lowercase name, got {reason!r}")
        async with self._sessions() as session, session.begin():
            await run_sql(session, _SCOPE_SQL, {"role": SYSTEM_ROLE, "uid": "", "reason": reason})
            yield session

    async def ping(self) -> None:
        """Raise if the database can't answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
