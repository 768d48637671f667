"""The REST half of FakeDiscord: routing, auth, rate limits, error injection, and Discord's v10 endpoints.

One catch-all aiohttp route feeds a small table of Discord paths, so that every request, including the ones the
fake refuses (401, 404, 429, injected 5xx), is recorded the same way and unknown paths get Discord's own 404 body.
`RestApi` is a base class of FakeDiscord; the state it shares with the gateway side is declared on it and created
by FakeDiscord.__init__.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import yarl
from aiohttp import web

from bench.fake_discord import payloads as p
from bench.fake_discord.gateway import GatewaySession
from bench.fake_discord.records import DiscordError, InteractionRecord, RecordedFile, RecordedRequest

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


class RestApi:
    """Discord's REST endpoints the bot uses, answering in Discord's wire format."""

    # Shared with FakeDiscord (see its docstring for the meaning of each).
    token: str
    ids: p.SnowflakeGenerator
    application_id: int
    bot_user: JSON
    guilds: list[p.FakeGuild]
    payloads: p.Payloads
    rate_limit_per_s: int | None
    rate_limit_window_s: float
    route_limits: dict[str, tuple[int, float]]
    closed_dms: set[int]
    latency_s: float
    interaction_deadline_s: float | None
    nonce_window_s: float
    shard_count: int
    requests: list[RecordedRequest]
    interactions: dict[int, InteractionRecord]
    messages: dict[int, JSON]
    sessions: list[GatewaySession]
    global_commands: list[JSON]
    guild_commands: dict[int, list[JSON]]
    command_writes: int
    http_429: int
    nonce_dedupes: int
    _users: dict[int, JSON]
    _dm_channels: dict[int, int]
    _dm_recipients: dict[int, int]
    _nonces: dict[tuple[int, str], tuple[float, int]]
    _window: deque[float]
    _buckets: dict[tuple[str, str], list[float]]
    _failures: list[tuple[int, str | None]]
    _waiters: list[tuple[Callable[[RecordedRequest], bool], asyncio.Future[RecordedRequest]]]
    _routes: list[_Route]

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    @property
    def gateway_url(self) -> yarl.URL:
        raise NotImplementedError

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
            ("POST", "/channels/{channel_id}/typing", self._trigger_typing, True),
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
            status, body, headers = exc.status, exc.body, headers | exc.headers
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

    async def _trigger_typing(self, call: _Call) -> tuple[int, Any]:
        """The typing indicator: 204 in a channel the bot can see, as Discord answers."""
        channel_id = call.int_param("channel_id")
        known = {c.id for g in self.guilds for c in g.channels}
        if channel_id not in known and channel_id not in self._dm_recipients:
            raise DiscordError(404, "Unknown Channel", 10003)
        return 204, None

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
        # Arrival time, not handling time: artificial latency is the network's, not the bot's.
        now = call.recorded.received_at
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
