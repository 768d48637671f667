"""The bot role in a process: log in, hold the gateway connection, lend its HTTP client to the Discord Notifier.

Started before the worker so that notifications go out through Discord (with the bot's rate-limit bookkeeping)
rather than the console. The gateway connection runs as a task with discord.py's own reconnect logic; a bot that is
still connecting doesn't hold up the web or worker roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

from app.services import build_agent, desk
from bot.client import TradeDeskBot
from bot.notifier import DiscordNotifier
from core.billing.gateway import BillingGateway
from core.config import Settings
from core.db.database import Database
from core.errors import SetupError

log = logging.getLogger("tradedesk.bot")


def point_discord_at(settings: Settings) -> None:
    """Use TRADEDESK_DISCORD_API_URL / _GATEWAY_URL instead of discord.com (a REST proxy, or a local test server)."""
    if settings.discord_api_url:
        Route.BASE = settings.discord_api_url.rstrip("/")
        log.info("discord: REST API at %s", Route.BASE)
    if settings.discord_gateway_url:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
        log.info("discord: gateway at %s", settings.discord_gateway_url)


class RestNotifier:
    """DMs without the bot in this process: discord.py's HTTP client logged in with the bot token, REST only (no
    gateway). A `tradedesk worker` (or a `tradedesk chat` running the worker) delivers Discord notifications with
    it; the bot process itself runs no dispatcher. `await open()`, then `notifier`, then `await close()`.

    It shares discord.py's per-route rate-limit handling and 429 retries, but not the bookkeeping of other
    processes: each worker paces its own dispatcher toward Discord's global limit.
    """

    def __init__(self, settings: Settings) -> None:
        assert settings.discord_token is not None
        self.settings = settings
        self.http: HTTPClient | None = None

    async def open(self) -> DiscordNotifier:
        point_discord_at(self.settings)
        assert self.settings.discord_token is not None
        self.http = HTTPClient(asyncio.get_running_loop())
        try:
            await self.http.static_login(self.settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            await self.close()
            raise SetupError(
                "Discord refused DISCORD_TOKEN: copy the bot token again from the Developer Portal"
            ) from None
        except (discord.HTTPException, OSError) as exc:
            await self.close()
            raise SetupError(
                f"can't reach Discord to log in ({type(exc).__name__}: {exc}); check the network"
            ) from None
        log.info("discord: this process DMs notifications through Discord's REST API (no gateway connection)")
        return DiscordNotifier(self.http)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None


class BotRole:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        billing: BillingGateway | None = None,
        *,
        sync_on_start: bool = True,
    ) -> None:
        assert settings.discord_token is not None
        self.settings = settings
        self.bot = TradeDeskBot(
            desk(settings, database, billing),
            build_agent(settings, channel="discord"),
            database,
            sync_on_start=sync_on_start,
        )
        self._task: asyncio.Task[None] | None = None

    async def login(self) -> None:
        """Log in over REST (and register the slash commands if they changed); SetupError for a refused token."""
        point_discord_at(self.settings)
        assert self.settings.discord_token is not None
        try:
            await self.bot.login(self.settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            await self.bot.close()
            raise SetupError(
                "Discord refused DISCORD_TOKEN: copy the bot token again from the Developer Portal"
            ) from None
        except (discord.HTTPException, OSError) as exc:
            await self.bot.close()
            raise SetupError(
                f"can't reach Discord to log in ({type(exc).__name__}: {exc}); check the network"
            ) from None

    async def start(self) -> None:
        await self.login()
        self._task = asyncio.create_task(self._connect(), name="discord.gateway")

    async def _connect(self) -> None:
        try:
            await self.bot.connect(reconnect=True)
        except Exception:
            log.exception("discord: the gateway connection ended for good; slash commands won't be answered")
            raise

    def notifier(self) -> DiscordNotifier:
        return DiscordNotifier(self.bot.http)

    def status(self) -> str:
        """ok, connecting or down: for /healthz."""
        if self.bot.is_ready() and not self.bot.is_closed():
            return "ok"
        return "down" if self._task is None or self._task.done() else "connecting"

    async def stop(self) -> None:
        await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
