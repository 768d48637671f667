"""One worker per database, for now: the worker role holds a session advisory lock on a dedicated connection.

The market feed, the matcher, the alert engine and the scheduler must not run twice against one database until
they are partitioned (a later issue). So the process that gets the lock runs them; another `tradedesk run` or a
`tradedesk chat` finds it held and relies on that worker. The lock lives as long as its connection: a worker that
dies (even kill -9) releases it when Postgres notices the connection is gone.
"""

from __future__ import annotations

import asyncpg

from core.db.database import Database

WORKER_LOCK = "tradedesk.worker"


class SessionLock:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def release(self) -> None:
        if not self._conn.is_closed():
            await self._conn.close(timeout=5)  # closing the session releases the lock


async def try_lock(database: Database, name: str = WORKER_LOCK) -> SessionLock | None:
    """The lock `name` held on its own connection, or None when another session holds it."""
    conn = await database.connect_raw()
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name)
    except BaseException:
        await conn.close()
        raise
    if not got:
        await conn.close()
        return None
    return SessionLock(conn)
