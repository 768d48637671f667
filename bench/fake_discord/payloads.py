"""Payload builders shaped like Discord's wire format (API v10), for the fake server and for tests.

Everything here returns plain JSON-ready dicts with ids as strings, as Discord sends snowflakes (int64 does not fit a
JavaScript number). The shapes follow real gateway captures: INTERACTION_CREATE for slash commands (with options,
subcommands and subcommand groups), autocomplete, button clicks, MESSAGE_CREATE, and the objects the REST API returns
(users, DM channels, messages, guilds for GUILD_CREATE).
"""

from __future__ import annotations

import base64
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000

# Interaction types and contexts (discord-api-docs: Receiving and Responding).
INTERACTION_PING = 1
INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_MESSAGE_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5
CONTEXT_GUILD = 0
CONTEXT_BOT_DM = 1

# Application command option types.
OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_NUMBER = 10

CHANNEL_GUILD_TEXT = 0
CHANNEL_DM = 1
COMPONENT_BUTTON = 2

# What a bot gets in a guild where it has every permission but administrator; Discord sends it as a string.
ALL_PERMISSIONS = "562949953421303"


class SnowflakeGenerator:
    """Discord-style snowflakes: milliseconds since 2015-01-01 << 22 | worker << 17 | process << 12 | increment.

    Real ids sort by creation time, and code that derives a timestamp from an id (discord.utils.snowflake_time)
    gets a plausible one. The increment makes ids unique within a millisecond.
    """

    def __init__(self, worker: int = 1) -> None:
        self._worker = worker & 0x1F
        self._process = os.getpid() & 0x1F
        self._increment = itertools.count()
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            return (ms << 22) | (self._worker << 17) | (self._process << 12) | (next(self._increment) & 0xFFF)


def iso_now() -> str:
    """Discord's timestamp format: ISO 8601 with microseconds and an explicit +00:00 offset."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def interaction_token(interaction_id: int) -> str:
    """A unique token shaped like Discord's: base64url of `interaction:<id>:<random>`, about 200 characters."""
    raw = f"interaction:{interaction_id}:{secrets.token_urlsafe(110)}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def user(user_id: int, username: str, *, bot: bool = False, global_name: str | None = None) -> JSON:
    """A user object as Discord embeds it in members, messages and interactions."""
    data: JSON = {
        "id": str(user_id),
        "username": username,
        "global_name": global_name,
        "discriminator": "0",
        "avatar": None,
        "avatar_decoration_data": None,
        "public_flags": 0,
        "primary_guild": None,
        "collectibles": None,
    }
    if bot:
        data["bot"] = True
        data["discriminator"] = "0001"
    return data


def member(user_data: JSON | None, *, joined_at: str | None = None, permissions: str | None = None) -> JSON:
    """A guild member; interactions carry `user` inside it and `permissions`, message events leave `user` out."""
    data: JSON = {
        "roles": [],
        "nick": None,
        "avatar": None,
        "premium_since": None,
        "joined_at": joined_at or iso_now(),
        "pending": False,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if user_data is not None:
        data["user"] = user_data
    if permissions is not None:
        data["permissions"] = permissions
    return data


@dataclass
class FakeChannel:
    """A guild text channel the fake knows about (messages can be posted to it)."""

    id: int
    name: str = "general"


@dataclass
class FakeGuild:
    """A guild the bot is in: announced as an unavailable stub in READY and then in full by GUILD_CREATE."""

    id: int
    name: str = "TradeDesk Test"
    owner_id: int = 0
    channels: list[FakeChannel] = field(default_factory=list)


def text_channel(channel: FakeChannel, guild_id: int, *, position: int = 0) -> JSON:
    return {
        "id": str(channel.id),
        "type": CHANNEL_GUILD_TEXT,
        "guild_id": str(guild_id),
        "name": channel.name,
        "position": position,
        "parent_id": None,
        "topic": None,
        "nsfw": False,
        "rate_limit_per_user": 0,
        "last_message_id": None,
        "permission_overwrites": [],
        "flags": 0,
    }


def dm_channel(channel_id: int, recipient: JSON) -> JSON:
    """What POST /users/@me/channels returns and what a DM interaction carries as `channel`."""
    return {
        "id": str(channel_id),
        "type": CHANNEL_DM,
        "last_message_id": None,
        "flags": 0,
        "recipients": [recipient],
        "recipient_flags": 0,
    }


def guild_create(guild: FakeGuild, bot_user: JSON) -> JSON:
    """A GUILD_CREATE body: enough of a guild for discord.py's Guild (roles, channels, the bot as member)."""
    everyone = {
        "id": str(guild.id),  # @everyone shares the guild's id
        "name": "@everyone",
        "permissions": "2248473465835073",
        "position": 0,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id or guild.id),
        "region": "deprecated",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "system_channel_id": str(guild.channels[0].id) if guild.channels else None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "features": [],
        "roles": [everyone],
        "emojis": [],
        "stickers": [],
        "channels": [text_channel(c, guild.id, position=i) for i, c in enumerate(guild.channels)],
        "threads": [],
        "members": [member(bot_user)],
        "member_count": 2,
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "large": False,
        "unavailable": False,
        "joined_at": iso_now(),
        "lazy": True,
        "application_id": None,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "premium_progress_bar_enabled": False,
    }


def message(
    message_id: int,
    channel_id: int,
    author: JSON,
    *,
    content: str = "",
    embeds: list[Any] | None = None,
    components: list[Any] | None = None,
    attachments: list[JSON] | None = None,
    flags: int = 0,
    nonce: str | int | None = None,
    mentions: list[JSON] | None = None,
    message_type: int = 0,
    webhook_id: int | None = None,
    application_id: int | None = None,
) -> JSON:
    """A message object as REST returns it (no guild_id/member: the REST API leaves them out)."""
    data: JSON = {
        "id": str(message_id),
        "type": message_type,
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions or [],
        "mention_roles": [],
        "attachments": attachments or [],
        "embeds": embeds or [],
        "components": components or [],
        "pinned": False,
        "flags": flags,
    }
    if nonce is not None:
        data["nonce"] = nonce
    if webhook_id is not None:
        data["webhook_id"] = str(webhook_id)
    if application_id is not None:
        data["application_id"] = str(application_id)
    return data


def option(name: str, value: Any, *, type: int | None = None, focused: bool = False) -> JSON:
    """A command option with a value; the type is inferred from the Python value unless given.

    `focused=True` marks the option the user is typing in an autocomplete interaction.
    """
    if type is None:
        if isinstance(value, bool):
            type = OPTION_BOOLEAN
        elif isinstance(value, int):
            type = OPTION_INTEGER
        elif isinstance(value, float):
            type = OPTION_NUMBER
        else:
            type = OPTION_STRING
    data: JSON = {"name": name, "type": type, "value": value}
    if focused:
        data["focused"] = True
    return data


def subcommand(name: str, *options: JSON) -> JSON:
    """A subcommand (type 1) wrapping its options, e.g. `/alert price set` -> group("price", subcommand("set", ...))."""
    return {"name": name, "type": OPTION_SUB_COMMAND, "options": list(options)}


def subcommand_group(name: str, *subcommands: JSON) -> JSON:
    """A subcommand group (type 2) wrapping subcommands."""
    return {"name": name, "type": OPTION_SUB_COMMAND_GROUP, "options": list(subcommands)}


class Payloads:
    """Builders for gateway events a test dispatches, bound to one fake's application, bot user and guilds.

    Each interaction gets a fresh snowflake id and a unique token. `guild=True` (the default) builds the
    interaction in the first configured guild's first channel with `member`; `guild=False` builds it in a DM with
    `user` and a DM channel, `context` 1 (bot DM), as Discord sends them.
    """

    def __init__(
        self,
        ids: SnowflakeGenerator,
        *,
        application_id: int,
        bot_user: JSON,
        guilds: list[FakeGuild],
        dm_channel_for: Callable[[JSON], int],
        users: dict[int, JSON],
    ) -> None:
        self._ids = ids
        self.application_id = application_id
        self.bot_user = bot_user
        self.guilds = guilds
        # The fake's stable DM channel per recipient, so a DM interaction and a later user.send() agree on the
        # channel, as they do on Discord; and its user registry, so GET /users/{id} knows users made here.
        self._dm_channel_for = dm_channel_for
        self._users = users
        self.default_user = self.user("trader")

    def user(self, username: str = "trader", *, user_id: int | None = None) -> JSON:
        """A new (non-bot) user with a fresh id unless one is given, known to the fake from now on."""
        data = user(user_id if user_id is not None else self._ids.next(), username, global_name=username.title())
        self._users[int(data["id"])] = data
        return data

    def _context(self, *, guild: bool, who: JSON | None, guild_id: int | None, channel_id: int | None) -> JSON:
        who = who or self.default_user
        if not guild:
            channel_id = self._dm_channel_for(who)
            return {
                "channel_id": str(channel_id),
                "channel": dm_channel(channel_id, who),
                "user": who,
                "context": CONTEXT_BOT_DM,
                "app_permissions": "562949953863680",
                "authorizing_integration_owners": {"0": "0"},
            }
        g = self._guild(guild_id)
        ch = self._channel(g, channel_id)
        channel = text_channel(ch, g.id) | {"permissions": ALL_PERMISSIONS}
        return {
            "guild_id": str(g.id),
            "guild": {"id": str(g.id), "locale": "en-US", "features": []},
            "guild_locale": "en-US",
            "channel_id": str(ch.id),
            "channel": channel,
            "member": member(who, permissions=ALL_PERMISSIONS),
            "context": CONTEXT_GUILD,
            "app_permissions": ALL_PERMISSIONS,
            "authorizing_integration_owners": {"0": str(g.id)},
        }

    def _guild(self, guild_id: int | None) -> FakeGuild:
        if guild_id is None:
            return self.guilds[0]
        for g in self.guilds:
            if g.id == guild_id:
                return g
        raise KeyError(f"guild {guild_id} is not configured on the fake")

    @staticmethod
    def _channel(g: FakeGuild, channel_id: int | None) -> FakeChannel:
        if channel_id is None:
            return g.channels[0]
        for c in g.channels:
            if c.id == channel_id:
                return c
        raise KeyError(f"channel {channel_id} is not in guild {g.id}")

    def _interaction(self, type_: int, data: JSON, context: JSON, *, extra: JSON | None = None) -> JSON:
        interaction_id = self._ids.next()
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": type_,
            "token": interaction_token(interaction_id),
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": 10_485_760,
            "data": data,
        }
        payload.update(context)
        if extra:
            payload.update(extra)
        return payload

    def slash_command(
        self,
        name: str,
        *options: JSON,
        guild: bool = True,
        who: JSON | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        command_id: int | None = None,
        registered_guild_id: int | None = None,
    ) -> JSON:
        """INTERACTION_CREATE for `/name ...` (type 2, data.type 1 CHAT_INPUT).

        `options` are `option(...)`, `subcommand(...)` or `subcommand_group(...)` dicts. `registered_guild_id` sets
        data.guild_id, which Discord includes when the command is a guild command (discord.py looks it up there).
        """
        data: JSON = {"id": str(command_id or self._ids.next()), "name": name, "type": 1}
        if options:
            data["options"] = list(options)
        if registered_guild_id is not None:
            data["guild_id"] = str(registered_guild_id)
        ctx = self._context(guild=guild, who=who, guild_id=guild_id, channel_id=channel_id)
        return self._interaction(INTERACTION_APPLICATION_COMMAND, data, ctx)

    def autocomplete(
        self,
        name: str,
        *options: JSON,
        guild: bool = True,
        who: JSON | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        command_id: int | None = None,
    ) -> JSON:
        """INTERACTION_CREATE type 4: the same data as a slash command, one option (anywhere) has `focused: true`.

        Autocomplete sends the partial string the user typed, unvalidated, whatever the option's declared type.
        """
        data: JSON = {"id": str(command_id or self._ids.next()), "name": name, "type": 1, "options": list(options)}
        ctx = self._context(guild=guild, who=who, guild_id=guild_id, channel_id=channel_id)
        return self._interaction(INTERACTION_AUTOCOMPLETE, data, ctx)

    def button_click(
        self,
        custom_id: str,
        *,
        guild: bool = True,
        who: JSON | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        message_id: int | None = None,
        content: str = "",
        label: str = "Confirm",
    ) -> JSON:
        """INTERACTION_CREATE type 3 (component_type 2) for a click on a button the bot sent earlier.

        `message` is the bot's message holding the button, as Discord includes it; its id is fresh unless given.
        """
        ctx = self._context(guild=guild, who=who, guild_id=guild_id, channel_id=channel_id)
        components = [
            {
                "type": 1,
                "id": 1,
                "components": [{"type": COMPONENT_BUTTON, "id": 2, "custom_id": custom_id, "label": label, "style": 3}],
            }
        ]
        msg = message(
            message_id or self._ids.next(),
            int(ctx["channel_id"]),
            self.bot_user,
            content=content,
            components=components,
            application_id=self.application_id,
        )
        data: JSON = {"component_type": COMPONENT_BUTTON, "custom_id": custom_id, "id": 2}
        return self._interaction(INTERACTION_MESSAGE_COMPONENT, data, ctx, extra={"message": msg})

    def message_create(
        self,
        content: str,
        *,
        guild: bool = True,
        who: JSON | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        mention_bot: bool | None = None,
    ) -> JSON:
        """A MESSAGE_CREATE from a user: in a guild (mentioning the bot by default, `<@id> content`) or a DM.

        Gateway messages carry guild_id and a `member` without `user` in guilds, and `channel_type` (Discord added it
        to MESSAGE_CREATE); DMs have neither guild_id nor member.
        """
        who = who or self.default_user
        if mention_bot is None:
            mention_bot = guild
        mentions = [self.bot_user] if mention_bot else []
        text = f"<@{self.bot_user['id']}> {content}" if mention_bot else content
        if guild:
            g = self._guild(guild_id)
            ch_id = self._channel(g, channel_id).id
        else:
            ch_id = self._dm_channel_for(who)
        data = message(self._ids.next(), ch_id, who, content=text, mentions=mentions, nonce=str(self._ids.next()))
        data["channel_type"] = CHANNEL_GUILD_TEXT if guild else CHANNEL_DM
        if guild:
            data["guild_id"] = str(g.id)
            data["member"] = member(None)
        return data
