"""The throwaway embedded Postgres cluster a database bench runs on.

`async with throwaway_cluster(settings, "orders", progress) as cluster:` starts a fresh embedded PostgreSQL in a
temporary folder under TRADEDESK_DATA_DIR/bench, even when DATABASE_URL is set (results stay comparable between
machines and runs, and the user's database is never touched), bootstraps the roles and a bench database, applies the
migrations, and yields its URLs. On the way out, however the block ends, the server is stopped and its folder
deleted. Run the bench with `run_async` so that a SIGTERM also takes that way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from core.config import Settings
from core.db.embedded import EmbeddedPostgres, bootstrap, check_data_dir, exit_on_sigterm
from core.db.migrate import migrate
from core.db.roles import SCHEMA

DATABASE = "tradedesk_bench"

T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    workdir: Path
    app_url: str  # the app's NOSUPERUSER login role on the bench database, as the app connects
    superuser_url: str  # the superuser on the bench database: loading data, checks, server statistics
    version: str  # server_version, e.g. "18.1"


@asynccontextmanager
async def throwaway_cluster(
    settings: Settings, name: str, progress: Callable[[str], None], *, database: str = DATABASE
) -> AsyncIterator[Cluster]:
    """A migrated throwaway cluster in TRADEDESK_DATA_DIR/bench/NAME-XXXX, stopped and deleted on exit."""
    if settings.database_url is not None:
        progress("DATABASE_URL is ignored: this bench always runs on a throwaway embedded Postgres")
    parent = settings.data_dir.expanduser().absolute() / "bench"
    check_data_dir(parent)  # before creating anything: e.g. not inside /root when running as root
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    server = EmbeddedPostgres(workdir)
    socket_dir: Path | None = None
    try:
        progress(f"starting a throwaway embedded Postgres in {workdir}")
        superuser_url = await asyncio.to_thread(server.start)
        await bootstrap(superuser_url, database=database)
        app_url = server.app_url(database=database)
        socket_dir = Path(parse_qs(urlsplit(app_url).query)["host"][0])
        await migrate(app_url)
        superuser_db_url = urlunsplit(urlsplit(superuser_url)._replace(path=f"/{database}"))
        conn = await asyncpg.connect(superuser_db_url)
        try:
            version = str(await conn.fetchval("SELECT current_setting('server_version')"))
        finally:
            await conn.close()
        yield Cluster(workdir, app_url, superuser_db_url, version)
    finally:
        progress("stopping the embedded Postgres and deleting its folder")
        stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
        try:
            await asyncio.shield(stopping)
        except asyncio.CancelledError:
            await asyncio.wait([stopping])  # a SIGTERM during cleanup: finish stopping before deleting the folder
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if socket_dir is not None and not socket_dir.is_relative_to(workdir):
                with contextlib.suppress(OSError):
                    socket_dir.rmdir()


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, where a SIGTERM cancels the bench (so the cluster's way out runs) and then exits with 143.

    While the loop runs, SIGTERM is handled by the loop, not by raising SystemExit at whatever bytecode the main
    thread happens to run: raised inside a garbage-collection callback (SQLAlchemy has weakref callbacks), that
    exception would be printed and ignored, and the bench would carry on. Outside the loop (before it starts, after it
    ends), exit_on_sigterm's handler applies, and the embedded server's atexit hook stops it.
    """
    exit_on_sigterm()

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        terminated = False

        def on_sigterm() -> None:
            nonlocal terminated
            if not terminated:  # cancel once: a second SIGTERM must not interrupt the cleanup
                terminated = True
                task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await main
        except asyncio.CancelledError:
            if terminated:
                raise SystemExit(128 + signal.SIGTERM) from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            exit_on_sigterm()

    return asyncio.run(guarded())


PRICE_REFRESH_S = 5.0


async def refresh_prices(superuser_url: str, symbols: list[str], stop: asyncio.Event) -> int:
    """Keep `symbols`' last prices fresh until `stop`, re-stamping them every PRICE_REFRESH_S as the feed's persister
    would, on a dedicated superuser connection outside the app's pool. Returns how many times it stamped them."""
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    stamped = 0
    try:
        while not stop.is_set():
            await conn.execute(
                "UPDATE last_prices SET ts = now(), received_at = now() WHERE symbol = ANY($1::text[])", symbols
            )
            stamped += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PRICE_REFRESH_S)
    finally:
        await conn.close()
    return stamped
