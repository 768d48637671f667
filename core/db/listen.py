"""Following changes committed by any process: LISTEN on a channel, and reload state on every (re)connect.

Writers NOTIFY inside their transaction, so a notification arrives exactly when (and only if) the change commits.
A listener that was away missed notifications, so on every connect it runs LISTEN first and then reloads its state
from the tables: anything committed in between is either in the reload or in a notification after it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import asyncpg

from core.db.database import DATABASE_ERRORS, Database

log = logging.getLogger(__name__)

CHANGES = "tradedesk_changes"
_HEALTHY_S = 3600.0


class ChangeListener:
    def __init__(
        self,
        db: Database,
        *,
        name: str,
        on_change: Callable[[str], Awaitable[None]],
        on_connect: Callable[[], Awaitable[None]],
        channel: str = CHANGES,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._db = db
        self._name = name
        self._on_change = on_change
        self._on_connect = on_connect
        self._channel = channel
        self._max_backoff_s = max_backoff_s
        self.connected = asyncio.Event()
        self.connections = 0  # successful (re)connects so far

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff (reset after a healthy hour); each outage logged once."""
        attempt = 0
        while True:
            if attempt:
                await asyncio.sleep(random.uniform(0, min(self._max_backoff_s, 0.5 * 2**attempt)))  # noqa: S311
            started = time.monotonic()
            try:
                conn = await self._db.connect_raw()
            except DATABASE_ERRORS as exc:
                attempt += 1
                if attempt == 1:
                    log.warning("%s: can't listen for changes (%s); retrying", self._name, exc)
                continue
            try:
                await self._serve(conn, reconnected=attempt > 0)
                log.warning("%s: lost the change listener connection; reconnecting", self._name)
            except DATABASE_ERRORS as exc:
                log.warning("%s: change listener failed (%s: %s); reconnecting", self._name, type(exc).__name__, exc)
            finally:
                self.connected.clear()
                if not conn.is_closed():
                    await conn.close(timeout=2)
            attempt = 1 if time.monotonic() - started > _HEALTHY_S else attempt + 1

    async def _serve(self, conn: asyncpg.Connection, *, reconnected: bool) -> None:
        """LISTEN, reload, then hand notifications over one by one until the connection is lost."""
        lost = asyncio.Event()
        queue: asyncio.Queue[str] = asyncio.Queue()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(self._channel, lambda _conn, _pid, _channel, payload: queue.put_nowait(payload))
        await self._on_connect()
        if reconnected:
            log.info("%s: listening for changes again", self._name)
        self.connections += 1
        self.connected.set()
        lost_wait = asyncio.ensure_future(lost.wait())
        get: asyncio.Future[str] | None = None
        try:
            while not lost.is_set():
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, lost_wait}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    await self._on_change(get.result())
                else:
                    get.cancel()
        finally:
            lost_wait.cancel()
            if get is not None:
                get.cancel()  # when the listener itself is cancelled mid-wait
