"""The Discord Notifier: alert and fill notifications by DM, exactly once.

Each message carries `nonce` = the outbox id with `enforce_nonce: true`: if we crash after Discord accepted a message
but before the outbox recorded it, the retry returns the first message instead of posting a second. discord.py's
`Messageable.send` doesn't expose `enforce_nonce`, so the request goes through its HTTP client directly, which still
handles rate-limit buckets and 429s; the outbox dispatcher paces toward the global limit on top.

The DM channel id is cached on the user (the dispatcher stores `Sent.dm_channel_id`), so a message is usually one
request. Discord's 50007 (or any 403 on a DM) means the user doesn't accept our DMs: `DMsClosed`, and the outbox
holds their notifications until they next interact.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord
from discord.http import HTTPClient, Route

from core.notifications.notifier import Delivery, DMsClosed, Failed, OutgoingMessage, RetryLater, Sent

log = logging.getLogger("tradedesk.bot.notifier")

CANNOT_MESSAGE_USER = 50007
SEND_TIMEOUT_S = 30.0
TOKEN_REFUSED_RETRY_S = 300.0
UNKNOWN_CHANNEL = 10003
_COLOURS = {"alert": 0xF9A825, "fill": 0x2E7D32}


def message_payload(message: OutgoingMessage) -> dict[str, Any]:
    return {
        "embeds": [
            {
                "title": message.title[:256],
                "description": message.body[:4096],
                "color": _COLOURS.get(message.kind, 0x455A64),
            }
        ],
        "nonce": str(message.outbox_id),
        "enforce_nonce": True,
        "allowed_mentions": {"parse": []},
    }


class DiscordNotifier:
    def __init__(self, http: HTTPClient, *, timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.http = http
        self.timeout_s = timeout_s

    async def send(self, message: OutgoingMessage) -> Delivery:
        if message.discord_id is None:
            return Failed("the user has no Discord account to DM")
        try:
            # Well inside the outbox lease: a send that hangs must end before another dispatcher may claim the row.
            async with asyncio.timeout(self.timeout_s):
                return await self._send(message)
        except TimeoutError:
            return RetryLater(f"no answer from Discord within {self.timeout_s:g} s")

    async def _send(self, message: OutgoingMessage) -> Delivery:
        assert message.discord_id is not None
        opened: int | None = None
        try:
            channel = message.dm_channel_id
            if channel is None:
                dm = await self.http.start_private_message(message.discord_id)
                channel = opened = int(dm["id"])
            route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel)
            try:
                sent = await self.http.request(route, json=message_payload(message))
            except discord.NotFound as exc:
                if exc.code != UNKNOWN_CHANNEL or opened is not None:
                    raise
                # The cached DM channel is gone: open a fresh one, once.
                dm = await self.http.start_private_message(message.discord_id)
                opened = int(dm["id"])
                route = Route("POST", "/channels/{channel_id}/messages", channel_id=opened)
                sent = await self.http.request(route, json=message_payload(message))
        except discord.Forbidden as exc:
            return DMsClosed(f"403 Forbidden ({exc.code}): {exc.text}"[:300])
        except discord.DiscordServerError as exc:
            return RetryLater(f"Discord {exc.status}: {exc.text}"[:300])
        except discord.RateLimited as exc:  # only raised when discord.py was told not to wait that long
            return RetryLater("429 Too Many Requests", exc.retry_after)
        except discord.HTTPException as exc:
            if exc.status == 401:
                # A revoked or rotated token: every message would fail the same way. Keep them for when the bot is
                # fixed rather than marking the whole outbox failed; the log says what to do.
                log.error("discord: the bot token was refused (401); notifications wait until DISCORD_TOKEN is fixed")
                return RetryLater("401 Unauthorized: the bot token was refused", TOKEN_REFUSED_RETRY_S)
            if exc.status == 429 or exc.status >= 500:
                return RetryLater(f"Discord {exc.status}: {exc.text}"[:300])
            return Failed(f"Discord {exc.status} ({exc.code}): {exc.text}"[:300])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return RetryLater(f"network error talking to Discord: {type(exc).__name__}: {exc}"[:300])
        return Sent(message_id=int(sent["id"]), dm_channel_id=opened)
