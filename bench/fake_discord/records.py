"""What the fake records and how a REST handler refuses a request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


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
