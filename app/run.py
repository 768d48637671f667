"""`tradedesk run`: the all-in-one process: web and worker roles, and the Discord bot when DISCORD_TOKEN is set."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys

from aiohttp import web

from app import __version__
from app.bot_role import BotRole
from app.database import check_database_settings, provide_database
from app.logs import log_integrations
from app.services import billing_gateway, build_agent, webhook_secret
from app.services import desk as build_desk
from app.worker import Worker, check_market_settings
from core.config import Settings
from core.db.database import Database
from core.db.leader import WORKER_LOCK, SessionLock, try_lock
from core.db.migrate import migrate
from core.errors import SetupError
from core.notifications.notifier import ConsoleNotifier, RoutingNotifier
from webhooks.app import create_app
from webhooks.live import LiveHub
from webhooks.pages import topic_renderer

log = logging.getLogger("tradedesk.run")


def _port_error(host: str, port: int, exc: OSError) -> SetupError:
    if exc.errno == errno.EADDRINUSE:
        return SetupError(f"port {port} on {host} is in use; stop what holds it or set TRADEDESK_WEB_PORT")
    return SetupError(f"can't listen on {host}:{port}: {exc.strerror}")


def check_port_free(host: str, port: int) -> None:
    """Find a busy web port before starting the database, not after (the bind below is what really holds it)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SetupError(f"can't resolve TRADEDESK_WEB_HOST {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise _port_error(host, port, exc) from None


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    check_database_settings(settings)
    check_market_settings(settings)
    check_port_free(settings.web_host, settings.web_port)
    log.info("tradedesk %s starting", __version__)
    log_integrations(settings, log)
    async with provide_database(settings) as url:
        report = await migrate(url)
        log.info("migrations: %d applied, %d already applied", len(report.applied), len(report.already))
        database = Database(url)
        secret = await webhook_secret(settings, database)
        billing = billing_gateway(settings, database, secret)
        bot = BotRole(settings, database, billing) if settings.discord_token is not None else None
        worker: Worker | None = None
        lease: SessionLock | None = None
        runner: web.AppRunner | None = None
        try:
            if bot is not None:
                await bot.start()  # before the worker: its notifications go out through the bot's HTTP client
            lease = await try_lock(database, WORKER_LOCK)
            if lease is not None:
                console = ConsoleNotifier(sys.stdout, database)
                notifier = RoutingNotifier(console, bot.notifier() if bot is not None else None)
                worker = Worker(settings, database, notifier=notifier, billing=billing)
            else:
                log.warning(
                    "worker: another TradeDesk process already runs the market feed, alerts and notifications for "
                    "this database; this one serves the web app%s only",
                    " and the bot" if bot is not None else "",
                )
            desk = build_desk(settings, database, billing)
            # Live pages: from the worker's own tick bus when this process runs it, else from the persisted prices.
            live = LiveHub(
                database,
                render=topic_renderer(desk),
                bus=worker.bus if worker is not None else None,
                held_symbols=desk.held_symbols,
            )
            app = create_app(
                settings,
                database=database,
                version=__version__,
                feed_status=worker.feed_status if worker is not None else None,
                bot_status=bot.status if bot is not None else None,
                billing=billing,
                webhook_secret=secret,
                desk=desk,
                agent=build_agent(settings, channel="web"),
                live=live,
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            if worker is not None:
                await worker.start()
            site = web.TCPSite(runner, settings.web_host, settings.web_port)
            try:
                await site.start()
            except OSError as exc:
                raise _port_error(settings.web_host, settings.web_port, exc) from None
            log.info("web: listening on http://%s:%d (health: /healthz)", settings.web_host, settings.web_port)
            log.info("ready; stop with Ctrl-C")
            await stop.wait()
            log.info("stopping")
        finally:
            if runner is not None:
                await runner.cleanup()
            if worker is not None:
                await worker.stop()  # before the bot: the dispatcher sends through the bot's HTTP client
            if lease is not None:
                await lease.release()
            if bot is not None:
                await bot.stop()
            await billing.close()
            await database.dispose()
    log.info("stopped")
