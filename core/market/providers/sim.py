"""The sim provider's wire format, spoken by the local server in core/market/sim.py.

Small on purpose, and shaped like a real exchange's so the sim exercises the same client code:
- client -> server: `{"op": "subscribe", "symbols": ["AAPL", "BTC-USD"]}` (and `"op": "unsubscribe"`);
- server -> client: `{"type": "subscribed", "symbols": [...]}`, `{"type": "error", "msg": "..."}`,
  `{"type": "heartbeat", "t": <epoch ms>}` once a second, and one frame per trade:
  `{"type": "trade", "s": "AAPL", "p": "230.15", "q": "12", "t": <epoch ms>}` with prices and sizes as decimal
  strings, on the instrument's tick and lot grid.
Its symbols are the canonical ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.config import Settings
from core.market.instruments import SymbolMap
from core.market.providers.base import BadMessage, JsonAdapter, ProviderEvent, decimal_field, epoch_ms
from core.market.ticks import Tick


def subscribe_message(symbols: Sequence[str], op: str = "subscribe") -> str:
    return json.dumps({"op": op, "symbols": list(symbols)})


def trade_message(symbol: str, price: str, size: str, ts_ms: int) -> str:
    return json.dumps({"type": "trade", "s": symbol, "p": price, "q": size, "t": ts_ms})


class SimAdapter(JsonAdapter):
    name = "sim"

    def __init__(self, symbols: SymbolMap) -> None:
        self.symbols = symbols
        self.malformed = 0
        self.events: list[ProviderEvent] = []
        self._canonical = {symbols.provider_symbol(c): c for c in symbols.canonical_symbols}

    def url(self, settings: Settings) -> str:
        return settings.market_url or f"ws://127.0.0.1:{settings.sim_port}"

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        return [subscribe_message([self.symbols.provider_symbol(s) for s in symbols])]

    def _parse(self, message: Any) -> list[Tick]:
        if type(message) is not dict:
            raise BadMessage("not a JSON object")
        kind = message.get("type")
        if kind == "trade":
            symbol = self._canonical.get(message["s"])
            if symbol is None:
                return []
            return [
                Tick(
                    symbol, decimal_field(message["p"]), decimal_field(message["q"]), epoch_ms(message["t"]), self.name
                )
            ]
        if kind == "heartbeat":
            return []
        if kind == "subscribed":
            self.events.append(ProviderEvent("subscribed", f"{len(message['symbols'])} symbol(s)"))
            return []
        if kind == "error":
            self.events.append(ProviderEvent("error", str(message.get("msg"))[:200]))
            return []
        raise BadMessage(f"unknown message type {kind!r}")
