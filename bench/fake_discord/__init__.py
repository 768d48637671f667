"""A local fake of Discord (REST API v10 + gateway) that the real discord.py client runs against.

Used by tests and by `tradedesk bench commands`/`dispatch`: nothing of discord.py is mocked, the bot talks HTTP and
websocket to this server exactly as it would to Discord.

    async with FakeDiscord() as fake:
        fake.point_client_here()            # discord.http.Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY
        bot = commands.Bot(...)
        task = asyncio.create_task(bot.start(fake.token))
        await bot.wait_until_ready()
        payload = fake.payloads.slash_command("ping")
        await fake.dispatch("INTERACTION_CREATE", payload)
        record = await fake.wait_for_callback(payload["id"])
        assert record.callback_type == 4 and record.callback_flags & 64
        await bot.close(); await task

Modules: `server` (FakeDiscord: lifecycle, test helpers, the gateway websocket), `rest` (its REST half: routing,
auth, rate limits, the v10 endpoints), `gateway` (sessions and transport compression), `records` (what is recorded),
`payloads` (builders for what Discord sends: interactions, messages, guilds, with realistic snowflakes).
"""

from bench.fake_discord.gateway import GatewaySession
from bench.fake_discord.payloads import (
    FakeChannel,
    FakeGuild,
    Payloads,
    SnowflakeGenerator,
    option,
    subcommand,
    subcommand_group,
)
from bench.fake_discord.records import DiscordError, InteractionRecord, RecordedFile, RecordedRequest
from bench.fake_discord.server import FakeDiscord

__all__ = [
    "DiscordError",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "GatewaySession",
    "InteractionRecord",
    "Payloads",
    "RecordedFile",
    "RecordedRequest",
    "SnowflakeGenerator",
    "option",
    "subcommand",
    "subcommand_group",
]
