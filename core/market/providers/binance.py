"""Binance spot public trade streams (`<symbol>@trade`), no key needed.

Wire format (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams): a trade is
`{"e": "trade", "s": "BTCUSDT", "p": "90000.01", "q": "0.0012", "T": 1672515782136, ...}` on the raw endpoint
(`/ws`) and the same object under `{"stream": "btcusdt@trade", "data": {...}}` on the combined one (`/stream`);
both are accepted, so TRADEDESK_MARKET_URL may point at either, or at a testnet or regional host. Subscriptions are
`{"method": "SUBSCRIBE", "params": [...], "id": n}`, acknowledged by `{"result": null, "id": n}`. Before
maintenance the server sends `{"e": "serverShutdown"}`: we reconnect at once rather than wait to be cut off.
Binance pings every 20 s and websockets answers; a connection lives at most 24 h, after which the feed reconnects.

Symbols: BTCUSDT is BTC-USDT in canonical form (USDT is not USD); the mapping comes from instruments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.config import Settings
from core.market.instruments import SymbolMap
from core.market.providers.base import BadMessage, JsonAdapter, ProviderEvent, decimal_field, epoch_ms
from core.market.ticks import Tick

DEFAULT_URL = "wss://stream.binance.com:9443/ws"
# Binance accepts 5 incoming messages per second and 1024 streams per connection: 4 frames of 256 cover that.
_STREAMS_PER_MESSAGE = 256
_TRADE_EVENTS = frozenset({"trade", "aggTrade"})


class BinanceAdapter(JsonAdapter):
    name = "binance"

    def __init__(self, symbols: SymbolMap) -> None:
        self.symbols = symbols
        self.malformed = 0
        self.events: list[ProviderEvent] = []
        self._request_id = 0
        # Binance names symbols in upper case in payloads and lower case in stream names.
        self._canonical = {symbols.provider_symbol(c).upper(): c for c in symbols.canonical_symbols}

    def url(self, settings: Settings) -> str:
        return settings.market_url or DEFAULT_URL

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        streams = [f"{self.symbols.provider_symbol(s).lower()}@trade" for s in symbols]
        messages = []
        for start in range(0, len(streams), _STREAMS_PER_MESSAGE):
            self._request_id += 1
            chunk = streams[start : start + _STREAMS_PER_MESSAGE]
            messages.append(json.dumps({"method": "SUBSCRIBE", "params": chunk, "id": self._request_id}))
        return messages

    def _parse(self, message: Any) -> list[Tick]:
        if type(message) is not dict:
            raise BadMessage("not a JSON object")
        data = message["data"] if "stream" in message else message
        if type(data) is not dict:
            raise BadMessage("stream data is not a JSON object")
        event = data.get("e")
        if event in _TRADE_EVENTS:
            symbol = self._canonical.get(data["s"])
            if symbol is None:
                return []  # a stream we didn't ask for (e.g. named in a combined-stream URL)
            return [Tick(symbol, decimal_field(data["p"]), decimal_field(data["q"]), epoch_ms(data["T"]), self.name)]
        if event == "serverShutdown":
            self.events.append(ProviderEvent("reconnect", "Binance announced a server shutdown"))
            return []
        if "id" in message and "result" in message:
            self.events.append(ProviderEvent("subscribed", f"request {message['id']} acknowledged"))
            return []
        if "id" in message and ("code" in message or "error" in message):
            error = message.get("error", message)
            detail = error.get("msg", error) if isinstance(error, dict) else error
            self.events.append(ProviderEvent("error", f"request {message['id']}: {detail}"))
            return []
        raise BadMessage(f"unknown message (event {event!r})")
