"""The long-running commands: `tradedesk run` (all-in-one: web and worker roles, and the Discord bot when
DISCORD_TOKEN is set) and `tradedesk web`, `tradedesk worker`, `tradedesk bot` (one role each). All of them are
`serve(settings, roles)`: one lifecycle (signals, the database, migrations, clean shutdown) around the chosen roles.

Migrations: every command applies them at start, under the runner's advisory lock (core/db/migrate.py), so processes
starting together on one database apply each file once and the others find it applied; a deployment that prefers
one explicit step runs `tradedesk migrate` first and the processes then find nothing to do.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from dataclasses import dataclass

from aiohttp import web

from app import __version__
from app.bot_role import BotRole, RestNotifier
from app.database import check_database_settings, provide_database
from app.logs import log_integrations
from app.services import billing_gateway, build_agent, webhook_secret
from app.services import desk as build_desk
from app.worker import Worker, check_market_settings
from core.billing.gateway import BillingGateway
from core.config import Settings
from core.db.database import Database
from core.db.migrate import migrate
from core.errors import SetupError
from core.notifications.notifier import ConsoleNotifier, Notifier, RoutingNotifier
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


@dataclass(frozen=True)
class Roles:
    """What one process runs. `run` is every role (the bot only with DISCORD_TOKEN)."""

    command: str
    web: bool = False
    worker: bool = False
    bot: bool = False

    @classmethod
    def all_in_one(cls, settings: Settings) -> Roles:
        return cls("run", web=True, worker=True, bot=settings.discord_token is not None)


WEB = Roles("web", web=True)
WORKER = Roles("worker", worker=True)
BOT = Roles("bot", bot=True)


def check_settings(settings: Settings, roles: Roles) -> None:
    """Everything that can be found wrong before the database starts."""
    if roles.bot and settings.discord_token is None:
        raise SetupError(
            "DISCORD_TOKEN is not set: `tradedesk bot` runs the Discord bot only; set the bot token from the "
            "Developer Portal, or use `tradedesk run` (everything, without Discord) or `tradedesk chat`"
        )
    check_database_settings(settings)
    if roles.worker:
        check_market_settings(settings)
    if roles.web:
        check_port_free(settings.web_host, settings.web_port)


def _discord_line(settings: Settings, roles: Roles) -> str | None:
    """The log line about Discord for this process, when it isn't the all-in-one's."""
    if settings.discord_token is None or roles.command == "run":
        return None
    if roles.bot:
        return "discord: DISCORD_TOKEN set; the Discord bot runs in this process; workers DM the notifications"
    if roles.worker:
        return "discord: DISCORD_TOKEN set; this worker DMs notifications (the bot runs in `tradedesk bot`)"
    return "discord: DISCORD_TOKEN set; the bot and its DMs run in other processes"


async def run(settings: Settings) -> None:
    """`tradedesk run`: everything in one process."""
    await serve(settings, Roles.all_in_one(settings))


async def serve(settings: Settings, roles: Roles) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    check_settings(settings, roles)
    log.info("tradedesk %s starting (%s)", __version__, roles.command)
    log_integrations(settings, log, discord=_discord_line(settings, roles))
    async with provide_database(settings) as url:
        report = await migrate(url)
        log.info("migrations: %d applied, %d already applied", len(report.applied), len(report.already))
        database = Database(url)
        secret = await webhook_secret(settings, database)
        billing = billing_gateway(settings, database, secret)
        bot = BotRole(settings, database, billing) if roles.bot else None
        rest: RestNotifier | None = None
        worker: Worker | None = None
        runner: web.AppRunner | None = None
        try:
            if bot is not None:
                await bot.start()  # before the worker: its notifications go out through the bot's HTTP client
            if roles.worker:
                discord: Notifier | None = bot.notifier() if bot is not None else None
                if discord is None and settings.discord_token is not None:
                    rest = RestNotifier(settings)  # a worker without the bot in this process DMs over REST
                    discord = await rest.open()
                notifier = RoutingNotifier(ConsoleNotifier(sys.stdout, database), discord)
                worker = Worker(settings, database, notifier=notifier, billing=billing)
                await worker.start()
            if roles.web:
                runner = await _web_runner(settings, database, billing, secret, worker, bot)
                site = web.TCPSite(runner, settings.web_host, settings.web_port)
                try:
                    await site.start()
                except OSError as exc:
                    raise _port_error(settings.web_host, settings.web_port, exc) from None
                log.info("web: listening on http://%s:%d (health: /healthz)", settings.web_host, settings.web_port)
            log.info("ready (%s); stop with Ctrl-C", ", ".join(_names(roles)))
            await stop.wait()
            log.info("stopping")
        finally:
            if runner is not None:
                await runner.cleanup()
            if worker is not None:
                await worker.stop()  # before the bot: the dispatcher sends through the bot's HTTP client
            if rest is not None:
                await rest.close()
            if bot is not None:
                await bot.stop()
            await billing.close()
            await database.dispose()
    log.info("stopped")


def _names(roles: Roles) -> list[str]:
    return [name for name, on in (("web", roles.web), ("worker", roles.worker), ("bot", roles.bot)) if on]


async def _web_runner(
    settings: Settings,
    database: Database,
    billing: BillingGateway,
    secret: str,
    worker: Worker | None,
    bot: BotRole | None,
) -> web.AppRunner:
    desk = build_desk(settings, database, billing)
    # Live prices from this process's tick bus when its worker leads the market feed (its first attempt is over by
    # now), else from the prices the leading worker persists and publishes on `tradedesk_prices`.
    bus = worker.bus if worker is not None and worker.market.is_leader else None
    live = LiveHub(database, render=topic_renderer(desk), bus=bus, held_symbols=desk.held_symbols)
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
    return runner
