"""Gateway pieces of the fake: transport compression and the per-session state a RESUME needs.

Transport compression is chosen by the client in the connect URL (`?v=10&encoding=json&compress=...`). discord.py 2.7
asks for `zstd-stream` when `zstandard` (or Python 3.14's `compression.zstd`) is importable and `zlib-stream`
otherwise, and it also accepts uncompressed text frames. Both streams are ONE compression context per connection:
every gateway message is compressed and flushed so that it ends on a block boundary (zlib: Z_SYNC_FLUSH, the 4-byte
suffix 00 00 ff ff discord.py looks for; zstd: a flushed block inside one never-ending frame) and sent as one binary
frame. Starting a new context per message would decode for zstd but not for zlib, so it is one context either way.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

JSON = dict[str, Any]

# Gateway opcodes.
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Close codes Discord uses (discord.py refuses to reconnect after 4004 and 4010-4014).
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005
CLOSE_INVALID_SHARD = 4010
CLOSE_INVALID_API_VERSION = 4012
CLOSE_DISALLOWED_INTENTS = 4014

# Privileged intents: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT. Without approval in the developer portal,
# IDENTIFY with any of them is closed with 4014.
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12

# How many dispatched events a session keeps for a RESUME to replay.
RESUME_BUFFER = 2000


class Codec(Protocol):
    """Turns one gateway message into what goes on the wire: str for a text frame, bytes for a binary one."""

    def encode(self, text: str) -> str | bytes: ...


class PlainCodec:
    """No transport compression requested: JSON text frames."""

    def encode(self, text: str) -> str | bytes:
        return text


class ZlibStreamCodec:
    """`compress=zlib-stream`: one deflate context for the connection, each message flushed with Z_SYNC_FLUSH."""

    def __init__(self) -> None:
        self._context = zlib.compressobj()

    def encode(self, text: str) -> str | bytes:
        return self._context.compress(text.encode()) + self._context.flush(zlib.Z_SYNC_FLUSH)


class ZstdStreamCodec:
    """`compress=zstd-stream`: one zstd frame for the connection, each message ends a flushed block."""

    def __init__(self) -> None:
        # The same preference order as discord.py: the zstandard package, then Python 3.14's compression.zstd
        # (looked up dynamically because mypy checks this code as 3.11).
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError:
            zstandard = None
        if zstandard is not None:
            self._context: Any = zstandard.ZstdCompressor().compressobj()
            self._flush: Any = lambda: self._context.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            return
        zstd = importlib.import_module("compression.zstd")
        self._context = zstd.ZstdCompressor()
        self._flush = lambda: self._context.flush(zstd.ZstdCompressor.FLUSH_BLOCK)

    def encode(self, text: str) -> str | bytes:
        return bytes(self._context.compress(text.encode())) + bytes(self._flush())


def codec_for(compress: str | None) -> Codec:
    """The codec for the `compress` query parameter; ValueError for one Discord does not offer."""
    if not compress:
        return PlainCodec()
    if compress == "zlib-stream":
        return ZlibStreamCodec()
    if compress == "zstd-stream":
        try:
            return ZstdStreamCodec()
        except ImportError as exc:
            raise ValueError("zstd-stream requested but no zstd compressor is installed") from exc
    raise ValueError(f"unknown transport compression {compress!r}")


class Connection:
    """One websocket connection. Sends are serialised: the compression context must see messages in wire order."""

    def __init__(self, ws: web.WebSocketResponse, codec: Codec, compress: str | None) -> None:
        self.ws = ws
        self.codec = codec
        self.compress = compress
        self._lock = asyncio.Lock()

    async def send(self, message: JSON) -> None:
        async with self._lock:
            if self.ws.closed:
                return
            frame = self.codec.encode(json.dumps(message, separators=(",", ":")))
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)


@dataclass
class GatewaySession:
    """A gateway session: created by IDENTIFY, survives its connection so that RESUME can pick it up.

    Attributes a test reads: `session_id`, `shard` ([id, count] from IDENTIFY, None when the client sent none),
    `intents`, `identify` (the IDENTIFY `d` minus the token), `seq` (last sequence sent), `heartbeats`, `resumes`,
    `connections` (how many websockets this session has used), `connected`.
    """

    session_id: str
    shard: tuple[int, int] | None
    intents: int
    identify: JSON
    seq: int = 0
    heartbeats: int = 0
    resumes: int = 0
    connections: int = 1
    invalidated: bool = False
    sent: deque[JSON] = field(default_factory=lambda: deque(maxlen=RESUME_BUFFER))
    connection: Connection | None = None

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.ws.closed

    def owns_guild(self, guild_id: int) -> bool:
        """Discord's shard formula: shard_id = (guild_id >> 22) % shard_count."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id

    @property
    def is_dm_shard(self) -> bool:
        """DMs go to shard 0 only."""
        return self.shard is None or self.shard[0] == 0

    async def dispatch(self, event: str, data: JSON) -> None:
        """Send an op 0 event with the next sequence number; kept for replay if the connection is gone."""
        self.seq += 1
        message = {"op": OP_DISPATCH, "s": self.seq, "t": event, "d": data}
        self.sent.append(message)
        if self.connection is not None:
            await self.connection.send(message)

    async def replay_after(self, seq: int) -> int:
        """RESUME: send every buffered event after `seq`, in order; returns how many."""
        missed = [m for m in self.sent if m["s"] > seq]
        if self.connection is not None:
            for message in missed:
                await self.connection.send(message)
        return len(missed)
