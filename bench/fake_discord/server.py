"""FakeDiscord: an aiohttp server speaking Discord's REST API (v10) and gateway, for the real discord.py client.

This module holds the lifecycle, the test-facing helpers and the gateway websocket; the REST endpoints live in
`rest.RestApi`, its base class. See the package docstring for usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import yarl
from aiohttp import WSMsgType, web

from bench.fake_discord import payloads as p
from bench.fake_discord.gateway import (
    CLOSE_ALREADY_AUTHENTICATED,
    CLOSE_AUTHENTICATION_FAILED,
    CLOSE_DECODE_ERROR,
    CLOSE_DISALLOWED_INTENTS,
    CLOSE_INVALID_API_VERSION,
    CLOSE_INVALID_SHARD,
    CLOSE_NOT_AUTHENTICATED,
    CLOSE_UNKNOWN_OPCODE,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    OP_HEARTBEAT,
    OP_HEARTBEAT_ACK,
    OP_HELLO,
    OP_IDENTIFY,
    OP_INVALID_SESSION,
    OP_PRESENCE_UPDATE,
    OP_RECONNECT,
    OP_REQUEST_GUILD_MEMBERS,
    OP_RESUME,
    OP_VOICE_STATE_UPDATE,
    PRIVILEGED_INTENTS,
    Connection,
    GatewaySession,
    codec_for,
)
from bench.fake_discord.records import InteractionRecord, RecordedRequest
from bench.fake_discord.rest import API_PREFIX, RestApi
from bench.serve import serve

JSON = dict[str, Any]


class FakeDiscord(RestApi):
    """A local Discord (REST + gateway) for the real discord.py client; an async context manager.

    Configuration (constructor arguments, also attributes a test may change while running):
      token                 the bot token clients must present (`Authorization: Bot <token>`, IDENTIFY token)
      rate_limit_per_s      global limit over a rolling `rate_limit_window_s` (None: unlimited); beyond it a 429
      closed_dms            user ids whose DMs are closed: posting to their DM channel is 403, code 50007
      latency_s             artificial delay before every REST answer
      interaction_deadline_s  a callback later than this after dispatch is 404 code 10062, as on Discord (None: off)
      allow_privileged_intents  IDENTIFY with members/presences/message_content is closed 4014 unless True
      route_limits          per-route buckets, {"POST /channels/{channel_id}/messages": (5, 5.0)} by default:
                            (requests, seconds) per route and major parameter, with X-RateLimit-* headers
      shard_count           what GET /gateway/bot recommends
      heartbeat_interval_ms HELLO's interval
    Use `fail_next(...)` to inject 5xx answers.
    """

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        guild_count: int = 1,
        rate_limit_per_s: int | None = 50,
        rate_limit_window_s: float = 1.0,
        closed_dms: set[int] | None = None,
        latency_s: float = 0.0,
        interaction_deadline_s: float | None = 3.0,
        nonce_window_s: float = 300.0,
        allow_privileged_intents: bool = False,
        shard_count: int = 1,
        heartbeat_interval_ms: int = 41_250,
        route_limits: dict[str, tuple[int, float]] | None = None,
    ) -> None:
        self.token = token
        self.ids = p.SnowflakeGenerator()
        self.application_id = self.ids.next()
        # A bot user's id is its application's id for every application created since 2019.
        self.bot_user: JSON = p.user(self.application_id, "TradeDesk", bot=True) | {
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "email": None,
        }
        self.guilds = [
            p.FakeGuild(id=self.ids.next(), name=f"Guild {i}", channels=[p.FakeChannel(self.ids.next())])
            for i in range(guild_count)
        ]
        for guild in self.guilds:
            guild.owner_id = self.ids.next()
        self.rate_limit_per_s = rate_limit_per_s
        self.rate_limit_window_s = rate_limit_window_s
        self.closed_dms: set[int] = set(closed_dms or ())
        self.latency_s = latency_s
        self.interaction_deadline_s = interaction_deadline_s
        self.nonce_window_s = nonce_window_s
        self.allow_privileged_intents = allow_privileged_intents
        self.shard_count = shard_count
        self.heartbeat_interval_ms = heartbeat_interval_ms
        # Discord's long-standing 5 messages per 5 s per channel; other routes are unbounded unless configured.
        self.route_limits = {"POST /channels/{channel_id}/messages": (5, 5.0)} if route_limits is None else route_limits

        # What tests read.
        self.requests: list[RecordedRequest] = []
        self._users: dict[int, JSON] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.messages: dict[int, JSON] = {}
        self.sessions: list[GatewaySession] = []
        self.global_commands: list[JSON] = []
        self.guild_commands: dict[int, list[JSON]] = {}
        self.command_writes = 0
        self.http_429 = 0
        self.nonce_dedupes = 0

        self._dm_channels: dict[int, int] = {}  # recipient id -> channel id
        self._dm_recipients: dict[int, int] = {}  # channel id -> recipient id
        self._nonces: dict[tuple[int, str], tuple[float, int]] = {}  # (author, nonce) -> (monotonic, message id)
        self._window: deque[float] = deque()
        self._buckets: dict[tuple[str, str], list[float]] = {}  # (route, major parameter) -> [count, reset at]
        self._failures: list[tuple[int, str | None]] = []
        self._waiters: list[tuple[Callable[[RecordedRequest], bool], asyncio.Future[RecordedRequest]]] = []
        self._session_event = asyncio.Event()
        self._routes = self._build_routes()
        self._runner: web.AppRunner | None = None
        self._saved: tuple[str, yarl.URL] | None = None
        self.port = 0
        self.payloads = p.Payloads(
            self.ids,
            application_id=self.application_id,
            bot_user=p.user(self.application_id, "TradeDesk", bot=True),
            guilds=self.guilds,
            dm_channel_for=self._dm_channel_for_user,
            users=self._users,
        )

    # ----------------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port on 127.0.0.1."""
        # Discord accepts attachments up to 10 MiB for bots (more with boosts); aiohttp's default cap is 1 MiB.
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume", self._gateway)  # READY's resume_gateway_url, so a test sees resumes land
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        served = await serve(app)
        self._runner, self.port = served.runner, served.port

    async def stop(self) -> None:
        """Close every gateway connection and the server; restore discord.py's URLs if they were pointed here."""
        self.restore_client()
        for session in self.sessions:
            if session.connection is not None:
                await session.connection.ws.close(code=1001, message=b"server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> yarl.URL:
        return yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")

    def point_client_here(self) -> None:
        """Point discord.py (this process) at the fake: REST and webhook/interaction routes both build their URL
        from `Route.BASE` when a Route is created, and a non-sharded client connects to `DEFAULT_GATEWAY` without
        asking GET /gateway. Undone by `restore_client()` and on exit."""
        import discord.gateway
        import discord.http

        if self._saved is None:
            self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self.gateway_url

    def restore_client(self) -> None:
        if self._saved is None:
            return
        import discord.gateway
        import discord.http

        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
        self._saved = None

    # -------------------------------------------------------------------------------------------- test helpers

    @property
    def guild_id(self) -> int:
        return self.guilds[0].id

    @property
    def channel_id(self) -> int:
        return self.guilds[0].channels[0].id

    def fail_next(self, status: int = 500, *, count: int = 1, path_contains: str | None = None) -> None:
        """Answer the next `count` REST requests (whose path contains `path_contains`, if given) with `status`."""
        self._failures.extend([(status, path_contains)] * count)

    def dm_channel_id(self, user_id: int) -> int | None:
        """The DM channel the bot has opened with this user, if any."""
        return self._dm_channels.get(user_id)

    def channel_messages(self, channel_id: int) -> list[JSON]:
        """Visible messages in a channel, oldest first (deduped nonces count once)."""
        return [m for m in self.messages.values() if int(m["channel_id"]) == channel_id]

    def requests_to(self, route: str, *, status: int | None = None) -> list[RecordedRequest]:
        """Recorded requests for a route template, e.g. `requests_to("POST /channels/{channel_id}/messages")`."""
        return [r for r in self.requests if r.route == route and (status is None or r.status == status)]

    def commands(self, guild_id: int | None = None) -> list[JSON]:
        """Registered application commands, global or for one guild."""
        return self.global_commands if guild_id is None else self.guild_commands.get(guild_id, [])

    def interaction_latencies(self) -> list[float]:
        return [r.latency_s for r in self.interactions.values() if r.latency_s is not None]

    async def dispatch(self, event: str, data: JSON, *, session: GatewaySession | None = None) -> int:
        """Send a dispatch event to one session or to every session that would receive it on Discord.

        Routing follows Discord: guild events go to the shard owning the guild, DMs to shard 0, MESSAGE_CREATE only
        to sessions with the GUILD_MESSAGES / DIRECT_MESSAGES intent (interactions need no intent). An
        INTERACTION_CREATE is registered first, so its callback can be checked and timed. Returns the number of
        sessions the event was sent to.
        """
        self._learn_users(data)
        targets = [session] if session is not None else [s for s in self.sessions if self._wants(s, event, data)]
        record: InteractionRecord | None = None
        if event == "INTERACTION_CREATE":
            record = InteractionRecord(id=int(data["id"]), token=data["token"], type=int(data["type"]), payload=data)
            if data.get("message"):
                # A component's message exists on Discord (the bot sent it): it is @original for a deferred
                # update (type 6) followed by edit_original_response, and for UPDATE_MESSAGE (type 7).
                record.original = data["message"]
                self.messages.setdefault(int(data["message"]["id"]), data["message"])
            self.interactions[record.id] = record
        sent = 0
        for target in targets:
            if record is not None and sent == 0:
                record.dispatched_at = time.monotonic()
            await target.dispatch(event, data)
            sent += 1
        return sent

    async def request_reconnect(self, session: GatewaySession | None = None) -> None:
        """Send op 7 RECONNECT (as Discord does before moving a session): the client reconnects and RESUMEs."""
        for target in [session] if session else list(self.sessions):
            if target.connection is not None:
                await target.connection.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    # The wait helpers take `timeout` (ruff's ASYNC109) on purpose: a test must not hang on a bot that never answers.
    async def wait_for_sessions(self, count: int = 1, *, timeout: float = 10.0) -> list[GatewaySession]:  # noqa: ASYNC109
        """Wait until `count` sessions have been identified and sent READY."""
        async with asyncio.timeout(timeout):
            while len(self.sessions) < count:
                self._session_event.clear()
                await self._session_event.wait()
        return self.sessions

    async def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
        include_recorded: bool = False,
    ) -> RecordedRequest:
        """The next request matching `predicate` (or an already recorded one, with include_recorded)."""
        if include_recorded:
            for recorded in self.requests:
                if predicate(recorded):
                    return recorded
        future: asyncio.Future[RecordedRequest] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def wait_for_callback(self, interaction_id: int | str, *, timeout: float = 5.0) -> InteractionRecord:  # noqa: ASYNC109
        """Wait for the bot's callback to a dispatched interaction; returns the interaction's record.

        Returns on the first callback request, accepted or not: a refused one (too late, already acknowledged)
        leaves `record.callback` None and shows in `record.attempts`.
        """
        record = self.interactions[int(interaction_id)]
        if not record.attempts:
            # No scan of what was recorded: `attempts` already says no callback came, and the waiter is registered
            # before this coroutine first yields, so none can slip in between (a scan made long runs quadratic).
            path = f"/interactions/{record.id}/"
            await self.wait_for_request(
                lambda r: r.path.startswith(path) and r.path.endswith("/callback"), timeout=timeout
            )
        return record

    # ------------------------------------------------------------------------------------------------ gateway

    def _wants(self, session: GatewaySession, event: str, data: JSON) -> bool:
        guild_id = data.get("guild_id")
        if event == "MESSAGE_CREATE":
            needed = INTENT_GUILD_MESSAGES if guild_id else INTENT_DIRECT_MESSAGES
            if not session.intents & needed:
                return False
        if guild_id:
            return session.owns_guild(int(guild_id))
        return session.is_dm_shard

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        # No permessage-deflate: the gateway's own transport compression already does that job.
        ws = web.WebSocketResponse(compress=False, max_msg_size=0)
        await ws.prepare(request)
        query = request.query
        try:
            codec = codec_for(query.get("compress"))
        except ValueError as exc:
            await ws.close(code=CLOSE_DECODE_ERROR, message=str(exc).encode())
            return ws
        if query.get("encoding", "json") != "json" or query.get("v", "10") not in ("9", "10"):
            await ws.close(code=CLOSE_INVALID_API_VERSION, message=b"Invalid API version or encoding.")
            return ws
        connection = Connection(ws, codec, query.get("compress"))
        await connection.send(
            {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
        )
        session: GatewaySession | None = None
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                try:
                    frame = json.loads(msg.data)
                    op, d = frame["op"], frame.get("d")
                except (ValueError, KeyError, TypeError):
                    await ws.close(code=CLOSE_DECODE_ERROR, message=b"Error while decoding payload.")
                    break
                if op == OP_HEARTBEAT:
                    if session is not None:
                        session.heartbeats += 1
                    await connection.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
                elif op == OP_IDENTIFY:
                    if session is not None:
                        await ws.close(code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated.")
                        break
                    session = await self._identify(connection, d)
                    if session is None:
                        break
                elif op == OP_RESUME:
                    session = await self._resume(connection, d)
                elif session is None:
                    await ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated.")
                    break
                elif op in (OP_PRESENCE_UPDATE, OP_VOICE_STATE_UPDATE, OP_REQUEST_GUILD_MEMBERS):
                    continue  # accepted and ignored: nothing in the fake depends on them
                else:
                    await ws.close(code=CLOSE_UNKNOWN_OPCODE, message=b"Unknown opcode.")
                    break
        finally:
            if session is not None and session.connection is connection:
                session.connection = None
                # A clean close (1000/1001) from the client ends the session on Discord: it can't be resumed.
                if ws.close_code in (1000, 1001):
                    session.invalidated = True
        return ws

    async def _identify(self, connection: Connection, d: JSON) -> GatewaySession | None:
        ws = connection.ws
        if d.get("token") != self.token:
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        intents = int(d.get("intents", 0))
        if intents & PRIVILEGED_INTENTS and not self.allow_privileged_intents:
            await ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return None
        shard: tuple[int, int] | None = None
        if d.get("shard") is not None:
            shard_id, count = (int(x) for x in d["shard"])
            if not 0 <= shard_id < count:
                await ws.close(code=CLOSE_INVALID_SHARD, message=b"Invalid shard.")
                return None
            shard = (shard_id, count)
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            shard=shard,
            intents=intents,
            identify={k: v for k, v in d.items() if k != "token"},
            connection=connection,
        )
        self.sessions.append(session)
        mine = [g for g in self.guilds if session.owns_guild(g.id)]
        ready: JSON = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in mine],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/resume",
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
            "guild_join_requests": [],
            "user_settings": {},
            "auth": {},
            "_trace": ['["fake-discord-gateway",{"micros":0}]'],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        await session.dispatch("READY", ready)
        for guild in mine:
            await session.dispatch("GUILD_CREATE", p.guild_create(guild, self.payloads.bot_user))
        self._session_event.set()
        return session

    async def _resume(self, connection: Connection, d: JSON) -> GatewaySession | None:
        session = next((s for s in self.sessions if s.session_id == d.get("session_id")), None)
        if session is None or session.invalidated or d.get("token") != self.token:
            # d=false: not resumable, the client must IDENTIFY afresh (discord.py reconnects without resume).
            await connection.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return None
        session.connection = connection
        session.connections += 1
        session.resumes += 1
        await session.replay_after(int(d.get("seq") or 0))
        await session.dispatch("RESUMED", {"_trace": ['["fake-discord-gateway",{"micros":0}]']})
        return session
