"""`tradedesk run`: the all-in-one process. Today it holds the web role; the bot and worker roles join it later."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal

from aiohttp import web

from app import __version__
from app.database import provide_database
from app.logs import log_integrations
from core.config import Settings
from core.db.database import Database
from core.db.migrate import migrate
from core.errors import SetupError
from webhooks.app import create_app

log = logging.getLogger("tradedesk.run")


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    log.info("tradedesk %s starting", __version__)
    log_integrations(settings, log)
    async with provide_database(settings) as url:
        report = await migrate(url)
        log.info("migrations: %d applied, %d already applied", len(report.applied), len(report.already))
        database = Database(url)
        runner = web.AppRunner(create_app(settings, database=database, version=__version__), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.web_host, settings.web_port)
            try:
                await site.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise SetupError(
                        f"port {settings.web_port} on {settings.web_host} is in use; stop what holds it or set "
                        f"TRADEDESK_WEB_PORT"
                    ) from None
                raise SetupError(f"can't listen on {settings.web_host}:{settings.web_port}: {exc.strerror}") from None
            log.info("web: listening on http://%s:%d (health: /healthz)", settings.web_host, settings.web_port)
            log.info("ready; stop with Ctrl-C")
            await stop.wait()
            log.info("stopping")
        finally:
            await runner.cleanup()
            await database.dispose()
    log.info("stopped")
