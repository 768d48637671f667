"""The real discord.py client (`commands.Bot.start`) against bench.fake_discord: login, gateway, app commands,
components, DMs, nonce dedupe, the global rate limit and closed DMs.

Nothing of discord.py is mocked: if these pass, the fake speaks the wire format discord.py 2.7 expects (URLs,
transport compression, heartbeats, READY/GUILD_CREATE, callback and webhook routes, 429 handling).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bench.fake_discord import FakeDiscord, option, subcommand, subcommand_group

EPHEMERAL = 64


class ConfirmButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"confirm:(?P<proposal>\d+)"):
    """A confirm button carrying its proposal id in the custom_id, so any process can handle the click."""

    def __init__(self, proposal: int) -> None:
        super().__init__(
            discord.ui.Button(label="Confirm", style=discord.ButtonStyle.green, custom_id=f"confirm:{proposal}")
        )
        self.proposal = proposal

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ConfirmButton:
        return cls(int(match["proposal"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"confirmed {self.proposal}", ephemeral=True)


class HelpView(discord.ui.View):
    """A persistent view (timeout None, fixed custom_id) registered with bot.add_view at startup."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Help", custom_id="help:open")
    async def open(self, interaction: discord.Interaction, button: discord.ui.Button[HelpView]) -> None:
        await interaction.response.edit_message(content="help opened")

    @discord.ui.button(label="Later", custom_id="help:later")
    async def later(self, interaction: discord.Interaction, button: discord.ui.Button[HelpView]) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="help, a bit later")


class TinyBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = True
        # guild_ready_timeout: on_ready waits this long after the last GUILD_CREATE (2 s by default).
        super().__init__(command_prefix="!td ", intents=intents, guild_ready_timeout=0.1)
        self.autocomplete_seen: list[str] = []
        self.alerts: list[tuple[str, float]] = []
        self.errors: list[app_commands.AppCommandError] = []
        self.errored = asyncio.Event()

        async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            self.errors.append(error)
            self.errored.set()

        self.tree.on_error = on_error  # type: ignore[method-assign]

        @self.tree.command(description="Are you there?")
        async def ping(interaction: discord.Interaction) -> None:
            view = discord.ui.View(timeout=None)
            view.add_item(ConfirmButton(42))
            await interaction.response.send_message("pong", ephemeral=True, view=view)

        @self.tree.command(description="A chart as a file")
        async def chart(interaction: discord.Interaction, symbol: str) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send(
                f"chart {symbol}", file=discord.File(io.BytesIO(b"\x89PNG fake"), filename="chart.png")
            )

        alert = app_commands.Group(name="alert", description="Price alerts")
        price = app_commands.Group(name="price", description="Price thresholds", parent=alert)

        @price.command(name="set", description="Alert when a price is crossed")
        async def set_(interaction: discord.Interaction, symbol: str, level: float) -> None:
            self.alerts.append((symbol, level))
            await interaction.response.send_message(f"alert {symbol} {level}", ephemeral=True)

        @set_.autocomplete("symbol")
        async def symbols(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            self.autocomplete_seen.append(current)
            return [app_commands.Choice(name=s, value=s) for s in ("BTC-USD", "BTC-USDT") if s.startswith(current)]

        self.tree.add_command(alert)

    async def setup_hook(self) -> None:
        self.add_view(HelpView())
        self.add_dynamic_items(ConfirmButton)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.point_client_here()
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[TinyBot]:
    client = TinyBot()
    task = asyncio.create_task(client.start(fake.token))
    try:
        # wait_until_ready() refuses to run before login, so poll; a failed start surfaces here, not as a hang.
        async with asyncio.timeout(10):
            while not client.is_ready():
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield client
    finally:
        await client.close()
        await task


async def test_bot_logs_in_connects_and_sees_the_guild(fake: FakeDiscord, bot: TinyBot) -> None:
    assert bot.user is not None and bot.user.id == fake.application_id
    assert bot.application_id == fake.application_id
    assert [g.id for g in bot.guilds] == [fake.guild_id]
    assert bot.get_channel(fake.channel_id) is not None
    routes = [r.route for r in fake.requests]
    assert routes[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    (session,) = fake.sessions
    # discord.py asks for zstd-stream when zstandard is importable (it is here), zlib-stream otherwise.
    assert session.connection is not None and session.connection.compress in ("zstd-stream", "zlib-stream")
    assert session.intents == bot.intents.value and session.shard is None
    assert session.identify["properties"]["browser"] == "discord.py"
    assert all(r.status == 200 for r in fake.requests)


async def test_tree_sync_registers_commands_once(fake: FakeDiscord, bot: TinyBot) -> None:
    synced = await bot.tree.sync()
    assert fake.command_writes == 1
    assert len(fake.requests_to("PUT /applications/{application_id}/commands")) == 1
    assert {c["name"] for c in fake.commands()} == {"ping", "chart", "alert"}
    assert {c.name for c in synced} == {"ping", "chart", "alert"}
    alert = next(c for c in fake.commands() if c["name"] == "alert")
    assert alert["options"][0]["type"] == 2 and alert["options"][0]["options"][0]["name"] == "set"
    guild = discord.Object(fake.guild_id)
    bot.tree.copy_global_to(guild=guild)
    await bot.tree.sync(guild=guild)
    assert fake.command_writes == 2 and len(fake.commands(fake.guild_id)) == 3


async def test_slash_command_gets_an_ephemeral_reply_with_a_button(fake: FakeDiscord, bot: TinyBot) -> None:
    payload = fake.payloads.slash_command("ping")
    assert await fake.dispatch("INTERACTION_CREATE", payload) == 1
    record = await fake.wait_for_callback(payload["id"])
    assert record.callback_type == 4
    assert record.callback_flags & EPHEMERAL
    assert record.callback_data["content"] == "pong"
    button = record.callback_data["components"][0]["components"][0]
    assert button["custom_id"] == "confirm:42" and button["type"] == 2
    assert record.latency_s is not None and record.latency_s > 0
    assert record.original is not None and record.original["content"] == "pong"


async def test_dm_slash_command_with_subcommand_group_and_autocomplete(fake: FakeDiscord, bot: TinyBot) -> None:
    typed = fake.payloads.autocomplete(
        "alert", subcommand_group("price", subcommand("set", option("symbol", "BTC-US", focused=True))), guild=False
    )
    await fake.dispatch("INTERACTION_CREATE", typed)
    record = await fake.wait_for_callback(typed["id"])
    assert record.callback_type == 8
    assert [c["value"] for c in record.callback_data["choices"]] == ["BTC-USD", "BTC-USDT"]
    assert bot.autocomplete_seen == ["BTC-US"]

    run = fake.payloads.slash_command(
        "alert",
        subcommand_group("price", subcommand("set", option("symbol", "BTC-USD"), option("level", 65000.5))),
        guild=False,
    )
    await fake.dispatch("INTERACTION_CREATE", run)
    record = await fake.wait_for_callback(run["id"])
    assert record.callback_type == 4 and record.callback_data["content"] == "alert BTC-USD 65000.5"
    assert bot.alerts == [("BTC-USD", 65000.5)]


async def test_deferred_reply_and_followup_with_a_file(fake: FakeDiscord, bot: TinyBot) -> None:
    payload = fake.payloads.slash_command("chart", option("symbol", "AAPL"))
    await fake.dispatch("INTERACTION_CREATE", payload)
    record = await fake.wait_for_callback(payload["id"])
    assert record.callback_type == 5 and record.callback_flags & EPHEMERAL
    followup = await fake.wait_for_request(
        lambda r: r.route == "POST /webhooks/{application_id}/{token}", include_recorded=True
    )
    assert followup.status == 200 and followup.query.get("wait") in ("1", "true")
    assert followup.json["content"] == "chart AAPL"
    assert [(f.filename, f.data) for f in followup.files] == [("chart.png", b"\x89PNG fake")]
    assert record.followups[0]["attachments"][0]["filename"] == "chart.png"


async def test_button_clicks_reach_the_dynamic_item_and_the_persistent_view(fake: FakeDiscord, bot: TinyBot) -> None:
    click = fake.payloads.button_click("confirm:7", guild=False)
    await fake.dispatch("INTERACTION_CREATE", click)
    record = await fake.wait_for_callback(click["id"])
    assert record.callback_type == 4 and record.callback_flags & EPHEMERAL
    assert record.callback_data["content"] == "confirmed 7"

    help_click = fake.payloads.button_click("help:open", content="press for help")
    await fake.dispatch("INTERACTION_CREATE", help_click)
    record = await fake.wait_for_callback(help_click["id"])
    assert record.callback_type == 7 and record.callback_data["content"] == "help opened"

    # Deferred update then an edit of @original: the edit lands on the message holding the button.
    later = fake.payloads.button_click("help:later", content="press for help")
    await fake.dispatch("INTERACTION_CREATE", later)
    record = await fake.wait_for_callback(later["id"])
    assert record.callback_type == 6
    edit = await fake.wait_for_request(
        lambda r: r.method == "PATCH" and r.path.endswith("/messages/@original"), include_recorded=True
    )
    assert edit.status == 200 and edit.response["id"] == later["message"]["id"]
    assert fake.messages[int(later["message"]["id"])]["content"] == "help, a bit later"


async def test_mention_in_a_guild_and_a_dm_reach_on_message(fake: FakeDiscord, bot: TinyBot) -> None:
    seen: list[discord.Message] = []
    got_both = asyncio.Event()

    async def on_message(message: discord.Message) -> None:
        seen.append(message)
        if len(seen) == 2:
            got_both.set()

    bot.add_listener(on_message)
    await fake.dispatch("MESSAGE_CREATE", fake.payloads.message_create("how is AAPL?"))
    await fake.dispatch("MESSAGE_CREATE", fake.payloads.message_create("hello", guild=False))
    async with asyncio.timeout(5):
        await got_both.wait()
    guild_msg, dm = seen
    assert guild_msg.guild is not None and bot.user in guild_msg.mentions
    assert dm.guild is None and isinstance(dm.channel, discord.DMChannel)


async def test_user_send_opens_the_dm_then_posts(fake: FakeDiscord, bot: TinyBot) -> None:
    trader = fake.payloads.user("mason")
    user = await bot.fetch_user(int(trader["id"]))
    sent = await user.send("AAPL crossed 200.00 (simulated price)")
    channel_id = fake.dm_channel_id(user.id)
    assert channel_id is not None and sent.channel.id == channel_id
    routes = [r.route for r in fake.requests[-2:]]
    assert routes == ["POST /users/@me/channels", "POST /channels/{channel_id}/messages"]
    assert [m["content"] for m in fake.channel_messages(channel_id)] == ["AAPL crossed 200.00 (simulated price)"]
    # The DM channel is stable per recipient: a second open returns the same id.
    await bot.http.start_private_message(user.id)
    assert fake.requests[-1].response["id"] == str(channel_id)


async def test_enforced_nonce_returns_the_original_message(fake: FakeDiscord, bot: TinyBot) -> None:
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    # discord.py 2.7 sends enforce_nonce: true with every nonce (Messageable.send and the raw route alike).
    first = await channel.send("fill: bought 1 AAPL", nonce=1234567890)
    again = await channel.send("fill: bought 1 AAPL", nonce=1234567890)
    route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=fake.channel_id)
    raw = await bot.http.request(
        route, json={"content": "fill: bought 1 AAPL", "nonce": "1234567890", "enforce_nonce": True}
    )
    assert first.id == again.id == int(raw["id"])
    assert len(fake.channel_messages(fake.channel_id)) == 1
    assert fake.nonce_dedupes == 2
    posts = fake.requests_to("POST /channels/{channel_id}/messages")
    assert [r.json["enforce_nonce"] for r in posts] == [True, True, True]
    other = await channel.send("another", nonce=99)
    assert other.id != first.id


async def test_global_rate_limit_answers_429_and_discord_py_retries(fake: FakeDiscord, bot: TinyBot) -> None:
    users = [fake.payloads.user(f"u{i}") for i in range(8)]
    channels = [int((await bot.http.start_private_message(int(u["id"])))["id"]) for u in users]
    # Eight DMs at once against a limit of 5 per second: three are refused and retried after retry_after.
    # (A bigger burst against a rolling window can exhaust discord.py's 5 attempts: retry_after only says when the
    # oldest request leaves the window, so the refused ones come back together and are mostly refused again.)
    fake.rate_limit_per_s = 5
    await asyncio.sleep(1.0)  # let the window drain of the startup and DM-open requests
    await asyncio.gather(*(bot.http.send_message(c, params=_content(f"hi {i}")) for i, c in enumerate(channels)))
    limited = [r for r in fake.requests if r.status == 429]
    assert fake.http_429 == len(limited) >= 3
    assert limited[0].response["global"] is True and 0 < limited[0].response["retry_after"] <= 1.0
    assert limited[0].response["message"] == "You are being rate limited."
    for i, c in enumerate(channels):
        assert [m["content"] for m in fake.channel_messages(c)] == [f"hi {i}"]


def _content(text: str) -> Any:
    return discord.http.handle_message_parameters(content=text)


async def test_closed_dms_raise_forbidden_50007(fake: FakeDiscord, bot: TinyBot) -> None:
    trader = fake.payloads.user("closed")
    fake.closed_dms.add(int(trader["id"]))
    user = await bot.fetch_user(int(trader["id"]))
    with pytest.raises(discord.Forbidden) as excinfo:
        await user.send("you have an alert")
    assert excinfo.value.code == 50007 and excinfo.value.status == 403
    assert fake.requests[-1].response == {"message": "Cannot send messages to this user", "code": 50007}


async def test_wire_details_headers_429_and_zlib_gateway(fake: FakeDiscord) -> None:
    """Without discord.py: the exact headers and bodies, and a zlib-stream gateway decoded by hand."""
    fake.rate_limit_per_s = 1
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.api_base + "/users/@me", headers=headers) as ok:
            assert ok.status == 200 and ok.headers["Content-Type"] == "application/json"
        async with http.get(fake.api_base + "/users/@me", headers=headers) as limited:
            assert limited.status == 429 and limited.headers["Content-Type"] == "application/json"
            assert limited.headers["X-RateLimit-Global"] == "true" and limited.headers["X-RateLimit-Scope"] == "global"
            assert limited.headers["Via"] and int(limited.headers["Retry-After"]) >= 1
            body = await limited.json()
            assert set(body) == {"message", "retry_after", "global", "code"} and body["global"] is True
        async with http.get(fake.api_base + "/users/@me") as unauthorized:
            assert unauthorized.status == 401 and (await unauthorized.json())["code"] == 0
        async with http.get(fake.api_base + "/nope", headers=headers) as missing:
            assert missing.status == 404 and (await missing.json())["message"] == "404: Not Found"

        url = fake.gateway_url.with_query(v="10", encoding="json", compress="zlib-stream")
        async with http.ws_connect(url) as ws:
            inflate = zlib.decompressobj()

            async def receive() -> dict[str, Any]:
                frame = await ws.receive_bytes(timeout=5)
                assert frame.endswith(b"\x00\x00\xff\xff")
                return dict(json.loads(inflate.decompress(frame)))

            assert (await receive())["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 1, "shard": [0, 2], "properties": {}}})
            ready = await receive()
            assert ready["t"] == "READY" and ready["s"] == 1 and ready["d"]["shard"] == [0, 2]
            await ws.send_json({"op": 1, "d": 1})
            ops = [(await receive())["op"]]
            while ops[-1] != 11:  # a GUILD_CREATE may come first if shard 0 of 2 owns the guild
                ops.append((await receive())["op"])
            assert set(ops) <= {0, 11}
        # Without `compress` in the URL the gateway speaks plain JSON text frames.
        async with http.ws_connect(fake.gateway_url.with_query(v="10", encoding="json")) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == fake.heartbeat_interval_ms
    assert fake.sessions[0].shard == (0, 2)


async def test_route_buckets_send_headers_discord_py_waits_on(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.route_limits["POST /channels/{channel_id}/messages"] = (3, 0.5)
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    for i in range(7):
        await channel.send(f"tick {i}")
    assert [m["content"] for m in fake.channel_messages(fake.channel_id)] == [f"tick {i}" for i in range(7)]
    # discord.py read X-RateLimit-Remaining/Reset-After and slept before the bucket ran out: no 429 needed.
    assert fake.http_429 == 0


async def test_injected_502_is_retried_by_discord_py(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.fail_next(502, path_contains="/messages")
    channel = bot.get_channel(fake.channel_id)
    assert isinstance(channel, discord.TextChannel)
    await channel.send("after a bad gateway")
    statuses = [r.status for r in fake.requests_to("POST /channels/{channel_id}/messages")]
    assert statuses == [502, 200]
    assert len(fake.channel_messages(fake.channel_id)) == 1


async def test_a_late_callback_is_refused_10062(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.interaction_deadline_s = 0.0
    payload = fake.payloads.slash_command("ping")
    await fake.dispatch("INTERACTION_CREATE", payload)
    record = await fake.wait_for_callback(payload["id"])
    assert record.callback is None and record.latency_s is None
    assert record.attempts[0].status == 404 and record.attempts[0].response["code"] == 10062
    async with asyncio.timeout(5):
        await bot.errored.wait()
    (error,) = bot.errors
    assert isinstance(error.__cause__, discord.NotFound) and error.__cause__.code == 10062


async def test_reconnect_resumes_the_session(fake: FakeDiscord, bot: TinyBot) -> None:
    (session,) = fake.sessions
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)
    await fake.request_reconnect()
    async with asyncio.timeout(5):
        await resumed.wait()
    assert session.resumes == 1 and session.connections == 2 and len(fake.sessions) == 1
    payload = fake.payloads.slash_command("ping")
    await fake.dispatch("INTERACTION_CREATE", payload)
    assert (await fake.wait_for_callback(payload["id"])).callback_type == 4


class ShardedBot(commands.AutoShardedBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        pass  # discord.py waits 5 s between IDENTIFYs (Discord's max_concurrency 1); the fake doesn't enforce it


async def test_auto_sharded_bot_gets_each_guild_on_its_shard() -> None:
    async with FakeDiscord(guild_count=4, shard_count=2) as fake:
        fake.point_client_here()
        intents = discord.Intents.none()
        intents.guilds = True
        bot = ShardedBot(command_prefix="!td ", intents=intents, guild_ready_timeout=0.1)
        task = asyncio.create_task(bot.start(fake.token))
        try:
            async with asyncio.timeout(10):
                while not bot.is_ready():
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
            assert fake.requests_to("GET /gateway/bot")
            assert sorted(s.shard for s in fake.sessions if s.shard) == [(0, 2), (1, 2)]
            assert {g.id for g in bot.guilds} == {g.id for g in fake.guilds}
            for guild in bot.guilds:
                assert guild.shard_id == (guild.id >> 22) % 2
        finally:
            await bot.close()
            await task
