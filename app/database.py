"""Where the database comes from: DATABASE_URL when set, else the embedded Postgres under TRADEDESK_DATA_DIR."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.config import Settings
from core.db.connect import connect
from core.db.embedded import check_data_dir, start_embedded
from core.db.urls import normalize_database_url, redact

log = logging.getLogger(__name__)


def check_database_settings(settings: Settings) -> str | None:
    """Fail fast, before anything starts, on a malformed DATABASE_URL or an unusable data dir.

    Returns the normalized DATABASE_URL, or None for the embedded default.
    """
    if settings.database_url is None:
        check_data_dir(settings.data_dir)
        return None
    return normalize_database_url(settings.database_url.get_secret_value())


@asynccontextmanager
async def provide_database(settings: Settings, *, keep_running: bool = False) -> AsyncIterator[str]:
    """Yield the app's database URL; stop the embedded server (if we started it and nobody else uses it) on exit."""
    external = check_database_settings(settings)
    if external is None:
        server, url = await start_embedded(settings.data_dir, keep_running=keep_running)
        log.info("database: DATABASE_URL unset; using the embedded PostgreSQL in %s (local default)", server.pgdata)
        try:
            yield url
        finally:
            await asyncio.to_thread(server.stop)
        return
    url = external
    conn = await connect(url)
    await conn.close()
    log.info("database: %s (DATABASE_URL)", redact(url))
    yield url
