"""What a market data provider is to the feed: a URL, subscribe messages, and a parser of its frames.

An adapter knows one provider's wire format and nothing about connections: the one websockets client in
core/market/feed.py connects, (re)subscribes, watches liveness and hands every frame to `parse`. Adding a provider
(coinbase, alpaca, finnhub) is one more small module implementing `ProviderAdapter`, registered in `__init__`.

`parse` never raises on provider input: a frame that isn't one the adapter understands is counted in `malformed`
and yields no ticks. Control frames (subscription acks, errors, shutdown notices) yield no ticks either and are
reported as `ProviderEvent`s in `events`, which the feed drains after each frame. Prices and sizes go from the
provider's strings straight to Decimal; a float never appears.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from core.config import Settings
from core.market.ticks import Tick

EventKind = Literal["subscribed", "error", "reconnect"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# NUMERIC(28, 10) holds 18 integer digits; anything near that is not a price and would fail the whole flush.
_MAX_VALUE = Decimal(10) ** 15
_MAX_NUMBER_CHARS = 40
# Epoch milliseconds for years 2000..2200; larger values are taken as microseconds (Binance's timeUnit option).
_MS_MIN, _MS_MAX = 946_684_800_000, 7_258_118_400_000


class BadMessage(ValueError):
    """A provider frame that doesn't have the shape its adapter expects."""


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A control frame worth telling the operator about. `reconnect`: the provider asked us to reconnect."""

    kind: EventKind
    detail: str


class ProviderAdapter(Protocol):
    name: str
    """The `source` of this provider's ticks and its key in instruments.provider_symbols."""
    malformed: int
    events: list[ProviderEvent]

    def url(self, settings: Settings) -> str:
        """The websocket URL: TRADEDESK_MARKET_URL when set (testnets, regional endpoints), else the public one."""
        ...

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """The frames to send after every (re)connect to stream `symbols` (canonical)."""
        ...

    def parse(self, raw: str | bytes) -> list[Tick]:
        """The ticks in one frame; [] for control frames and for malformed ones (counted in `malformed`)."""
        ...


def decimal_field(value: object) -> Decimal:
    """A provider's price or size string as a Decimal: exact, finite, not negative, of sane magnitude."""
    if type(value) is not str or len(value) > _MAX_NUMBER_CHARS:
        raise BadMessage(f"expected a decimal string, got {type(value).__name__}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise BadMessage(f"not a decimal: {value!r}") from None
    if not number.is_finite() or number < 0 or number >= _MAX_VALUE:
        raise BadMessage(f"out of range: {value!r}")
    return number


def epoch_ms(value: object) -> datetime:
    """A provider's epoch timestamp in milliseconds (or microseconds) as an aware UTC datetime."""
    if type(value) is not int:
        raise BadMessage(f"expected an integer timestamp, got {type(value).__name__}")
    if _MS_MIN <= value <= _MS_MAX:
        return EPOCH + timedelta(milliseconds=value)
    if _MS_MIN * 1000 <= value <= _MS_MAX * 1000:
        return EPOCH + timedelta(microseconds=value)
    raise BadMessage(f"timestamp out of range: {value}")


def excerpt(raw: str | bytes, limit: int = 200) -> str:
    """A frame as it can appear in a log line: decoded leniently, cut to `limit` characters."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# Whatever a hostile or broken frame can make the parsing raise (RecursionError: JSON nested thousands deep).
PARSE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, RecursionError)


def _no_constant(name: str) -> object:
    raise BadMessage(f"{name} is not a number")


# One decoder for every frame: json.loads(raw, parse_float=...) would build a new one per call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)


def loads(raw: str | bytes) -> object:
    """Parse one JSON frame. Non-integer numbers come back as Decimal and NaN/Infinity are refused: no float."""
    return _DECODER.decode(raw if isinstance(raw, str) else raw.decode())


class JsonAdapter:
    """The parse() every JSON provider shares: never raises on provider input, counts what it can't use.

    Subclasses implement `_parse(message)` for one decoded frame and may raise any of PARSE_ERRORS (BadMessage
    included) for a frame they don't understand.
    """

    malformed: int

    def parse(self, raw: str | bytes) -> list[Tick]:
        try:
            return self._parse(loads(raw))
        except PARSE_ERRORS:
            self.malformed += 1
            return []

    def _parse(self, message: Any) -> list[Tick]:
        raise NotImplementedError
