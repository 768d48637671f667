"""FakeDiscord: an aiohttp server speaking Discord's REST API (v10) and gateway, for the real discord.py client.

See the package docstring for usage. The REST side is one catch-all route and a small table of Discord paths, so that
every request, including the ones the fake refuses (401, 404, 429, injected 5xx), is recorded the same way and
unknown paths get Discord's own 404 body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
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

JSON = dict[str, Any]
API_PREFIX = "/api/v10"

# Interaction callback types.
CALLBACK_PONG = 1
CALLBACK_CHANNEL_MESSAGE = 4
CALLBACK_DEFERRED_CHANNEL_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE_MESSAGE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE_RESULT = 8
CALLBACK_MODAL = 9

FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Message types: a reply to a slash command is CHAT_INPUT_COMMAND (20), anything else here DEFAULT (0).
MESSAGE_DEFAULT = 0
MESSAGE_CHAT_INPUT_COMMAND = 20


@dataclass
class RecordedFile:
    """One uploaded attachment from a multipart request (`files[n]` part)."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    """One REST request as the fake saw and answered it.

    `path` is relative to /api/v10 (`/channels/123/messages`); `route` is the matched template with the method
    (`POST /channels/{channel_id}/messages`, or `None` for an unknown path); `json` is the JSON body or the multipart
    `payload_json`; `received_at` is time.monotonic() on arrival; `status` and `response` are what the fake answered.
    """

    method: str
    path: str
    route: str | None
    query: dict[str, str]
    json: Any
    files: list[RecordedFile]
    received_at: float
    status: int = 0
    response: Any = None


@dataclass
class InteractionRecord:
    """An interaction the test dispatched and what the bot did with it.

    `dispatched_at` is time.monotonic() just before INTERACTION_CREATE went on the wire, `callback_at` when the
    accepted callback request arrived; `callback` is that request (its `json` has `type` and `data`), `attempts`
    every callback request including refused ones (late: 10062, repeated: 40060), `followups` the followup
    messages, `original` the current @original message.
    """

    id: int
    token: str
    type: int
    payload: JSON
    dispatched_at: float = 0.0
    callback_at: float | None = None
    callback: RecordedRequest | None = None
    original: JSON | None = None
    followups: list[JSON] = field(default_factory=list)
    attempts: list[RecordedRequest] = field(default_factory=list)

    @property
    def callback_type(self) -> int | None:
        return None if self.callback is None else int(self.callback.json["type"])

    @property
    def callback_data(self) -> JSON:
        if self.callback is None:
            return {}
        data: JSON = self.callback.json.get("data") or {}
        return data

    @property
    def callback_flags(self) -> int:
        return int(self.callback_data.get("flags") or 0)

    @property
    def latency_s(self) -> float | None:
        """Seconds from dispatch to callback arrival (what the commands benchmark measures)."""
        return None if self.callback_at is None else self.callback_at - self.dispatched_at


class DiscordError(Exception):
    """Raised by a REST handler to answer with Discord's error body `{"message", "code"}`."""

    def __init__(
        self, status: int, message: str, code: int = 0, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body: JSON = {"message": message, "code": code, **extra}


Handler = Callable[["_Call"], Awaitable[tuple[int, Any]]]


@dataclass
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    # Bot-token routes need `Authorization: Bot <token>` and count toward the global limit; interaction callbacks
    # and webhook-token routes need neither and, as on Discord, are not bound by the bot's global rate limit.
    bot_auth: bool


@dataclass
class _Call:
    request: web.Request
    params: dict[str, str]
    recorded: RecordedRequest

    @property
    def body(self) -> Any:
        return self.recorded.json

    def int_param(self, name: str) -> int:
        return int(self.params[name])


def _compile(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
    return re.compile(f"^{regex}$")


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """Discord answers JSON with Content-Type exactly `application/json` (discord.py compares the header verbatim)
    and every response passes Google's front end (`Via: 1.1 google`), which discord.py checks on a 429 to tell a
    Discord rate limit from a Cloudflare ban."""
    all_headers = {"Via": "1.1 google"}
    if headers:
        all_headers.update(headers)
    if status == 204:
        return web.Response(status=204, headers=all_headers)
    all_headers["Content-Type"] = "application/json"
    return web.Response(status=status, body=json.dumps(body).encode(), headers=all_headers)


class FakeDiscord:
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
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

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

    async def wait_for_sessions(self, count: int = 1, *, timeout: float = 10.0) -> list[GatewaySession]:  # noqa: ASYNC109 -- a bounded wait is the point
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
        timeout: float = 5.0,  # noqa: ASYNC109 -- tests must not hang on a bot that never answers
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

    async def wait_for_callback(self, interaction_id: int | str, *, timeout: float = 5.0) -> InteractionRecord:  # noqa: ASYNC109 -- a bounded wait is the point
        """Wait for the bot's callback to a dispatched interaction; returns the interaction's record.

        Returns on the first callback request, accepted or not: a refused one (too late, already acknowledged)
        leaves `record.callback` None and shows in `record.attempts`.
        """
        record = self.interactions[int(interaction_id)]
        if not record.attempts:
            path = f"/interactions/{record.id}/"
            await self.wait_for_request(
                lambda r: r.path.startswith(path) and r.path.endswith("/callback"),
                timeout=timeout,
                include_recorded=True,
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

    # --------------------------------------------------------------------------------------------------- REST

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._open_dm, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/applications/{application_id}/commands", self._list_commands, True),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/commands", self._post_command, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._list_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command, True),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, False),
            ("POST", "/webhooks/{application_id}/{token}", self._followup, False),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._get_webhook_message, False),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self._edit_webhook_message, False),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self._delete_webhook_message, False),
        ]
        return [_Route(m, t, _compile(t), h, auth) for m, t, h, auth in table]

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        route, params = self._match(request.method, path)
        recorded = RecordedRequest(
            method=request.method,
            path=path,
            route=None if route is None else f"{route.method} {route.template}",
            query=dict(request.query),
            json=None,
            files=[],
            received_at=time.monotonic(),
        )
        headers: dict[str, str] = {}
        try:
            await self._read_body(request, recorded)
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            if route is None:
                raise DiscordError(404, "404: Not Found")
            if route.bot_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise DiscordError(401, "401: Unauthorized")
            self._maybe_fail(path)
            if route.bot_auth:
                self._take_global_token()
                headers = self._take_route_token(route, params)
            status, body = await route.handler(_Call(request, params, recorded))
        except DiscordError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
            if status == 429:
                self.http_429 += 1
        recorded.status, recorded.response = status, body
        self._record(recorded)
        return _json_response(status, body, headers)

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method == method:
                m = route.pattern.match(path)
                if m:
                    return route, m.groupdict()
        return None, {}

    @staticmethod
    async def _read_body(request: web.Request, recorded: RecordedRequest) -> None:
        if not request.can_read_body:
            return
        if request.content_type == "multipart/form-data":
            # discord.py's multipart: `payload_json` (the JSON body) and `files[n]` parts.
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    recorded.files.append(RecordedFile(name, value.filename, value.content_type, data))
                elif name == "payload_json":
                    recorded.json = json.loads(str(value))
            return
        raw = await request.read()
        if raw:
            try:
                recorded.json = json.loads(raw)
            except ValueError as exc:
                raise DiscordError(400, "The request body contains invalid JSON.", 50109) from exc

    def _maybe_fail(self, path: str) -> None:
        for i, (status, needle) in enumerate(self._failures):
            if needle is None or needle in path:
                del self._failures[i]
                raise DiscordError(status, f"{status}: {HTTPStatus(status).phrase}")

    def _take_route_token(self, route: _Route, params: dict[str, str]) -> dict[str, str]:
        """A per-route bucket (fixed window, keyed by route and major parameter, as Discord's are).

        Routes with a configured limit answer with the X-RateLimit-* headers discord.py learns buckets from (it then
        waits by itself when Remaining hits 0) and a non-global 429 when exceeded. Routes without one send no bucket
        headers; discord.py then keeps one request in flight per route and major parameter.
        """
        template = f"{route.method} {route.template}"
        limit = self.route_limits.get(template)
        if limit is None:
            return {}
        count, per_s = limit
        major = next((params[k] for k in ("channel_id", "guild_id", "webhook_id") if k in params), "")
        now = time.monotonic()
        bucket = self._buckets.get((template, major))
        if bucket is None or now >= bucket[1]:
            bucket = [0, now + per_s]
            self._buckets[(template, major)] = bucket
        reset_after = max(0.0, bucket[1] - now)
        headers = {
            "X-RateLimit-Limit": str(count),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(template.encode()).hexdigest()[:32],
        }
        if bucket[0] >= count:
            headers |= {
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Scope": "user",
                "Retry-After": str(math.ceil(reset_after)),
            }
            raise DiscordError(
                429,
                "You are being rate limited.",
                retry_after=round(max(0.001, reset_after), 3),
                headers=headers,
                **{"global": False},
            )
        bucket[0] += 1
        headers["X-RateLimit-Remaining"] = str(count - bucket[0])
        return headers

    def _take_global_token(self) -> None:
        """The global limit: N requests in any rolling window. Over it: Discord's 429 body and headers."""
        if self.rate_limit_per_s is None:
            return
        now = time.monotonic()
        window = self.rate_limit_window_s
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) >= self.rate_limit_per_s:
            retry_after = max(0.001, round(self._window[0] + window - now, 3))
            raise DiscordError(
                429,
                "You are being rate limited.",
                retry_after=retry_after,
                **{"global": True},
                headers={
                    "Retry-After": str(math.ceil(retry_after)),
                    "X-RateLimit-Global": "true",
                    "X-RateLimit-Scope": "global",
                },
            )
        self._window.append(now)

    def _record(self, recorded: RecordedRequest) -> None:
        self.requests.append(recorded)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(recorded):
                future.set_result(recorded)

    # ---------------------------------------------------------------------------------------- users, DMs, misc

    def _learn_users(self, data: JSON) -> None:
        for key in ("user", "author"):
            if isinstance(data.get(key), dict) and "id" in data[key]:
                self._users[int(data[key]["id"])] = data[key]
        member = data.get("member")
        if isinstance(member, dict) and isinstance(member.get("user"), dict):
            self._users[int(member["user"]["id"])] = member["user"]

    def _user(self, user_id: int) -> JSON:
        return self._users.get(user_id) or p.user(user_id, f"user{user_id % 10_000}")

    def _dm_channel_for_user(self, who: JSON) -> int:
        user_id = int(who["id"])
        self._users.setdefault(user_id, who)
        if user_id not in self._dm_channels:
            channel_id = self.ids.next()
            self._dm_channels[user_id] = channel_id
            self._dm_recipients[channel_id] = user_id
        return self._dm_channels[user_id]

    async def _get_me(self, call: _Call) -> tuple[int, Any]:
        return 200, self.bot_user

    async def _get_user(self, call: _Call) -> tuple[int, Any]:
        return 200, self._user(call.int_param("user_id"))

    async def _get_gateway(self, call: _Call) -> tuple[int, Any]:
        return 200, {"url": str(self.gateway_url)}

    async def _get_gateway_bot(self, call: _Call) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 1000 - len(self.sessions), "reset_after": 86_400_000, "max_concurrency": 1}
        return 200, {"url": str(self.gateway_url), "shards": self.shard_count, "session_start_limit": limit}

    async def _get_application(self, call: _Call) -> tuple[int, Any]:
        owner = p.user(self.guilds[0].owner_id if self.guilds else self.ids.next(), "owner")
        return 200, {
            "id": str(self.application_id),
            "name": "TradeDesk",
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "owner": owner,
            "team": None,
            "bot": self.bot_user,
            "interactions_endpoint_url": None,  # set, discord.py warns that no interactions reach the gateway
            "redirect_uris": [],
            "rpc_origins": [],
            "tags": [],
            "install_params": None,
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.guilds),
        }

    async def _open_dm(self, call: _Call) -> tuple[int, Any]:
        recipient_id = int((call.body or {}).get("recipient_id", 0))
        if not recipient_id:
            raise DiscordError(400, "Invalid Form Body", 50035)
        recipient = self._user(recipient_id)
        # Opening a DM channel succeeds even when the user's DMs are closed; only sending to it fails.
        return 200, p.dm_channel(self._dm_channel_for_user(recipient), recipient)

    # ----------------------------------------------------------------------------------------- app commands

    def _command_scope(self, call: _Call) -> tuple[list[JSON], int | None]:
        if call.int_param("application_id") != self.application_id:
            raise DiscordError(403, "Missing Access", 50001)
        if "guild_id" not in call.params:
            return self.global_commands, None
        guild_id = call.int_param("guild_id")
        return self.guild_commands.setdefault(guild_id, []), guild_id

    def _command_object(self, body: JSON, guild_id: int | None, existing: list[JSON]) -> JSON:
        kind = int(body.get("type", 1))
        # Discord keeps a command's id when a bulk overwrite sends one with the same name and type.
        same = next((c for c in existing if c["name"] == body["name"] and c["type"] == kind), None)
        command: JSON = {
            "id": same["id"] if same else str(self.ids.next()),
            "application_id": str(self.application_id),
            "version": str(self.ids.next()),
            "default_member_permissions": body.get("default_member_permissions"),
            "type": kind,
            "name": body["name"],
            "name_localizations": body.get("name_localizations"),
            "description": body.get("description", ""),
            "description_localizations": body.get("description_localizations"),
            "dm_permission": body.get("dm_permission", True),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types", [0]),
            "nsfw": body.get("nsfw", False),
        }
        if body.get("options"):
            command["options"] = body["options"]
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
        return command

    async def _list_commands(self, call: _Call) -> tuple[int, Any]:
        commands, _ = self._command_scope(call)
        return 200, commands

    async def _put_commands(self, call: _Call) -> tuple[int, Any]:
        commands, guild_id = self._command_scope(call)
        if not isinstance(call.body, list):
            raise DiscordError(400, "Invalid Form Body", 50035)
        new = [self._command_object(body, guild_id, commands) for body in call.body]
        commands[:] = new
        self.command_writes += 1
        return 200, new

    async def _post_command(self, call: _Call) -> tuple[int, Any]:
        commands, guild_id = self._command_scope(call)
        command = self._command_object(call.body, guild_id, commands)
        index = next((i for i, c in enumerate(commands) if c["id"] == command["id"]), None)
        self.command_writes += 1
        if index is None:
            commands.append(command)
            return 201, command
        commands[index] = command
        return 200, command

    # --------------------------------------------------------------------------------------------- messages

    def _new_message(self, channel_id: int, body: JSON, files: list[RecordedFile], **kwargs: Any) -> JSON:
        """Validate and build a message from a create/execute body, as Discord does for both."""
        content = body.get("content") or ""
        if len(content) > 2000:
            raise DiscordError(
                400,
                "Invalid Form Body",
                50035,
                errors={
                    "content": {
                        "_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]
                    }
                },
            )
        if not (content or body.get("embeds") or files or body.get("components") or body.get("sticker_ids")):
            raise DiscordError(400, "Cannot send an empty message", 50006)
        attachments = [
            {
                "id": str(self.ids.next()),
                "filename": f.filename,
                "size": len(f.data),
                "content_type": f.content_type,
                "url": f"{self.base_url}/attachments/{channel_id}/{f.filename}",
                "proxy_url": f"{self.base_url}/attachments/{channel_id}/{f.filename}",
            }
            for f in files
        ]
        return p.message(
            self.ids.next(),
            channel_id,
            self.payloads.bot_user,
            content=content,
            embeds=body.get("embeds"),
            components=body.get("components"),
            attachments=attachments,
            flags=int(body.get("flags") or 0),
            **kwargs,
        )

    async def _create_message(self, call: _Call) -> tuple[int, Any]:
        channel_id = call.int_param("channel_id")
        body: JSON = call.body or {}
        known = {c.id for g in self.guilds for c in g.channels}
        if channel_id not in known and channel_id not in self._dm_recipients:
            raise DiscordError(404, "Unknown Channel", 10003)
        recipient = self._dm_recipients.get(channel_id)
        if recipient is not None and recipient in self.closed_dms:
            raise DiscordError(403, "Cannot send messages to this user", 50007)
        nonce = body.get("nonce")
        key = (self.application_id, str(nonce))
        now = time.monotonic()
        if nonce is not None and body.get("enforce_nonce"):
            seen = self._nonces.get(key)
            if seen is not None and now - seen[0] < self.nonce_window_s and seen[1] in self.messages:
                # Discord returns the message created earlier with this nonce and creates nothing new.
                self.nonce_dedupes += 1
                return 200, self.messages[seen[1]]
        message = self._new_message(channel_id, body, call.recorded.files, nonce=nonce)
        self.messages[int(message["id"])] = message
        if nonce is not None and body.get("enforce_nonce"):
            self._nonces[key] = (now, int(message["id"]))
        return 200, message

    async def _get_channel_message(self, call: _Call) -> tuple[int, Any]:
        message = self.messages.get(call.int_param("message_id"))
        if message is None or int(message["channel_id"]) != call.int_param("channel_id"):
            raise DiscordError(404, "Unknown Message", 10008)
        return 200, message

    # ----------------------------------------------------------------------------------------- interactions

    def _interaction_for(self, call: _Call, *, by: str) -> InteractionRecord:
        token = call.params["token"]
        if by == "id":
            record = self.interactions.get(call.int_param("interaction_id"))
            if record is None or record.token != token:
                raise DiscordError(404, "Unknown interaction", 10062)
            return record
        if call.int_param("application_id") != self.application_id:
            raise DiscordError(404, "Unknown Webhook", 10015)
        for record in self.interactions.values():
            if record.token == token:
                return record
        raise DiscordError(404, "Unknown Webhook", 10015)

    async def _callback(self, call: _Call) -> tuple[int, Any]:
        record = self._interaction_for(call, by="id")
        record.attempts.append(call.recorded)
        now = time.monotonic()
        if record.callback is not None:
            raise DiscordError(400, "Interaction has already been acknowledged.", 40060)
        if self.interaction_deadline_s is not None and now - record.dispatched_at > self.interaction_deadline_s:
            raise DiscordError(404, "Unknown interaction", 10062)
        body: JSON = call.body or {}
        kind = int(body.get("type", 0))
        data: JSON = body.get("data") or {}
        channel_id = int(record.payload["channel_id"])
        message: JSON | None = None
        msg_type = MESSAGE_CHAT_INPUT_COMMAND if record.type == p.INTERACTION_APPLICATION_COMMAND else MESSAGE_DEFAULT
        app_id = self.application_id
        if kind == CALLBACK_CHANNEL_MESSAGE:
            message = self._new_message(
                channel_id, data, call.recorded.files, webhook_id=app_id, application_id=app_id, message_type=msg_type
            )
        elif kind == CALLBACK_DEFERRED_CHANNEL_MESSAGE:
            # The deferred response is a placeholder message in the "thinking" state until @original is edited.
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = p.message(
                self.ids.next(),
                channel_id,
                self.payloads.bot_user,
                flags=flags,
                webhook_id=app_id,
                application_id=app_id,
                message_type=msg_type,
            )
        elif kind == CALLBACK_UPDATE_MESSAGE and record.original is not None:
            message = record.original | {k: v for k, v in data.items() if k in ("content", "embeds", "components")}
        elif kind not in (
            CALLBACK_PONG,
            CALLBACK_DEFERRED_UPDATE_MESSAGE,
            CALLBACK_AUTOCOMPLETE_RESULT,
            CALLBACK_MODAL,
            CALLBACK_UPDATE_MESSAGE,
        ):
            raise DiscordError(400, "Invalid Form Body", 50035)
        record.callback, record.callback_at = call.recorded, now
        if message is not None:
            record.original = message
            self.messages[int(message["id"])] = message
        if call.recorded.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        interaction: JSON = {"id": str(record.id), "type": record.type}
        if message is not None:
            interaction["response_message_id"] = message["id"]
            interaction["response_message_loading"] = bool(message["flags"] & FLAG_LOADING)
            interaction["response_message_ephemeral"] = bool(message["flags"] & FLAG_EPHEMERAL)
        resource: JSON = {"type": kind}
        if message is not None and kind in (CALLBACK_CHANNEL_MESSAGE, CALLBACK_UPDATE_MESSAGE):
            resource["message"] = message
        return 200, {"interaction": interaction, "resource": resource}

    async def _followup(self, call: _Call) -> tuple[int, Any]:
        record = self._interaction_for(call, by="token")
        if record.callback is None:
            raise DiscordError(404, "Unknown Webhook", 10015)  # no followup before the interaction is acknowledged
        body: JSON = call.body or {}
        message = self._new_message(
            int(record.payload["channel_id"]),
            body,
            call.recorded.files,
            webhook_id=self.application_id,
            application_id=self.application_id,
        )
        record.followups.append(message)
        self.messages[int(message["id"])] = message
        # Executing a webhook answers 204 unless `?wait=true` asks for the message (discord.py always asks).
        if call.recorded.query.get("wait", "").lower() not in ("1", "true"):
            return 204, None
        return 200, message

    def _webhook_message(self, call: _Call) -> tuple[InteractionRecord, JSON]:
        record = self._interaction_for(call, by="token")
        message_id = call.params["message_id"]
        if message_id == "@original":
            message = record.original
        else:
            message = next((m for m in record.followups if m["id"] == message_id), None)
        if message is None or int(message["id"]) not in self.messages:
            raise DiscordError(404, "Unknown Message", 10008)
        return record, message

    async def _get_webhook_message(self, call: _Call) -> tuple[int, Any]:
        return 200, self._webhook_message(call)[1]

    async def _edit_webhook_message(self, call: _Call) -> tuple[int, Any]:
        _, message = self._webhook_message(call)
        body: JSON = call.body or {}
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if call.recorded.files:
            message["attachments"] = [
                {
                    "id": str(self.ids.next()),
                    "filename": f.filename,
                    "size": len(f.data),
                    "content_type": f.content_type,
                }
                for f in call.recorded.files
            ]
        # Editing a deferred response delivers it: the loading state ends, the ephemeral flag stays as deferred.
        message["flags"] = int(message.get("flags") or 0) & ~FLAG_LOADING
        message["edited_timestamp"] = p.iso_now()
        return 200, message

    async def _delete_webhook_message(self, call: _Call) -> tuple[int, Any]:
        _, message = self._webhook_message(call)
        self.messages.pop(int(message["id"]), None)
        return 204, None
