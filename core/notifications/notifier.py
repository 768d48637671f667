"""The `Notifier` protocol the outbox dispatcher delivers through, and the notifiers that need no Discord.

A notifier sends one message to one user and says how it went, as one of four outcomes:

- `Sent`: delivered; carries the transport's message id and, when it had to open one, the DM channel id to cache on
  the user (so the next message is one request, not two).
- `RetryLater`: a transient failure (a 429, a 5xx, a timeout); `retry_after` in seconds when the server said so.
- `DMsClosed`: the user doesn't accept DMs from us (Discord error 50007, or a 403 on the DM channel). Permanent until
  the user interacts with us again; the dispatcher records it on the user and holds their notifications.
- `Failed`: any other permanent failure (e.g. a user without a Discord id given to the Discord notifier).

`OutgoingMessage.outbox_id` is the notification's id: the Discord notifier sends it as the message `nonce` with
`enforce_nonce: true`, so a crash between Discord's acknowledgement and the outbox commit can't produce a second DM.

The Discord notifier lives in bot/ (core imports no discord or aiohttp). Here: `ConsoleNotifier` for `tradedesk run`
without Discord, and `RateLimitedNotifier`, a fake of Discord's global rate limit and nonce dedupe for tests and
`tradedesk bench dispatch`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TextIO
from uuid import UUID

from sqlalchemy import text

from core.db.database import DATABASE_ERRORS, Database

DISCORD_GLOBAL_LIMIT_PER_S = 50


@dataclass(frozen=True)
class OutgoingMessage:
    outbox_id: int  # the nonce: the notification's id (for a coalesced burst, the first one's)
    user_id: UUID
    title: str
    body: str
    discord_id: int | None = None
    dm_channel_id: int | None = None  # cached from an earlier delivery: one request instead of two
    console_handle: str | None = None
    kind: str = "system"
    notification_ids: tuple[int, ...] = ()  # every outbox row this message carries (more than one when coalesced)

    @property
    def requests(self) -> int:
        """Discord requests this message costs: opening the DM channel (unless cached) and sending."""
        return 2 if self.discord_id is not None and self.dm_channel_id is None else 1


@dataclass(frozen=True)
class Sent:
    message_id: int | None = None
    dm_channel_id: int | None = None


@dataclass(frozen=True)
class RetryLater:
    error: str
    retry_after: float | None = None


@dataclass(frozen=True)
class DMsClosed:
    error: str = "the user does not accept direct messages (Discord 50007)"


@dataclass(frozen=True)
class Failed:
    error: str


Delivery = Sent | RetryLater | DMsClosed | Failed


class Notifier(Protocol):
    async def send(self, message: OutgoingMessage) -> Delivery: ...


CONSOLE_CHANNEL = "tradedesk_console"
HOLD_FOR_DISCORD_S = 300.0
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
_NOTIFY_LIMIT = 7_000  # Postgres refuses NOTIFY payloads of 8000 bytes or more


def console_payload(message: OutgoingMessage) -> str:
    data = {"id": message.outbox_id, "handle": message.console_handle, "title": message.title, "body": message.body}
    text = json.dumps(data, ensure_ascii=False)
    while len(text.encode()) >= _NOTIFY_LIMIT:
        data["body"] = str(data["body"])[: len(str(data["body"])) // 2] + "…"
        text = json.dumps(data, ensure_ascii=False)
    return text


class ConsoleNotifier:
    """Prints one clear line per notification to `stream`: `tradedesk run` without Discord.

    With a `database`, a console user's notification is also published on the `tradedesk_console` channel (NOTIFY),
    so a `tradedesk chat --user HANDLE` session in any process prints it inline.
    """

    def __init__(self, stream: TextIO | None, database: Database | None = None) -> None:
        self.stream = stream
        self.database = database
        self._next_id = 1

    async def send(self, message: OutgoingMessage) -> Delivery:
        who = (
            f"@{message.console_handle}"
            if message.console_handle
            else f"discord:{message.discord_id}"
            if message.discord_id
            else f"user:{message.user_id}"
        )
        body = " | ".join(line for line in message.body.splitlines() if line.strip())
        if self.stream is not None:  # None: publish only (a chat session prints its user's own)
            print(f"[notification #{message.outbox_id} to {who}] {message.title}: {body}", file=self.stream, flush=True)
        if self.database is not None and message.console_handle:
            try:
                async with self.database.engine.begin() as conn:  # delivered to listeners when this commits
                    await conn.execute(_NOTIFY, {"channel": CONSOLE_CHANNEL, "payload": console_payload(message)})
            except DATABASE_ERRORS as exc:
                return RetryLater(f"could not publish to the console channel: {exc}")
        message_id, self._next_id = self._next_id, self._next_id + 1
        return Sent(message_id=message_id)


@dataclass
class _Visible:
    message: OutgoingMessage
    message_id: int
    at: float


@dataclass
class RateLimitedNotifier:
    """A fake of Discord's DM path: a global limit of `limit_per_s` requests in any rolling second, answered with a
    429-style `RetryLater(retry_after=...)` when exceeded, and nonce dedupe as with `enforce_nonce: true`.

    A message to a user without a cached DM channel costs two requests (open the DM channel, then send), as on
    Discord; the DM channel id comes back in `Sent` to be cached. Every accepted request counts toward the limit;
    a request answered 429 does not. `deliveries` holds each message the user can see, once per nonce; a repeated
    nonce gets the first message's id back and adds nothing visible. `closed` holds users whose DMs are closed;
    `fail_next(user, n)` makes that user's next `n` sends fail transiently (a 5xx). `latency_s` delays each answer.
    """

    limit_per_s: int = DISCORD_GLOBAL_LIMIT_PER_S
    latency_s: float = 0.0
    closed: set[UUID] = field(default_factory=set)
    clock: Callable[[], float] = time.monotonic
    deliveries: list[_Visible] = field(default_factory=list)
    requests: int = 0
    http_429: int = 0
    server_errors: int = 0
    nonce_repeats: int = 0
    peak_per_s: int = 0  # the most accepted requests seen in any rolling second

    def __post_init__(self) -> None:
        self._window: collections.deque[float] = collections.deque()
        self._by_nonce: dict[int, int] = {}
        self._failures: dict[UUID, int] = {}
        self._channels: dict[int, int] = {}
        self._next_message_id = 10**15

    def fail_next(self, user_id: UUID, times: int = 1) -> None:
        self._failures[user_id] = self._failures.get(user_id, 0) + times

    def delivered_to(self, user_id: UUID) -> list[OutgoingMessage]:
        return [v.message for v in self.deliveries if v.message.user_id == user_id]

    def _request(self) -> float | None:
        """Count one request against the global limit; the retry_after to answer if it's over."""
        now = self.clock()
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.limit_per_s:
            self.http_429 += 1
            return max(0.001, self._window[0] + 1.0 - now)
        self._window.append(now)
        self.requests += 1
        self.peak_per_s = max(self.peak_per_s, len(self._window))
        return None

    async def send(self, message: OutgoingMessage) -> Delivery:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        channel = message.dm_channel_id
        opened: int | None = None
        if channel is None and message.discord_id is not None:
            retry_after = self._request()  # POST /users/@me/channels
            if retry_after is not None:
                return RetryLater("429 Too Many Requests (global)", retry_after)
            channel = opened = self._channels.setdefault(message.discord_id, 9 * 10**17 + message.discord_id)
        retry_after = self._request()  # POST /channels/{id}/messages
        if retry_after is not None:
            return RetryLater("429 Too Many Requests (global)", retry_after)
        if message.user_id in self.closed:
            return DMsClosed("403 Forbidden: Cannot send messages to this user (50007)")
        if self._failures.get(message.user_id, 0) > 0:
            self._failures[message.user_id] -= 1
            self.server_errors += 1
            return RetryLater("503 Service Unavailable")
        if message.outbox_id in self._by_nonce:
            self.nonce_repeats += 1
            return Sent(self._by_nonce[message.outbox_id], opened)
        self._next_message_id += 1
        self._by_nonce[message.outbox_id] = self._next_message_id
        self.deliveries.append(_Visible(message, self._next_message_id, self.clock()))
        return Sent(self._next_message_id, opened)


class RoutingNotifier:
    """Discord users get DMs through `discord`; console users (and everyone, without Discord) the console.

    `hold_discord`: a process that can't DM (a `tradedesk chat` running the worker without DISCORD_TOKEN) keeps
    Discord users' notifications for a process that can, instead of printing them where nobody reads them.
    """

    def __init__(self, console: Notifier, discord: Notifier | None = None, *, hold_discord: bool = False) -> None:
        self.console = console
        self.discord = discord
        self.hold_discord = hold_discord

    async def send(self, message: OutgoingMessage) -> Delivery:
        if message.discord_id is not None:
            if self.discord is not None:
                return await self.discord.send(message)
            if self.hold_discord:
                return RetryLater("this process has no Discord bot to DM with", retry_after=HOLD_FOR_DISCORD_S)
        return await self.console.send(message)
