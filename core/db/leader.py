"""Cluster-wide single owners with failover: a Postgres session advisory lock per role, held on its own connection.

Some work must run exactly once per database however many worker processes there are: the scheduler's jobs, and
(until it is partitioned by symbol) the market feed with the matcher and the alert engine. Each worker runs a
`Leadership` per such role: it tries `pg_try_advisory_lock` at start and again every `retry_s` (jittered) while it
doesn't hold it. The holder runs `on_acquire`, keeps the session open and checks it every `check_s`; whoever holds
the session holds the lock. When the holder's process dies (even kill -9) or its connection is cut, Postgres ends
the session and releases the lock, and another worker takes it within one retry period. A holder that notices its
connection is gone (a termination listener, like core/db/listen.py's, or a failed check) stops leading at once
(`on_lose`) and becomes a contender again.

Postgres may notice a vanished client later than the client notices (TCP keepalive): failover then waits, it never
runs the work twice. The other way round (the server ended the session but the old holder's check hasn't run yet)
two holders can overlap for up to `check_s`; every job they run is safe to repeat (expiries, fills and fires are
guarded in SQL), so an overlap costs work, never a double effect.

`try_lock` is the one-shot form (no retry), for a caller that only wants to know whether it can have a lock now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import asyncpg

from core.db.database import DATABASE_ERRORS, Database
from core.errors import SetupError

log = logging.getLogger(__name__)

SCHEDULER_LOCK = "tradedesk.scheduler"
# The market feed, the matcher and the alert engine. The name the single worker lock had, so that an older process
# and a newer one never both run the feed during a rolling upgrade.
MARKET_LOCK = "tradedesk.worker"
WORKER_LOCK = MARKET_LOCK  # the former name

_TRY = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"

_CHECK_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, TimeoutError)

Callback = Callable[[], Awaitable[None]]


class SessionLock:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def release(self) -> None:
        if not self._conn.is_closed():
            await self._conn.close(timeout=5)  # closing the session releases the lock


async def try_lock(database: Database, name: str) -> SessionLock | None:
    """The lock `name` held on its own connection, or None when another session holds it."""
    conn = await database.connect_raw()
    try:
        got = await conn.fetchval(_TRY, name)
    except BaseException:
        await conn.close()
        raise
    if not got:
        await conn.close()
        return None
    return SessionLock(conn)


async def is_held(database: Database, name: str) -> bool:
    """Whether another session holds the lock `name` now (a snapshot: it may change right after)."""
    lock = await try_lock(database, name)
    if lock is None:
        return True
    await lock.release()
    return False


class Leadership:
    """Run `on_acquire` while this process holds the lock `name`, `on_lose` when it stops holding it.

    `await leadership.run()` until cancelled (cancelling it steps down: `on_lose`, then the lock is released).
    `first_attempt` is set once the first try is over, including `on_acquire` when it won; `error` holds the
    exception of an `on_acquire` that failed (the lock is then released and tried again after the retry period).
    `fail_fast`: exception types that, raised by the very first `on_acquire`, end `run()` instead (not logged: the
    caller reads `error` and reports it, e.g. a configuration that can never work).
    """

    def __init__(
        self,
        database: Database,
        name: str,
        *,
        on_acquire: Callback | None = None,
        on_lose: Callback | None = None,
        retry_s: float = 5.0,
        check_s: float | None = None,
        jitter: float = 0.3,
        fail_fast: tuple[type[Exception], ...] = (),
    ) -> None:
        self.database = database
        self.name = name
        self.on_acquire = on_acquire
        self.on_lose = on_lose
        self.retry_s = retry_s
        self.check_s = check_s if check_s is not None else retry_s
        self.jitter = jitter
        self.fail_fast = fail_fast
        self.first_attempt = asyncio.Event()
        self.error: BaseException | None = None
        self.attempts = 0  # tries at the lock so far
        self.terms = 0  # times this process became the leader
        self._fatal = False
        self.backend_pid: int | None = None  # the holding session's server process, while leading
        self._leader = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    def _pause(self) -> float:
        return self.retry_s * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 -- not a secret

    async def run(self) -> None:
        unreachable = False
        while True:
            try:
                conn = await self.database.connect_raw()
            except DATABASE_ERRORS as exc:
                if not unreachable:
                    log.warning("%s: can't reach the database to contend for leadership (%s); retrying", self.name, exc)
                unreachable = True
                self.first_attempt.set()
                await asyncio.sleep(self._pause())
                continue
            unreachable = False
            terms = self.terms
            try:
                await self._contend(conn)
                if self._fatal:
                    return  # the finally below releases the lock
            except DATABASE_ERRORS as exc:
                log.warning("%s: leadership connection failed (%s: %s)", self.name, type(exc).__name__, exc)
            finally:
                self.first_attempt.set()
                if not conn.is_closed():
                    with contextlib.suppress(*DATABASE_ERRORS, TimeoutError):
                        await conn.close(timeout=2)  # releases the lock, after on_lose has stopped the work
            # A leader that just lost its term waits two retry periods, a standby one (each +-jitter, and the jitter
            # is under 1/3): the standbys take over first, rather than the process whose session just failed.
            await asyncio.sleep(self._pause() * (2 if self.terms > terms else 1))

    async def _contend(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        first, self.attempts = self.attempts == 0, self.attempts + 1
        if not await conn.fetchval(_TRY, self.name):
            return
        self._leader = True
        self.backend_pid = conn.get_server_pid()
        self.terms += 1
        log.info("%s: this process is the leader", self.name)
        try:
            if self.on_acquire is not None:
                try:
                    await self.on_acquire()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any failure: step down, release, try again later
                    self.error = exc
                    if first and isinstance(exc, self.fail_fast):
                        self._fatal = True
                        return
                    log.error(
                        "%s: starting as the leader failed (%s: %s); stepping down and retrying",
                        self.name,
                        type(exc).__name__,
                        exc,
                        exc_info=not isinstance(exc, SetupError),
                    )
                    return
                self.error = None
            self.first_attempt.set()
            await self._hold(conn, lost)
            log.warning("%s: lost the leadership connection; stepping down and contending again", self.name)
        finally:
            self._leader = False
            self.backend_pid = None
            if self.on_lose is not None:
                try:
                    await self.on_lose()
                except Exception:
                    log.exception("%s: stepping down failed", self.name)

    async def _hold(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Until the session is gone: the termination listener, or a check that fails or hangs."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self.check_s)
                return
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), max(1.0, self.check_s))
            except _CHECK_ERRORS:
                return
